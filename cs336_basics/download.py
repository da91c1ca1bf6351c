# Hand-written plumbing (not exported from a notebook): download the handout's public data sets.
"""Download TinyStories or the OpenWebText sample that the handout uses, and check what arrived.

    >>> download_dataset("tinystories", "data")        # doctest: +SKIP
    [PosixPath('data/tinystories/train.txt'), PosixPath('data/tinystories/valid.txt')]

Files land as ``OUT/<dataset>/train.txt`` and ``OUT/<dataset>/valid.txt`` so that
``cs336 pipeline --data OUT/<dataset>`` finds them. What a user sees:

* a progress bar on stderr (tqdm), and a line whenever something is thrown away or fetched again;
* **verification**: a download must have exactly the size the server announced (Content-Length,
  or the total of Content-Range), and the handout's known size and sha256 (``DATASETS``) where
  they are known; owt's unpacked text is checked against its known size and sha256 the same way.
  A body that ends early is an error that keeps ``NAME.part`` for the next run, never a finished
  file; a file that is whole but not the handout's one (wrong size or sha256) is an error that
  names it, and nothing of it is kept;
* **resume**: bytes arrive in ``NAME.part``, and ``NAME.part.json`` remembers the file they came
  from (URL, ETag or else Last-Modified, total size). A re-run asks for the rest with ``Range``
  and ``If-Range``, so if the file on the server changed, the server sends it whole (200) and the
  download starts over. A ``.part`` without that record, or whose record does not match, is never
  extended: it is deleted and the download starts from zero;
* **a record of finished files**: ``OUT/<dataset>/.download.json`` holds each file's size,
  sha256 (computed once, while downloading) and source URL. A file is skipped as "already there"
  only while its size still matches its record. A file that does not match (truncated or edited
  by hand, or left without a record by an older version) is downloaded again, with a line on
  stderr saying why; the old copy stays in place until the new one is complete. A file without a
  record that has the handout's known size and sha256 (one placed by hand) is kept and recorded;
* nothing half-written under a final name: the ``.part`` is renamed only once it is verified, and
  owt's gzip files are unpacked (streaming) into a temporary name that is renamed at the end;
* every failure is one line (``DownloadError``) that names the file or URL and what to do:
  network unreachable or HTTP error (with where to put the file by hand), a body that ended
  early, a size or sha256 that does not match, an address that is not one, a full disk (then the
  ``.part`` is removed too, since the space is what is missing).

Only the standard library's ``urllib`` is used. The address can be overridden (``base_url=`` or
the environment variable ``CS336_DATA_URL``), which is how the tests serve files from 127.0.0.1;
a mirror must serve the same files, so the known sizes and sha256 apply to it as well.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from cs336_basics.files import atomic_path, atomic_write, describe_os_error

BASE_URL_ENV = "CS336_DATA_URL"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60
MANIFEST = ".download.json"  # in OUT/<dataset>/: the record of finished files


@dataclass(frozen=True)
class RemoteFile:
    remote_name: str  # file name under the data set's base URL
    local_name: str  # name it gets in OUT/<dataset>/ (after gunzip when remote_name ends in .gz)
    size: int | None = None  # bytes of remote_name as served; None: unknown, trust the server's size
    sha256: str | None = None  # of remote_name as served; None: unknown
    unpacked_size: int | None = None  # .gz only: bytes of local_name after gunzip
    unpacked_sha256: str | None = None  # .gz only: sha256 of local_name after gunzip

    @property
    def gzipped(self) -> bool:
        return self.remote_name.endswith(".gz")

    @property
    def local_size(self) -> int | None:
        return self.unpacked_size if self.gzipped else self.size

    @property
    def local_sha256(self) -> str | None:
        return self.unpacked_sha256 if self.gzipped else self.sha256


@dataclass(frozen=True)
class Dataset:
    base_url: str
    files: tuple[RemoteFile, ...]


# Known sizes and sha256 of the handout's files, from public records of them: several independent
# CS336 write-ups report the same values, and one pins TinyStories' to Hugging Face's Git LFS
# metadata at revision f54c09fd23315a6f9c86f9dc80f725de7d8f9c64. The sha256 of the two .gz files
# could not be confirmed by more than one source, so they stay None; the sha256 of the unpacked
# text (what training reads) is checked instead, and gzip's own CRC checks the archive.
DATASETS: dict[str, Dataset] = {
    "tinystories": Dataset(
        "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/",
        (
            RemoteFile("TinyStoriesV2-GPT4-train.txt", "train.txt", size=2_227_753_162,
                       sha256="6418d412de72888f52b5142c761ac21a582f7d1166f0bfbdb5f03ccfdec90443"),
            RemoteFile("TinyStoriesV2-GPT4-valid.txt", "valid.txt", size=22_502_601,
                       sha256="6874bae9a4c1a4e7edcf0e53b86c17817e9cf881fc75ff2368da457b80c0585d"),
        ),
    ),
    "owt": Dataset(
        "https://huggingface.co/datasets/stanford-cs336/owt-sample/resolve/main/",
        (
            RemoteFile("owt_train.txt.gz", "train.txt", size=4_591_240_837, sha256=None,
                       unpacked_size=11_920_511_059,
                       unpacked_sha256="bbeb7f291a981ecfd5cf44b84d0f654b9e96c53dff99f2556b7d2cccaf8c1918"),
            RemoteFile("owt_valid.txt.gz", "valid.txt", size=111_785_382, sha256=None,
                       unpacked_size=289_998_753,
                       unpacked_sha256="2406f278e71829d273b315e9b403285baea7022b26a96d2728dd8b776ea40660"),
        ),
    ),
}


class DownloadError(Exception):
    """A download failed in a way the user can act on; the message says how."""


class _NetworkError(DownloadError):
    """The server could not be reached or refused the file: placing it by hand is a way out."""


# ---------------------------------------------------------------- a data set: which files to fetch
def download_dataset(
    name: str,
    out_dir: str | os.PathLike = "data",
    *,
    base_url: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Fetch data set ``name`` ("tinystories" or "owt") into ``out_dir/name/``; return the text files.

    Files that still match their record in ``.download.json`` are kept; others are fetched again.
    ``base_url`` (or the ``CS336_DATA_URL`` environment variable) replaces the data set's address.
    """
    if name not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    base = _checked_base_url(base_url or os.environ.get(BASE_URL_ENV) or dataset.base_url)
    target_dir = Path(out_dir) / name
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(describe_os_error(err, target_dir)) from None

    records = _read_json(target_dir / MANIFEST) or {}
    results = []
    for remote in dataset.files:
        final = target_dir / remote.local_name
        url = base + remote.remote_name
        record = _keep_existing(final, records.get(remote.local_name), remote, url, progress)
        if record is None:
            record = _fetch(remote, url, final, progress)
        if records.get(remote.local_name) != record:
            records[remote.local_name] = record
            _write_json(target_dir / MANIFEST, records)
        results.append(final)
    return results


