"""A small HTTP server on 127.0.0.1 for the download tests (never the internet).

It is written here, with its own Range, If-Range and ETag support, so the tests control exactly
what a well-behaved server, one that ignores Range, one whose file changed, and one that drops
the connection half-way do. Used by tests/test_download.py and tests/test_faults_download.py:

    @pytest.fixture
    def server(monkeypatch):
        with serve(monkeypatch) as srv:
            yield srv
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import threading
import zlib
from contextlib import contextmanager

from cs336_basics import download

TRAIN = ("Once upon a time there was a tiny story.<|endoftext|>\n" * 2000).encode()
VALID = "Ünïcödé valid text 🙂<|endoftext|>\n".encode() * 300


def etag_of(body: bytes) -> str:
    """A strong ETag that changes whenever the served bytes change."""
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0 (the default): one request per connection, and a body without Content-Length
    # simply ends when the connection closes.

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        srv.if_ranges.append(self.headers.get("If-Range"))
        name = self.path.lstrip("/")
        if name not in srv.files:
            self.send_error(404, "Not Found")
            return
        body = srv.files[name]
        etag = etag_of(body)
        start = 0
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        if rng and srv.honour_range and if_range in (None, etag):  # If-Range: resume only the same file
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("ETag", etag)
        if srv.send_length:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if srv.cut_after is not None:  # drop the connection after a few bytes, once
            self.wfile.write(payload[: srv.cut_after])
            srv.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(payload)


@contextmanager
def serve(monkeypatch):
    """A running server holding the handout's four file names (small stand-ins), with the known
    sizes and sha256 in ``download.DATASETS`` pinned to these stand-ins (see ``pin_handout``)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files = {
        "TinyStoriesV2-GPT4-train.txt": TRAIN,
        "TinyStoriesV2-GPT4-valid.txt": VALID,
        "owt_train.txt.gz": gzip.compress(TRAIN),
        "owt_valid.txt.gz": gzip.compress(VALID),
    }
    srv.requests, srv.if_ranges = [], []
    srv.honour_range, srv.send_length, srv.cut_after = True, True, None
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/"
    pin_handout(monkeypatch, srv.files)
    # A short poll interval: shutdown() waits for it, and the default (0.5 s) dominates each test.
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def pin_handout(monkeypatch, files: dict[str, bytes]) -> None:
    """Make ``download.DATASETS`` know the sizes and sha256 of ``files`` (as it knows the real ones)."""

    def pinned(remote: download.RemoteFile) -> download.RemoteFile:
        body = files[remote.remote_name]
        known = dict(size=len(body), sha256=sha256(body))
        if remote.gzipped:
            try:
                text = gzip.decompress(body)
                known.update(unpacked_size=len(text), unpacked_sha256=sha256(text))
            except (OSError, EOFError, zlib.error):  # a test serving a broken archive on purpose
                known.update(unpacked_size=None, unpacked_sha256=None)
        return dataclasses.replace(remote, **known)

    datasets = {name: dataclasses.replace(ds, files=tuple(pinned(r) for r in ds.files))
                for name, ds in download.DATASETS.items()}
    monkeypatch.setattr(download, "DATASETS", datasets)
