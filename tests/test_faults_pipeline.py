"""Fault injection for `cs336 pipeline`: a second writer, changed inputs and options, bad sampling
settings, a too-short validation file. Each case ends in the right work or one clear line, and
nothing in the run folder is lost or mixed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from cs336_basics.pipeline import PipelineError, run_pipeline
from cs336_basics.runs import RunInUse, run_lock
from test_pipeline import SMALL, run_cli, write_corpus

pytestmark = pytest.mark.slow  # end-to-end runs: `pytest -m "not slow"` leaves them out

STEPS = ["--set", "schedule.max_steps=10"]


def snapshot(folder):
    """Every file's bytes (the lock file aside): what 'nothing changed' means."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished smoke run; tests copy it before they change anything."""
    root = tmp_path_factory.mktemp("faults")
    data = write_corpus(root / "data", n_train=300, n_valid=40)
    out = root / "run"
    from cs336_basics import cli

    assert cli.main(["pipeline", "--preset", "smoke", "--data", str(data), "--out", str(out), *SMALL, *STEPS]) == 0
    return data, out


@pytest.fixture
def run_copy(finished, tmp_path):
    data, out = finished
    shutil.copytree(data, tmp_path / "data")
    shutil.copytree(out, tmp_path / "run")
    return tmp_path / "data", tmp_path / "run"


def pipeline(capsys, data, out, *extra):
    return run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, "--out", out, *SMALL, *STEPS, *extra)


def test_a_second_writer_is_refused_at_once_and_a_dead_ones_lock_is_taken_over(run_copy, capsys):
    data, out = run_copy
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom cs336_basics.runs import run_lock\n"
         f"with run_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        start = time.monotonic()
        status, _, err = pipeline(capsys, data, out, "--prompt", "other prompt")
        assert status == 2 and time.monotonic() - start < 5
        assert f"in use by process {holder.pid}" in err and "another output folder" in err
        assert len(err.strip().splitlines()) == 1
        assert snapshot(out) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without cleaning up: its lock is simply taken over
    status, _, err = pipeline(capsys, data, out, "--prompt", "other prompt")
    assert status == 0 and "[samples] done" in err


def test_cs336_train_into_a_folder_another_process_writes_is_refused(run_copy, capsys):
    _, out = run_copy
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom cs336_basics.runs import run_lock\n"
         f"with run_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        status, _, err = run_cli(capsys, "train", "--config", out / "config.toml", "--resume",
                                 "--set", f"run.out_dir={out}", "--set", "schedule.max_steps=20")
        assert status == 2 and f"in use by process {holder.pid}" in err and "Traceback" not in err
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()


def test_two_real_pipelines_into_one_folder_one_is_refused(tmp_path):
    data = write_corpus(tmp_path / "data", n_train=300, n_valid=40)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "cs336_basics.cli", "pipeline", "--preset", "smoke", "--data", str(data),
               "--out", str(out), *SMALL, "--set", "schedule.max_steps=5000"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in first.stderr:  # wait until the first one is training
            if line.startswith("[train]"):
                break
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 2
        assert f"in use by process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGINT)  # saves a checkpoint and stops
        first.wait(timeout=60)
    assert (out / "checkpoints" / "latest.pt").is_file()


def test_run_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    with run_lock(tmp_path):
        with run_lock(tmp_path):
            pass
        probe = subprocess.run(
            [sys.executable, "-c", f"from cs336_basics.runs import run_lock\nwith run_lock({str(tmp_path)!r}): pass"],
            capture_output=True, text=True)
        assert probe.returncode != 0 and "RunInUse" in probe.stderr
    with run_lock(tmp_path):  # released: free again
        pass
    assert RunInUse.__doc__


def test_other_data_with_older_timestamps_is_noticed_and_refused(run_copy, tmp_path, capsys):
    data, out = run_copy
    other = write_corpus(tmp_path / "other", n_train=300, n_valid=40, seed=1)
    for path in other.iterdir():  # older than every output: make's rule would skip every stage
        os.utime(path, (1_000_000_000, 1_000_000_000))
    before = snapshot(out)
    status, _, err = pipeline(capsys, other, out)
    assert status == 2
    assert "tokenizer stage" in err and "train.txt changed" in err and "delete" in err and "another --out" in err
    assert snapshot(out) == before


def test_another_learning_rate_is_refused_naming_it(run_copy, capsys):
    data, out = run_copy
    before = snapshot(out)
    status, _, err = pipeline(capsys, data, out, "--set", "optim.lr=1e-3")
    assert status == 2 and "optim.lr: 0.003 -> 0.001" in err
    assert snapshot(out) == before


def test_other_sampling_flags_or_prompts_redo_the_samples_only(run_copy, capsys):
    data, out = run_copy
    status, _, err = pipeline(capsys, data, out, "--temperature", "0.5", "--prompt", "The dog")
    assert status == 0
    assert "[train] skipped" in err and "[evaluate] skipped" in err and "[samples] done" in err
    samples = (out / "samples.txt").read_text()
    assert samples.startswith("### prompt 'The dog'") and "temperature 0.5" in samples
    status, _, err = pipeline(capsys, data, out, "--temperature", "0.5", "--prompt", "The dog")
    assert status == 0 and "[samples] skipped" in err