def _checked_base_url(base: str) -> str:
    """``base`` with a trailing slash, or one line saying it is not a web address (urllib's is a traceback)."""
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DownloadError(f"{base!r} is not a web address (from --base-url or {BASE_URL_ENV}); "
                            "give one like https://host/folder/, or leave it out to use Hugging Face")
    return base if base.endswith("/") else base + "/"


def _keep_existing(final: Path, record: dict | None, remote: RemoteFile, url: str, progress: bool) -> dict | None:
    """The record of ``final`` when it can be kept as it is; None when it must be fetched (saying why)."""
    if not final.exists():
        return None
    size = final.stat().st_size
    if record is not None:
        # Size is enough to catch a truncated or replaced file without reading gigabytes each run.
        if size == record.get("size") and remote.local_size in (None, size):
            _say(f"{final} is already there; skipping (delete it to download again)", progress)
            return record
        expected = remote.local_size if remote.local_size is not None else record.get("size")
        _say(f"{final} is {size:,} bytes, not {expected:,}: downloading it again", progress)
        return None
    if remote.local_size == size:
        # No record (placed by hand, or left by an older version) but the handout's size: hash it once.
        _say(f"{final} has no download record; checking its sha256 once", progress)
        digest = _hash_file(final).hexdigest()
        if remote.local_sha256 in (None, digest):
            return {"size": size, "sha256": digest, "url": url}
        _say(f"{final} is not the handout's file (sha256 differs): downloading it again", progress)
        return None
    if remote.local_size is not None:
        _say(f"{final} has no download record and is {size:,} bytes, not {remote.local_size:,}: "
             "downloading it again", progress)
    else:
        _say(f"{final} has no download record to check it against: downloading it again", progress)
    return None


