# Hand-written plumbing (not exported from a notebook): writing files so that nothing is ever half-written.
"""One way to write a file or a folder: into a temporary name beside it, then rename.

A reader (or a later run) sees the old file or the new one, never half of one; a failure (full
disk, Ctrl-C, a bug) leaves the old file as it was and no temporary file behind.

    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> atomic_write(folder / "hello.txt", "hi\\n").read_text()
    'hi\\n'
    >>> with atomic_path(folder / "numbers.bin") as tmp:   # for writers that want a path (torch.save, savefig)
    ...     _ = tmp.write_bytes(bytes(range(3)))
    >>> (folder / "numbers.bin").read_bytes()
    b'\\x00\\x01\\x02'

``describe_os_error`` turns the errors a user can act on (full disk, read-only or forbidden
folder) into one line that names the file and the fix.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["read_json_object", "atomic_write", "atomic_path", "atomic_dir", "temporary_path", "describe_os_error", "check_writable",
           "attributed_to"]


def read_json_object(path: str | os.PathLike) -> dict:
    """The JSON object in ``path``; ``{}`` when the file is missing, unreadable, torn or not an object.

    For the small record files of a run (status.json, eval.json, env.json) that a reader may meet
    before they are written:

        >>> read_json_object("no/such/status.json")
        {}
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to ``path`` (same folder, so ``os.replace`` is atomic); creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any error it is removed."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8 with ``\\n`` newlines, or bytes) to ``path`` atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            with open(tmp, "xb") as f:
                f.write(data)
        else:
            with open(tmp, "x", encoding="utf-8", newline="\n") as f:
                f.write(data)
    return path


@contextmanager
def atomic_dir(path: str | os.PathLike, *, owned: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it takes the place of ``path`` as a whole.

    An existing ``path`` is replaced only when every entry in it is one of ``owned`` (the files this
    writer makes), so a folder that holds anything else is never deleted: that is a ValueError
    before any work. The old folder is moved aside first and removed after the new one is in place.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path} exists and is not a folder; choose a folder path")
        foreign = sorted(p.name for p in path.iterdir() if p.name not in owned)
        if foreign:
            raise ValueError(f"{path} holds other files ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                             "choose an empty or new folder")
    tmp = temporary_path(path)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = temporary_path(path.with_name(path.name + ".old"))
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_FIXES = {
    errno.ENOSPC: "the disk is full: free some space (or write somewhere else) and run the command again",
    errno.EDQUOT: "the disk quota is exceeded: free some space (or write somewhere else) and run the command again",
    errno.EROFS: "the file system is read-only: choose a folder you can write to",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "permission denied: choose a folder you can write to",
    errno.ENOTDIR: "part of the path is a file, not a folder: choose another path",
    errno.EFBIG: "the file is too large for this file system: write somewhere else",
}


def describe_os_error(err: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for a failed write: which file, what went wrong, and what to do.

    >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device"), "runs/a/latest.pt")
    'cannot write runs/a/latest.pt: the disk is full: free some space (or write somewhere else) and run the command again'
    """
    where = path if path is not None else (err.filename or "the output")
    fix = _FIXES.get(err.errno, err.strerror or str(err))
    if err.errno in _FIXES and err.strerror and err.strerror != os.strerror(err.errno):
        fix += f" ({err.strerror})"  # a detail the raiser added, e.g. how much room is needed
    return f"cannot write {where}: {fix}"


@contextmanager
def attributed_to(path: str | os.PathLike) -> Iterator[None]:
    """Name ``path`` in an OSError raised inside that names no file (``file.write``, ``torch.save``
    to a file object), so ``describe_os_error`` can say which file could not be written."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be written in it, before any long work.

    Raises OSError (see ``describe_os_error``) when it cannot.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = temporary_path(folder / "write-test")
    try:
        with open(probe, "xb") as f:
            f.write(b"x")
    finally:
        probe.unlink(missing_ok=True)
    return folder