def test_a_changed_valid_file_is_refused_before_its_tokens_are_overwritten(run_copy, capsys):
    data, out = run_copy
    before = snapshot(out)
    with open(data / "valid.txt", "a", encoding="utf-8") as f:
        f.write("One more story.<|endoftext|>")
    status, _, err = pipeline(capsys, data, out)
    assert status == 2 and "tokenize stage" in err and "valid.txt changed" in err
    assert snapshot(out) == before


def test_a_deleted_output_is_made_again(run_copy, capsys):
    data, out = run_copy
    (out / "eval.json").unlink()
    status, _, err = pipeline(capsys, data, out)
    assert status == 0 and "[evaluate] done" in err and (out / "eval.json").is_file()


def test_a_run_folder_without_a_record_is_refused(run_copy, capsys):
    data, out = run_copy
    (out / "stages.json").unlink()  # as a folder from `cs336 train` or an older cs336
    before = snapshot(out)
    status, _, err = pipeline(capsys, data, out)
    assert status == 2 and "no record of what made it" in err
    assert snapshot(out) == before


@pytest.mark.parametrize("flag, value", [("--temperature", "nan"), ("--temperature", "inf"), ("--top-p", "nan")])
def test_nan_sampling_settings_fail_before_any_work(tmp_path, capsys, flag, value):
    data = write_corpus(tmp_path / "data", n_train=50, n_valid=10)
    status, _, err = pipeline(capsys, data, tmp_path / "run", flag, value)
    assert status == 2 and flag in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(PipelineError, match="temperature"):
        run_pipeline("smoke", data, tmp_path / "run", ["model.vocab_size=320"], temperature=float("nan"))
    assert not (tmp_path / "run").exists()


def test_a_two_byte_valid_file_is_one_clear_line(tmp_path, capsys):
    data = write_corpus(tmp_path / "data", n_train=100, n_valid=1)
    (data / "valid.txt").write_text("hi")
    status, _, err = pipeline(capsys, data, tmp_path / "run")
    assert status == 2 and "valid.txt is too short" in err and "context_length" in err
    assert err.strip().splitlines()[-1].startswith("cs336 pipeline: error: ") and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    data = write_corpus(tmp_path / "data", n_train=50, n_valid=10)
    monkeypatch.chdir(tmp_path)
    status, _, err = pipeline(capsys, data, "")
    assert status == 2 and "--out is empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_full_disk_while_writing_the_scores_is_one_line_and_keeps_the_old_ones(run_copy, capsys, monkeypatch):
    import errno

    import cs336_basics.files as files

    data, out = run_copy
    (out / "eval.json").write_text('{"old": 1}')  # differs from its record: the stage is redone
    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("eval.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", full_disk)
    status, _, err = pipeline(capsys, data, out)
    assert status == 2 and "disk is full" in err and "Traceback" not in err
    assert (out / "eval.json").read_text() == '{"old": 1}'
    assert not list(out.rglob("*.tmp"))


def test_default_data_that_no_longer_matches_its_download_is_not_used(tmp_path, capsys, monkeypatch):
    import socket

    from download_server import pin_handout

    folder = tmp_path / "data" / "tinystories"
    stories = write_corpus(folder, n_train=300, n_valid=40)
    files = {"TinyStoriesV2-GPT4-train.txt": (stories / "train.txt").read_bytes(),
             "TinyStoriesV2-GPT4-valid.txt": (stories / "valid.txt").read_bytes()}
    pin_handout(monkeypatch, files | {"owt_train.txt.gz": b"", "owt_valid.txt.gz": b""})
    with open(folder / "train.txt", "r+b") as f:  # an interrupted copy: half the file
        f.truncate(len(files["TinyStoriesV2-GPT4-train.txt"]) // 2)
    with socket.socket() as s:  # offline: the pipeline must fetch it again, and cannot
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CS336_DATA_URL", f"http://127.0.0.1:{port}/")
    status, _, err = run_cli(capsys, "pipeline", "--preset", "smoke", *SMALL, *STEPS)
    assert status == 2 and "network is unreachable" in err
    assert not (tmp_path / "runs").exists()


def test_a_corrupt_checkpoint_is_one_line_naming_it(run_copy, capsys):
    data, out = run_copy
    latest = out / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:100])  # truncated, as by a crash while it was copied
    status, _, err = pipeline(capsys, data, out, "--prompt", "a new prompt")
    assert status == 2 and "Traceback" not in err and "weights_only" not in err
    last = err.strip().splitlines()[-1]  # (the lines before it say which stages were skipped)
    assert last.startswith("cs336 pipeline: error: ") and f"checkpoint {latest} is truncated or corrupt" in last
