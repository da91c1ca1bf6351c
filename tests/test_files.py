"""cs336_basics.files: atomic writes leave the old file or the new one, and no temporary file."""

import errno

import pytest

from cs336_basics.files import atomic_dir, atomic_path, atomic_write, check_writable, describe_os_error


def test_atomic_write_replaces_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write(target, "old")
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write(target, b"old")
    with pytest.raises(OSError, match="No space"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_atomic_dir_swaps_a_whole_folder(tmp_path):
    target = tmp_path / "tok"
    with atomic_dir(target, owned=("x.txt",)) as tmp:
        (tmp / "x.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, owned=("x.txt",)) as tmp:
            (tmp / "x.txt").write_text("2")
            raise RuntimeError("training failed half way")
    assert (target / "x.txt").read_text() == "1"
    with atomic_dir(target, owned=("x.txt",)) as tmp:
        (tmp / "x.txt").write_text("3")
    assert (target / "x.txt").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_atomic_dir_never_replaces_a_folder_with_other_files(tmp_path):
    (tmp_path / "notes.md").write_text("mine")
    with pytest.raises(ValueError, match="holds other files .*notes.md"):
        with atomic_dir(tmp_path, owned=("x.txt",)):
            pass
    assert (tmp_path / "notes.md").read_text() == "mine"


def test_describe_os_error_names_the_file_and_the_fix():
    line = describe_os_error(OSError(errno.EROFS, "Read-only file system"), "runs/x/vocab.json")
    assert line == "cannot write runs/x/vocab.json: the file system is read-only: choose a folder you can write to"


def test_check_writable_refuses_a_path_through_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        check_writable(tmp_path / "file" / "sub")
    assert check_writable(tmp_path / "new") == tmp_path / "new"
    assert list((tmp_path / "new").iterdir()) == []
