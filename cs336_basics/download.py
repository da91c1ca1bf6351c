# Hand-written plumbing (not exported from a notebook): download the handout's public data sets.
"""Download TinyStories or the OpenWebText sample that the handout uses.

    >>> download_dataset("tinystories", "data")        # doctest: +SKIP
    [PosixPath('data/tinystories/train.txt'), PosixPath('data/tinystories/valid.txt')]

Files land as ``OUT/<dataset>/train.txt`` and ``OUT/<dataset>/valid.txt`` so that
``cs336 pipeline --data OUT/<dataset>`` finds them. What a user of such a tool expects:

* a progress bar on stderr (tqdm);
* resume: bytes arrive in ``NAME.part``; a re-run asks the server for the rest with an HTTP
  ``Range`` header and appends (a server that ignores ``Range`` gets a fresh start);
* nothing half-written: the ``.part`` file is renamed only once all bytes are there, and a
  gzipped file is unpacked (streaming) into a temporary name that is renamed at the end;
* one clear line when the network is unreachable, saying where to put the files by hand.

Only the standard library's ``urllib`` is used. The address can be overridden (``base_url=`` or
the environment variable ``CS336_DATA_URL``), which is how the tests serve files from 127.0.0.1.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BASE_URL_ENV = "CS336_DATA_URL"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class RemoteFile:
    remote_name: str  # file name under the data set's base URL
    local_name: str  # name it gets in OUT/<dataset>/ (after gunzip when remote_name ends in .gz)


@dataclass(frozen=True)
class Dataset:
    base_url: str
    files: tuple[RemoteFile, ...]


DATASETS: dict[str, Dataset] = {
    "tinystories": Dataset(
        "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/",
        (
            RemoteFile("TinyStoriesV2-GPT4-train.txt", "train.txt"),
            RemoteFile("TinyStoriesV2-GPT4-valid.txt", "valid.txt"),
        ),
    ),
    "owt": Dataset(
        "https://huggingface.co/datasets/stanford-cs336/owt-sample/resolve/main/",
        (
            RemoteFile("owt_train.txt.gz", "train.txt"),
            RemoteFile("owt_valid.txt.gz", "valid.txt"),
        ),
    ),
}


class DownloadError(Exception):
    """A download failed in a way the user can act on; the message says how."""


def download_dataset(
    name: str,
    out_dir: str | os.PathLike = "data",
    *,
    base_url: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Fetch data set ``name`` ("tinystories" or "owt") into ``out_dir/name/``; return the text files.

    Files already present are kept (delete them to download again). ``base_url`` (or the
    ``CS336_DATA_URL`` environment variable) replaces the data set's address.
    """
    if name not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    base = base_url or os.environ.get(BASE_URL_ENV) or dataset.base_url
    if not base.endswith("/"):
        base += "/"
    target_dir = Path(out_dir) / name
    target_dir.mkdir(parents=True, exist_ok=True)

    results = []
    for remote in dataset.files:
        final = target_dir / remote.local_name
        if final.exists():
            _say(f"{final} is already there; skipping (delete it to download again)", progress)
            results.append(final)
            continue
        url = base + remote.remote_name
        try:
            if remote.remote_name.endswith(".gz"):
                packed = target_dir / remote.remote_name
                if not packed.exists():
                    download_file(url, packed, progress=progress)
                gunzip_file(packed, final, progress=progress)
                packed.unlink()
            else:
                download_file(url, final, progress=progress)
        except DownloadError as err:
            raise DownloadError(f"{err}. To place the files by hand: save {url} as {final}"
                                + (" after gunzipping it" if url.endswith(".gz") else "")) from None
        results.append(final)
    return results


def download_file(url: str, dest: str | os.PathLike, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` if an earlier try left one.

    The finished file appears under its name only once it is complete (atomic rename).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0

    request = urllib.request.Request(url, headers={"User-Agent": "cs336-basics"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing after byte `have`: the .part may already be whole
            total = _total_from_content_range(err.headers.get("Content-Range"))
            if total == have:
                os.replace(part, dest)
                return dest
            part.unlink()  # the .part is longer than the file: start over
            return download_file(url, dest, progress=progress)
        raise DownloadError(f"the server answered HTTP {err.code} {err.reason} for {url}") from None
    except (urllib.error.URLError, socket.timeout, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"the network is unreachable (cannot fetch {url}: {reason})") from None

    with response:
        if have and response.status == 206:
            start = _start_from_content_range(response.headers.get("Content-Range"))
            if start != have:
                raise DownloadError(
                    f"the server resumed {url} at byte {start}, not {have}; delete {part} and retry")
            mode = "ab"
        else:  # 200: the server ignored Range (or there was nothing to resume): start over
            have, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None

        bar = _bar(total, have, dest.name, progress)
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except (OSError, socket.timeout) as err:  # includes http.client.IncompleteRead
                        raise DownloadError(
                            f"the network is unreachable (connection lost while fetching {url}: {err}); "
                            f"run the command again to resume from {part}") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    have += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()

    if total is not None and have != total:
        raise DownloadError(
            f"the download of {url} stopped at {have} of {total} bytes; run the command again to resume")
    os.replace(part, dest)
    return dest


def gunzip_file(src: str | os.PathLike, dest: str | os.PathLike, *, progress: bool = True) -> Path:
    """Unpack ``src`` (gzip) into ``dest``, streaming, through a temporary name in the same folder."""
    src, dest = Path(src), Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    bar = _bar(src.stat().st_size, 0, f"gunzip {src.name}", progress)
    try:
        with open(src, "rb") as raw, gzip.GzipFile(fileobj=raw) as zipped, open(tmp, "wb") as out:
            last = 0
            while chunk := zipped.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(raw.tell() - last)
                last = raw.tell()
        os.replace(tmp, dest)
    except (OSError, EOFError) as err:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{src} is not a valid gzip file ({err}); delete it and download again") from None
    finally:
        bar.close()
    return dest


def _start_from_content_range(header: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", header or "")
    return int(match.group(1)) if match else None


def _total_from_content_range(header: str | None) -> int | None:
    match = re.search(r"/(\d+)$", header or "")
    return int(match.group(1)) if match else None


def _bar(total, initial, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, disable=not enabled, file=sys.stderr)


def _say(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr)
