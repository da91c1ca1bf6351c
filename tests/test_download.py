"""cs336 download against a local HTTP server on 127.0.0.1 (never the internet).

The server (tests/download_server.py) has its own Range, If-Range and ETag support, so the tests
control exactly what a well-behaved server, one that ignores Range, and one that drops the
connection half-way do. Faults (truncation, changed files, full disk...) are in
tests/test_faults_download.py.
"""

import json
import socket

import pytest

from cs336_basics import cli
from cs336_basics.download import DownloadError, download_dataset, download_file
from tests.download_server import TRAIN, VALID, etag_of, pin_handout, serve


@pytest.fixture
def server(monkeypatch):
    with serve(monkeypatch) as srv:
        yield srv


def test_tinystories_downloads_to_train_and_valid(server, tmp_path):
    paths = download_dataset("tinystories", tmp_path, base_url=server.url, progress=False)
    assert [p.name for p in paths] == ["train.txt", "valid.txt"]
    assert (tmp_path / "tinystories" / "train.txt").read_bytes() == TRAIN
    assert (tmp_path / "tinystories" / "valid.txt").read_bytes() == VALID
    # .download.json records each finished file (size, sha256, URL) so that a re-run can check it.
    assert sorted(p.name for p in (tmp_path / "tinystories").iterdir()) == [".download.json", "train.txt", "valid.txt"]


def test_owt_is_gunzipped_and_the_archive_removed(server, tmp_path):
    download_dataset("owt", tmp_path, base_url=server.url, progress=False)
    folder = tmp_path / "owt"
    assert (folder / "train.txt").read_bytes() == TRAIN
    assert (folder / "valid.txt").read_bytes() == VALID
    assert sorted(p.name for p in folder.iterdir()) == [".download.json", "train.txt", "valid.txt"]


def test_existing_files_are_not_downloaded_again(server, tmp_path):
    download_dataset("tinystories", tmp_path, base_url=server.url, progress=False)
    server.requests.clear()
    download_dataset("tinystories", tmp_path, base_url=server.url, progress=False)
    assert server.requests == []


def test_resume_asks_for_the_rest_with_range(server, tmp_path):
    url = server.url + "TinyStoriesV2-GPT4-train.txt"
    dest = tmp_path / "train.txt"
    server.cut_after = 1234
    with pytest.raises(DownloadError):
        download_file(url, dest, progress=False)
    server.requests.clear()
    download_file(url, dest, progress=False)
    assert dest.read_bytes() == TRAIN
    assert server.requests == [("/TinyStoriesV2-GPT4-train.txt", "bytes=1234-")]
    assert server.if_ranges == [None, etag_of(TRAIN)]  # resumed only if the file is still the same
    assert not (tmp_path / "train.txt.part").exists() and not (tmp_path / "train.txt.part.json").exists()


def test_server_that_ignores_range_gets_a_fresh_start(server, tmp_path):
    server.honour_range = False
    dest = tmp_path / "train.txt"
    (tmp_path / "train.txt.part").write_bytes(b"x" * 999)  # would corrupt the file if appended to
    download_file(server.url + "TinyStoriesV2-GPT4-train.txt", dest, progress=False)
    assert dest.read_bytes() == TRAIN


def test_complete_part_file_answered_416_is_kept(server, tmp_path):
    url = server.url + "TinyStoriesV2-GPT4-valid.txt"
    dest = tmp_path / "valid.txt"
    (tmp_path / "valid.txt.part").write_bytes(VALID)  # as if stopped between the last byte and the rename
    (tmp_path / "valid.txt.part.json").write_text(json.dumps(
        {"url": url, "size": len(VALID), "etag": etag_of(VALID), "last_modified": None}))
    download_file(url, dest, progress=False)
    assert dest.read_bytes() == VALID
    assert server.requests == [("/TinyStoriesV2-GPT4-valid.txt", f"bytes={len(VALID)}-")]


def test_dropped_connection_keeps_the_part_and_a_rerun_resumes(server, tmp_path):
    server.cut_after = 5000
    with pytest.raises(DownloadError, match="run the command again"):
        download_dataset("tinystories", tmp_path, base_url=server.url, progress=False)
    folder = tmp_path / "tinystories"
    assert not (folder / "train.txt").exists()  # never a half-written file under the final name
    assert (folder / "train.txt.part").stat().st_size == 5000
    download_dataset("tinystories", tmp_path, base_url=server.url, progress=False)
    assert (folder / "train.txt").read_bytes() == TRAIN
    assert ("/TinyStoriesV2-GPT4-train.txt", "bytes=5000-") in server.requests


def test_base_url_from_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CS336_DATA_URL", server.url)
    download_dataset("tinystories", tmp_path, progress=False)
    assert (tmp_path / "tinystories" / "valid.txt").read_bytes() == VALID


def test_missing_remote_file_is_a_clear_error(server, tmp_path):
    del server.files["TinyStoriesV2-GPT4-valid.txt"]
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_dataset("tinystories", tmp_path, base_url=server.url, progress=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_gives_one_line_with_the_manual_fix(tmp_path, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/"
    status = cli.main(["download", "tinystories", "--out", str(tmp_path), "--base-url", url, "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert "network is unreachable" in err
    assert "place the files by hand" in err and str(tmp_path / "tinystories" / "train.txt") in err


def test_cli_downloads_and_lists_the_files(server, tmp_path, capsys):
    status = cli.main(["download", "owt", "--out", str(tmp_path), "--base-url", server.url, "--quiet"])
    assert status == 0
    out = capsys.readouterr().out
    assert "train.txt" in out and "valid.txt" in out
    assert (tmp_path / "owt" / "train.txt").read_bytes() == TRAIN


def test_corrupt_gzip_is_a_clear_error(server, tmp_path, monkeypatch):
    server.files["owt_train.txt.gz"] = b"not gzip at all"
    pin_handout(monkeypatch, server.files)  # the right size, so the gzip check is what fails
    with pytest.raises(DownloadError, match="not a valid gzip"):
        download_dataset("owt", tmp_path, base_url=server.url, progress=False)
    assert not (tmp_path / "owt" / "train.txt").exists()
    assert not (tmp_path / "owt" / "owt_train.txt.gz").exists()  # useless: the next run fetches it afresh


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="tinystories, owt"):
        download_dataset("wikipedia", tmp_path)
