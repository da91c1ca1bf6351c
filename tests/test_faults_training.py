"""Training when things go wrong: a damaged checkpoint or metrics file, a full disk, SIGTERM, an
empty run.out_dir, weights that blow up. Each fault ends in one clear line (or a clean stop), and
what was saved before it stays usable."""

import builtins
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple

import pytest
import torch

import cs336_basics.train as train_mod
from cs336_basics import cli
from cs336_basics.serialization import CheckpointError, read_checkpoint
from cs336_basics.config import ConfigError, load_config
from cs336_basics.train import TrainingDiverged, train
from test_train_loop import ROOT, SMOKE, one_thread, read_metrics, smoke_config, token_files  # noqa: F401

def no_space():
    return OSError(errno.ENOSPC, "No space left on device")


def cli_train(token_files, out_dir, *overrides, resume=False):
    """`cs336 train` argv with the same settings as smoke_config."""
    cfg = smoke_config(token_files, out_dir, *overrides)
    argv = ["train", "--config", str(SMOKE)]
    for section in ("model", "schedule", "data", "run", "optim"):
        for key, value in vars(getattr(cfg, section)).items():
            if value != getattr(load_config(SMOKE), section).__dict__[key]:
                argv += ["--set", f"{section}.{key}={json.dumps(value) if isinstance(value, bool) else value}"]
    return argv + (["--resume"] if resume else [])


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# ---------------------------------------------------------------- 1. a damaged checkpoint
@pytest.mark.parametrize("damage", ["empty", "truncated", "random bytes"])
def test_a_damaged_latest_checkpoint_is_one_clear_error(token_files, tmp_path, capsys, damage):
    run = tmp_path / "run"
    train(smoke_config(token_files, run, "schedule.max_steps=2"))
    latest = run / "checkpoints" / "latest.pt"
    data = latest.read_bytes()
    latest.write_bytes({"empty": b"", "truncated": data[:100], "random bytes": random.Random(0).randbytes(4096)}[damage])

    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(latest)
    assert cli.main(cli_train(token_files, run, "schedule.max_steps=4", resume=True)) == 2
    err = one_line_error(capsys)
    assert str(latest) in err and "truncated or corrupt" in err and "delete it" in err
    assert "weights_only" not in err
    assert cli.main(["generate", "--run", str(run)]) == 2
    err = one_line_error(capsys)
    assert str(latest) in err and "truncated or corrupt" in err and "weights_only" not in err


def test_a_damaged_checkpoint_points_to_the_newest_kept_one(token_files, tmp_path):
    run = tmp_path / "run"
    train(smoke_config(token_files, run, "schedule.max_steps=4", "run.checkpoint_every=2",
                       "run.keep_checkpoints=true"))
    (run / "checkpoints" / "latest.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="step_4.pt"):
        train(smoke_config(token_files, run, "schedule.max_steps=6"), resume=True)


# ---------------------------------------------------------------- 2. a full disk
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(token_files, tmp_path, capsys, monkeypatch):
    real, calls = torch.save, {"n": 0}

    def save(obj, f, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the checkpoint at step 10: a few bytes, then the disk is full
            f.write(b"PK\x03\x04") if hasattr(f, "write") else open(f, "wb").write(b"PK\x03\x04")
            raise no_space()
        return real(obj, f, *args, **kw)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    assert cli.main(cli_train(token_files, run, "schedule.max_steps=15", "run.checkpoint_every=5")) == 2
    err = one_line_error(capsys)
    assert "latest.pt" in err and "the disk is full" in err
    assert read_checkpoint(run / "checkpoints" / "latest.pt")["iteration"] == 5  # intact
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["latest.pt"]  # no temporary file


class _FullDiskFile:
    """An open metrics.jsonl whose writes fail as on a full disk."""

    def __init__(self, f):
        self._f = f

    def write(self, text):
        raise no_space()

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_a_full_disk_while_logging_metrics_is_one_line(token_files, tmp_path, capsys, monkeypatch):
    real = train_mod._metrics_writer
    monkeypatch.setattr(train_mod, "_metrics_writer", lambda *a: _FullDiskFile(real(*a)))
    assert cli.main(cli_train(token_files, tmp_path / "run", "schedule.max_steps=5")) == 2
    err = one_line_error(capsys)
    assert "metrics.jsonl" in err and "the disk is full" in err


def test_a_full_disk_while_writing_the_config_is_one_line(token_files, tmp_path, capsys, monkeypatch):
    real_open = builtins.open

    def full_open(file, mode="r", *args, **kw):
        if "config.toml" in str(file) and any(c in mode for c in "wxa"):
            raise no_space()
        return real_open(file, mode, *args, **kw)

    monkeypatch.setattr(builtins, "open", full_open)
    run = tmp_path / "run"
    assert cli.main(cli_train(token_files, run, "schedule.max_steps=5")) == 2
    err = one_line_error(capsys)
    assert "config.toml" in err and "the disk is full" in err
    assert not [p for p in run.iterdir() if "config.toml" in p.name]  # no half-written or temporary file


@pytest.mark.parametrize("fault", ["too little room", "a file in the way"])
def test_no_room_or_no_folder_is_found_before_the_first_step(token_files, tmp_path, capsys, monkeypatch, fault):
    run = tmp_path / "run"
    if fault == "too little room":
        usage = namedtuple("usage", "total used free")
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 50_000, 50_000))
        expected = ("the disk is full", "MiB free", "two")
    else:
        (tmp_path / "afile").write_text("not a folder")
        run = tmp_path / "afile" / "run"
        expected = ("afile", "not a folder")
    steps = {"n": 0}
    real = train_mod.batch_at

    def counting(*args, **kw):
        steps["n"] += torch.is_grad_enabled()
        return real(*args, **kw)

    monkeypatch.setattr(train_mod, "batch_at", counting)
    assert cli.main(cli_train(token_files, run, "schedule.max_steps=5")) == 2
    err = one_line_error(capsys)
    assert all(e in err for e in expected), err
    assert steps["n"] == 0 and not (run / "checkpoints").exists()


