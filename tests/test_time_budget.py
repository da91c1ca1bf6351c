"""schedule.max_seconds: the learning rate follows the clock, the run stops at the budget, resume keeps the clock.

The training loop's clock is ``time.perf_counter`` as seen from cs336_basics.train; the tests replace
it with a fake one that moves 0.25 s on every reading, so a run's timeline is the same on any machine.
"""

import dataclasses
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import cs336_basics.train as train_mod
from cs336_basics.config import ConfigError, load_config
from cs336_basics.serialization import read_checkpoint
from cs336_basics.train import scheduled_lr, train

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.toml"
BUDGET = 6.0


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fake_clock(monkeypatch):
    """Each reading of the loop's clock is 0.25 s after the previous one."""
    ticks = iter(range(10**9))
    monkeypatch.setattr(train_mod, "time", types.SimpleNamespace(perf_counter=lambda: 0.25 * next(ticks)))


@pytest.fixture(scope="module")
def token_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    for name, n in (("train", 5_000), ("valid", 1_000)):
        np.save(d / f"{name}.npy", rng.integers(0, 256, size=n, dtype=np.uint16))
    return d


def config(token_files, out_dir, *overrides):
    return load_config(SMOKE, [
        f"data.train_tokens={token_files / 'train.npy'}", f"data.valid_tokens={token_files / 'valid.npy'}",
        f"run.out_dir={out_dir}", "run.progress=false", "model.d_model=32", "model.num_layers=1", "model.d_ff=64",
        "model.num_heads=2", "model.context_length=16", "data.batch_size=4", "run.eval_batches=1",
        "schedule.max_steps=1000", f"schedule.max_seconds={BUDGET}", "run.log_every=5", "run.eval_every=1000",
        "run.checkpoint_every=1000", *overrides,
    ])


def records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_max_seconds_is_checked():
    with pytest.raises(ConfigError, match="schedule.max_seconds must be >= 0"):
        load_config(SMOKE, ["schedule.max_seconds=-1"])


def test_the_schedule_follows_the_clock_and_the_run_stops_at_the_budget(token_files, tmp_path, fake_clock):
    cfg = config(token_files, tmp_path / "run")
    train(cfg)
    logged = [r for r in records(tmp_path / "run") if "lr" in r]
    last = logged[-1]
    # stopped long before max_steps, at a log step, at the first one after the budget ran out
    assert last["step"] < 100 and last["step"] % 5 == 0
    assert last["wallclock_s"] >= BUDGET > logged[-3]["wallclock_s"]
    # ... with the end-of-run evaluation and checkpoint
    assert "val/loss" in last
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert ckpt["iteration"] == last["step"] and ckpt["wallclock_s"] >= BUDGET
    # the learning rate went down the cosine with the time: to min_lr at the budget, where the step
    # count alone would still be near the peak
    o, s = cfg.optim, cfg.schedule
    assert last["lr"] == pytest.approx(o.lr * s.min_lr_ratio)
    steps_only = dataclasses.replace(s, max_seconds=0.0)
    assert scheduled_lr(last["step"] - 1, 0.0, o, steps_only)[0] > 0.9 * o.lr
    for before, now in zip(logged, logged[1:]):  # each lr was set between the two log lines' clocks
        lo = scheduled_lr(0, now["wallclock_s"], o, s)[0]
        hi = scheduled_lr(0, before["wallclock_s"], o, s)[0]
        assert lo - 1e-12 <= now["lr"] <= hi + 1e-12


def test_resume_keeps_the_clock(token_files, tmp_path, fake_clock):
    whole = tmp_path / "whole"
    train(config(token_files, whole))
    stopped_at = records(whole)[-1]["step"]

    split = tmp_path / "split"
    train(config(token_files, split, "schedule.max_steps=10"))  # ends at step 10, before the budget
    first_part = read_checkpoint(split / "checkpoints" / "latest.pt")["wallclock_s"]
    assert 0 < first_part < BUDGET
    train(config(token_files, split), resume=True)
    resumed = [r for r in records(split) if r["step"] > 10]
    assert resumed[0]["wallclock_s"] > first_part  # the clock went on from the checkpoint's
    # it stops where the uninterrupted run stopped (give or take one log window), not a budget later
    assert abs(resumed[-1]["step"] - stopped_at) <= 5

