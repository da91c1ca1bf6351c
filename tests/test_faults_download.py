"""Faults injected into cs336 download: what the server sends is wrong, or the disk is full.

Each test names one fault and what the user must see: one line (DownloadError) naming the file
and the fix, no half-written file under a final name, and a re-run that ends with the server's
exact bytes. The server is the local one from tests/download_server.py (127.0.0.1 only).
"""

import builtins
import errno
import json

import pytest

from cs336_basics import cli, download
from cs336_basics.download import DownloadError, download_dataset
from tests.download_server import TRAIN, VALID, etag_of, pin_handout, serve, sha256

TRAIN_NAME = "TinyStoriesV2-GPT4-train.txt"


@pytest.fixture
def server(monkeypatch):
    with serve(monkeypatch) as srv:
        yield srv


def _fetch(server, tmp_path, name="tinystories", progress=False):
    return download_dataset(name, tmp_path, base_url=server.url, progress=progress)


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_truncated_body_is_an_error_and_a_rerun_resumes_the_same_file(server, tmp_path):
    server.cut_after = 5000  # Content-Length says len(TRAIN), then the connection closes
    stopped = rf"{TRAIN_NAME} stopped at 5,000 of {len(TRAIN):,} bytes.*run the command again"
    with pytest.raises(DownloadError, match=stopped):
        _fetch(server, tmp_path)
    folder = tmp_path / "tinystories"
    assert not (folder / "train.txt").exists()  # never a finished file
    assert (folder / "train.txt.part").stat().st_size == 5000
    saved = json.loads((folder / "train.txt.part.json").read_text())
    assert saved["etag"] == etag_of(TRAIN) and saved["size"] == len(TRAIN)

    _fetch(server, tmp_path)
    assert (folder / "train.txt").read_bytes() == TRAIN
    # The rest was asked for only on condition that the file is still the one the .part came from.
    assert server.requests[-2] == (f"/{TRAIN_NAME}", "bytes=5000-")
    assert server.if_ranges[-2] == etag_of(TRAIN)
    assert _names(folder) == [".download.json", "train.txt", "valid.txt"]


def test_body_without_length_that_ends_early_is_caught_by_the_known_size(server, tmp_path):
    server.send_length, server.cut_after = False, 5000  # nothing but the known size says it is short
    with pytest.raises(DownloadError, match=rf"stopped at 5,000 of {len(TRAIN):,} bytes"):
        _fetch(server, tmp_path)
    assert not (tmp_path / "tinystories" / "train.txt").exists()
    _fetch(server, tmp_path)
    assert (tmp_path / "tinystories" / "train.txt").read_bytes() == TRAIN


def test_stale_part_of_a_changed_file_is_not_extended(server, tmp_path, monkeypatch):
    server.cut_after = 5000
    with pytest.raises(DownloadError):
        _fetch(server, tmp_path)
    new = TRAIN.replace(b"tiny", b"TINY")  # same size, other bytes: a new ETag
    server.files[TRAIN_NAME] = new
    pin_handout(monkeypatch, server.files)
    _fetch(server, tmp_path)
    assert (tmp_path / "tinystories" / "train.txt").read_bytes() == new  # not old[:5000] + new[5000:]


def test_part_without_a_record_is_not_extended(server, tmp_path, capsys):
    folder = tmp_path / "tinystories"
    folder.mkdir()
    (folder / "train.txt.part").write_bytes(b"x" * 999)  # left by an older version: where from?
    _fetch(server, tmp_path, progress=True)
    assert (folder / "train.txt").read_bytes() == TRAIN
    assert (f"/{TRAIN_NAME}", None) in server.requests  # asked for the whole file, not bytes=999-
    assert "train.txt.part has no record of the file it came from: starting over" in capsys.readouterr().err


def test_server_that_ignores_range_gets_a_fresh_start_and_says_so(server, tmp_path, capsys):
    server.cut_after = 5000
    with pytest.raises(DownloadError):
        _fetch(server, tmp_path)
    server.honour_range = False  # answers 200 with the whole file to the resume request
    _fetch(server, tmp_path, progress=True)
    folder = tmp_path / "tinystories"
    assert (folder / "train.txt").read_bytes() == TRAIN
    assert "ignores Range): starting over" in capsys.readouterr().err
    record = json.loads((folder / ".download.json").read_text())["train.txt"]
    assert record == {"size": len(TRAIN), "sha256": sha256(TRAIN), "url": server.url + TRAIN_NAME}