# ---------------------------------------------------------------- 3. a torn metrics.jsonl
def test_resume_drops_a_torn_last_metrics_line(token_files, tmp_path):
    run = tmp_path / "run"
    train(smoke_config(token_files, run, "schedule.max_steps=6", "run.log_every=1", "run.checkpoint_every=3"))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "tokens": 89')  # the process died while writing this line
    train(smoke_config(token_files, run, "schedule.max_steps=8", "run.log_every=1"), resume=True)
    assert [r["step"] for r in read_metrics(run)] == list(range(9))


def test_a_corrupt_metrics_line_names_the_file_and_line(token_files, tmp_path, capsys):
    run = tmp_path / "run"
    train(smoke_config(token_files, run, "schedule.max_steps=6", "run.log_every=1"))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = "garbage"
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert cli.main(cli_train(token_files, run, "schedule.max_steps=8", "run.log_every=1", resume=True)) == 2
    err = one_line_error(capsys)
    assert "metrics.jsonl line 3" in err and "repair" in err


# ---------------------------------------------------------------- 4. SIGTERM
@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_finishes(token_files, tmp_path):
    run, steps = tmp_path / "run", 400
    common = (f"schedule.max_steps={steps}", "run.log_every=1", "run.checkpoint_every=1000", "run.eval_every=1000")
    cmd = [sys.executable, "-m", "cs336_basics.cli", *cli_train(token_files, run, *common)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # wait for steps inside the loop
        if metrics.exists() and metrics.read_text().count("train/loss") >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM" in err and "interrupted at step" in err
    saved = read_checkpoint(run / "checkpoints" / "latest.pt")["iteration"]
    assert 0 < saved < steps
    train(smoke_config(token_files, run, *common), resume=True)
    records = [r["step"] for r in read_metrics(run)]
    assert records == list(range(steps + 1))  # every step once, to the end


# ---------------------------------------------------------------- 5. an empty run.out_dir
@pytest.mark.parametrize("value", ["", " ", '""'])
def test_an_empty_out_dir_is_a_config_error(value):
    with pytest.raises(ConfigError, match="run.out_dir must name a folder"):
        load_config(SMOKE, [f"run.out_dir={value}"])


# ---------------------------------------------------------------- 6. the last good checkpoint
@pytest.mark.parametrize("blow_up_at, good", [(10, 5), (5, None)])
def test_weights_that_blow_up_at_a_checkpoint_are_not_saved(token_files, tmp_path, monkeypatch, blow_up_at, good):
    class BlowsUp(train_mod.AdamW):
        """AdamW whose update at step ``blow_up_at`` makes a weight infinite (the loss was still finite)."""
        steps = 0

        def step(self, closure=None):
            super().step(closure)
            BlowsUp.steps += 1
            if BlowsUp.steps == blow_up_at:
                with torch.no_grad():
                    self.param_groups[0]["params"][0].view(-1)[0] = float("inf")

    monkeypatch.setattr(train_mod, "AdamW", BlowsUp)
    run = tmp_path / "run"
    cfg = smoke_config(token_files, run, "schedule.max_steps=20", "run.log_every=5", "run.checkpoint_every=5",
                       "run.eval_every=100")
    with pytest.raises(TrainingDiverged, match=f"weights became NaN or infinite by step {blow_up_at}") as info:
        train(cfg)
    latest = run / "checkpoints" / "latest.pt"
    if good is None:
        assert "No good checkpoint" in str(info.value) and not latest.exists()
        return
    assert f"last good checkpoint is {latest} (step {good})" in str(info.value)
    ckpt = read_checkpoint(latest)
    assert ckpt["iteration"] == good and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert torch.isfinite(torch.tensor(ckpt["train_loss"]))  # each checkpoint records its window's loss