def _fetch(remote: RemoteFile, url: str, final: Path, progress: bool) -> dict:
    """Download (and for .gz unpack) one file into ``final``; return its record."""
    try:
        if not remote.gzipped:
            digest = download_file(url, final, size=remote.size, sha256=remote.sha256, progress=progress)
            return {"size": final.stat().st_size, "sha256": digest, "url": url}
        packed = final.with_name(remote.remote_name)
        # A .gz under its own name was verified when it was downloaded; only its unpacking was cut short.
        if packed.exists() and remote.size not in (None, packed.stat().st_size):
            packed.unlink()
        if not packed.exists():
            download_file(url, packed, size=remote.size, sha256=remote.sha256, progress=progress)
        digest = gunzip_file(packed, final, size=remote.unpacked_size, sha256=remote.unpacked_sha256,
                             progress=progress)
        packed.unlink()
        return {"size": final.stat().st_size, "sha256": digest, "url": url}
    except _NetworkError as err:
        raise _NetworkError(f"{err}. To place the files by hand: save {url} as {final}"
                            + (" after gunzipping it" if remote.gzipped else "")) from None


# ---------------------------------------------------------------- one file: resume, stream, verify
def download_file(url: str, dest: str | os.PathLike, *, size: int | None = None, sha256: str | None = None,
                  progress: bool = True) -> str:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` when that is safe; return its sha256.

    ``size`` and ``sha256``, when given, are what the file must have. The file appears under its
    name only once it is complete and verified (atomic rename).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    sidecar = dest.with_name(dest.name + ".part.json")
    for _ in range(2):  # a second round only after a stale .part was thrown away
        saved = _resumable(part, sidecar, url, progress)
        have = part.stat().st_size if saved else 0
        headers = {"Range": f"bytes={have}-", "If-Range": _validator(saved)} if have else {}
        with _open(url, headers) as response:
            status = response.getcode()
            if have and status == 416:  # nothing after byte `have`: whole if the sizes agree
                total = _content_range(response.headers)[1]
                if total == have == saved.get("size"):
                    _check_size(url, total, size)
                    hasher = _hash_file(part)
                    break
                _restart(part, sidecar, f"{part} is longer than {url}", progress)
                continue
            if have and status == 206:
                start, total = _content_range(response.headers)
                total = total if total is not None else saved.get("size")
                if start != have or saved.get("size") not in (None, total):
                    _restart(part, sidecar, f"the server resumed {url} at byte {start} of {total}, "
                                            f"not {have} of {saved.get('size')}", progress)
                    continue
                _check_size(url, total, size)
                hasher, mode = _hash_file(part), "ab"
            else:  # 200: a fresh download, or the file changed (If-Range), or Range is ignored
                if have:
                    _say(f"the server sent {url} whole (it changed, or ignores Range): starting over", progress)
                have, total = 0, _int(response.headers.get("Content-Length"))
                _check_size(url, total, size)
                _write_json(sidecar, {"url": url, "size": total, "etag": response.headers.get("ETag"),
                                      "last_modified": response.headers.get("Last-Modified")})
                hasher, mode = hashlib.sha256(), "wb"
            have = _stream(response, part, sidecar, mode, hasher, have, total, url, dest.name, progress)
            break
    else:  # cannot happen: the second round has no .part, so it asks for no Range
        raise DownloadError(f"the server's answers for {url} do not add up; delete {part} and try again")

    expected = total if total is not None else size
    if expected is not None and have < expected:
        raise DownloadError(f"the download of {url} stopped at {have:,} of {expected:,} bytes; "
                            f"run the command again to resume from {part}")
    if expected is not None and have > expected:
        _discard(part, sidecar)
        raise DownloadError(f"{url} sent {have:,} bytes, more than the expected {expected:,}; "
                            "check the address (--base-url or CS336_DATA_URL)")
    digest = hasher.hexdigest()
    if sha256 is not None and digest != sha256:
        _discard(part, sidecar)
        raise DownloadError(f"{url} is not the handout's file (sha256 {digest[:12]}..., expected {sha256[:12]}...); "
                            "check the address (--base-url or CS336_DATA_URL), or update DATASETS in "
                            "cs336_basics/download.py if the data set changed on purpose")
    try:
        os.replace(part, dest)
    except OSError as err:
        raise DownloadError(describe_os_error(err, dest)) from None
    sidecar.unlink(missing_ok=True)
    return digest


def _resumable(part: Path, sidecar: Path, url: str, progress: bool) -> dict | None:
    """The ``.part``'s saved record when the ``.part`` may be extended; otherwise clear it away."""
    if not part.exists():
        sidecar.unlink(missing_ok=True)
        return None
    saved = _read_json(sidecar)
    if saved is None:
        why = "has no record of the file it came from"
    elif saved.get("url") != url:
        why = f"came from {saved.get('url')}"
    elif _validator(saved) is None:
        why = "came from a server that gave no ETag or Last-Modified to resume against"
    elif saved.get("size") is not None and part.stat().st_size > saved["size"]:
        why = "is longer than the file it came from"
    else:
        return saved
    _restart(part, sidecar, f"{part} {why}", progress)
    return None


def _validator(saved: dict | None) -> str | None:
    """What ``If-Range`` may carry: a strong ETag, else Last-Modified (RFC 9110 forbids weak ETags there)."""
    if not saved:
        return None
    etag = saved.get("etag")
    if etag and not etag.startswith("W/"):
        return etag
    return saved.get("last_modified")


def _open(url: str, headers: dict):
    """The server's response (a 416 is returned too, since it can mean "the .part is whole")."""
    request = urllib.request.Request(url, headers={"User-Agent": "cs336-basics", **headers})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416:
            return err
        raise _NetworkError(f"the server answered HTTP {err.code} {err.reason} for {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise _NetworkError(f"the network is unreachable (cannot fetch {url}: {reason})") from None
    except ValueError as err:  # an address urllib cannot use
        raise DownloadError(f"cannot fetch {url}: {err}; check --base-url or {BASE_URL_ENV}") from None


def _check_size(url: str, total: int | None, size: int | None) -> None:
    """Refuse, before writing anything, a file whose announced size is not the handout's."""
    if total is not None and size is not None and total != size:
        raise DownloadError(f"{url} is {total:,} bytes but the handout's file is {size:,}; "
                            "check the address (--base-url or CS336_DATA_URL)")


def _stream(response, part: Path, sidecar: Path, mode: str, hasher, have: int, total: int | None,
            url: str, label: str, progress: bool) -> int:
    """Append the response body to ``part``, hashing it; return the ``.part``'s size."""
    bar = _bar(total, have, label, progress)
    try:
        with open(part, mode) as f:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as err:  # reset, timeout, IncompleteRead
                    raise DownloadError(f"the connection broke while fetching {url} ({err}); "
                                        f"run the command again to resume from {part}") from None
                if not chunk:  # the end, or the server closed early: the caller compares sizes
                    return have
                f.write(chunk)
                hasher.update(chunk)
                have += len(chunk)
                bar.update(len(chunk))
    except OSError as err:
        # Full disk, read-only folder: the space is what is missing, and a failed write leaves
        # the tail of the .part in doubt, so it goes too.
        _discard(part, sidecar)
        raise DownloadError(describe_os_error(err, part)) from None
    finally:
        bar.close()


def _restart(part: Path, sidecar: Path, why: str, progress: bool) -> None:
    _say(f"{why}: starting over", progress)
    _discard(part, sidecar)


def _discard(part: Path, sidecar: Path) -> None:
    part.unlink(missing_ok=True)
    sidecar.unlink(missing_ok=True)


# ---------------------------------------------------------------- gunzip
def gunzip_file(src: str | os.PathLike, dest: str | os.PathLike, *, size: int | None = None,
                sha256: str | None = None, progress: bool = True) -> str:
    """Unpack ``src`` (gzip) into ``dest``, streaming, through a temporary name; return dest's sha256.

    ``size`` and ``sha256``, when given, are what the unpacked file must have. A ``src`` that is
    not valid gzip, or does not unpack to them, is deleted (it never will), so the next run
    downloads it again.
    """
    src, dest = Path(src), Path(dest)
    hasher, written = hashlib.sha256(), 0
    bar = _bar(src.stat().st_size, 0, f"gunzip {src.name}", progress)
    try:
        with atomic_path(dest) as tmp:
            with open(src, "rb") as raw, gzip.GzipFile(fileobj=raw) as zipped, open(tmp, "wb") as out:
                last = 0
                while chunk := _read_gzip(zipped, src):
                    out.write(chunk)
                    hasher.update(chunk)
                    written += len(chunk)
                    bar.update(raw.tell() - last)
                    last = raw.tell()
            if size is not None and written != size:
                _reject_archive(src, f"unpacks to {written:,} bytes, not the handout's {size:,}")
            if sha256 is not None and hasher.hexdigest() != sha256:
                _reject_archive(src, "does not unpack to the handout's file (sha256 differs)")
    except OSError as err:
        kept = f"{src.name} is kept and unpacked on the next run"
        raise DownloadError(f"{describe_os_error(err, dest)} ({kept})") from None
    finally:
        bar.close()
    return hasher.hexdigest()


def _read_gzip(zipped: gzip.GzipFile, src: Path) -> bytes:
    """The next chunk of unpacked bytes; a corrupt or cut archive is rejected."""
    try:
        return zipped.read(CHUNK_BYTES)
    except (OSError, EOFError, zlib.error) as err:
        _reject_archive(src, f"is not a valid gzip file ({err})")


def _reject_archive(src: Path, why: str):
    """Delete an archive that cannot give the handout's text (it never will) and say so in one line."""
    src.unlink(missing_ok=True)
    raise DownloadError(f"{src} {why}; it was deleted: run the command again to download it afresh, "
                        "and if that fails the same way, check the address (--base-url or CS336_DATA_URL)")


# ---------------------------------------------------------------- small helpers
def _hash_file(path: Path):
    """A sha256 object fed with the whole of ``path`` (so that a resumed download can go on hashing)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            hasher.update(chunk)
    return hasher


def _read_json(path: Path) -> dict | None:
    """A small JSON record, or None when it is missing or unreadable (then it is as good as missing)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict) -> None:
    try:
        atomic_write(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        raise DownloadError(describe_os_error(err, path)) from None


def _content_range(headers) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``Content-Range: bytes 10-99/100`` or ``bytes */100``."""
    match = re.match(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", headers.get("Content-Range") or "")
    if not match:
        return None, None
    start, total = match.groups()
    return _int(start), _int(total)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _bar(total, initial, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, disable=not enabled, file=sys.stderr)


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr)