def test_truncated_final_file_is_not_skipped_as_done(server, tmp_path, capsys):
    _fetch(server, tmp_path)
    train = tmp_path / "tinystories" / "train.txt"
    train.write_bytes(TRAIN[:100])  # cut by hand (or by a full disk, an editor, ...)
    server.requests.clear()
    _fetch(server, tmp_path, progress=True)
    assert train.read_bytes() == TRAIN
    assert server.requests == [(f"/{TRAIN_NAME}", None)]  # valid.txt still matches its record
    assert f"train.txt is 100 bytes, not {len(TRAIN):,}: downloading it again" in capsys.readouterr().err


def test_file_without_a_record_is_checked_not_trusted(server, tmp_path):
    folder = tmp_path / "owt"
    folder.mkdir()
    (folder / "train.txt").write_bytes(b"an older, broken copy")  # no .download.json: older version
    (folder / "valid.txt").write_bytes(VALID)  # placed by hand, and exactly the handout's file
    _fetch(server, tmp_path, "owt")
    assert (folder / "train.txt").read_bytes() == TRAIN
    assert server.requests == [("/owt_train.txt.gz", None)]  # valid.txt was recognised, not fetched
    records = json.loads((folder / ".download.json").read_text())
    assert records["valid.txt"]["sha256"] == sha256(VALID)


def test_size_that_is_not_the_known_size_is_a_clear_error(server, tmp_path):
    server.files[TRAIN_NAME] = TRAIN + b"a mirror with another version"  # the known size stays TRAIN's
    with pytest.raises(DownloadError) as err:
        _fetch(server, tmp_path)
    message = str(err.value)
    assert f"{TRAIN_NAME} is {len(TRAIN) + 29:,} bytes but the handout's file is {len(TRAIN):,}" in message
    assert "--base-url" in message and "\n" not in message
    assert _names(tmp_path / "tinystories") == []  # nothing written


def test_sha256_that_is_not_the_known_one_is_a_clear_error(server, tmp_path):
    server.files[TRAIN_NAME] = TRAIN.replace(b"tiny", b"TINY")  # same size, other bytes
    with pytest.raises(DownloadError, match=rf"{TRAIN_NAME} is not the handout's file \(sha256"):
        _fetch(server, tmp_path)
    assert _names(tmp_path / "tinystories") == []


def test_base_url_that_is_not_an_address_is_one_line(tmp_path, capsys):
    status = cli.main(["download", "tinystories", "--out", str(tmp_path), "--base-url", "notaurl", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "'notaurl' is not a web address" in err and "--base-url" in err


class _FullDisk:
    """A file whose writes fail as on a full disk (the first one, so nothing lands)."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


def _full_disk(monkeypatch):
    def fake_open(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return _FullDisk(f) if any(m in mode for m in "wax") else f

    monkeypatch.setattr(download, "open", fake_open, raising=False)


def test_full_disk_while_downloading_is_one_line_and_leaves_nothing(server, tmp_path, monkeypatch):
    _full_disk(monkeypatch)
    with pytest.raises(DownloadError) as err:
        _fetch(server, tmp_path)
    message = str(err.value)
    assert message.startswith(f"cannot write {tmp_path / 'tinystories' / 'train.txt.part'}: the disk is full")
    assert "\n" not in message
    assert _names(tmp_path / "tinystories") == []


def test_full_disk_while_unpacking_keeps_only_the_verified_archive(server, tmp_path, monkeypatch):
    download_file_unpatched = download.download_file

    def download_then_fill_the_disk(*args, **kwargs):
        digest = download_file_unpatched(*args, **kwargs)
        _full_disk(monkeypatch)
        return digest

    monkeypatch.setattr(download, "download_file", download_then_fill_the_disk)
    with pytest.raises(DownloadError, match=r"cannot write .*train.txt: the disk is full.*owt_train.txt.gz is kept"):
        _fetch(server, tmp_path, "owt")
    assert _names(tmp_path / "owt") == ["owt_train.txt.gz"]  # no temporary file, no train.txt
    monkeypatch.setattr(download, "download_file", download_file_unpatched)  # space was freed
    monkeypatch.setattr(download, "open", builtins.open)
    server.requests.clear()
    _fetch(server, tmp_path, "owt")
    assert server.requests == [("/owt_valid.txt.gz", None)]  # the kept archive was not fetched again
    assert (tmp_path / "owt" / "train.txt").read_bytes() == TRAIN
