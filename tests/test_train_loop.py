"""The training loop: configs, metrics, overfitting, exact resume, Ctrl-C, divergence, DDP, the CLI."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cs336_basics.train as train_mod
from cs336_basics import cli
from cs336_basics.data import epoch_batch_starts
from cs336_basics.model import TransformerLM
from cs336_basics.nn_utils import cross_entropy
from cs336_basics.optimizer import AdamW
from cs336_basics.serialization import read_checkpoint
from cs336_basics.config import ConfigError, TrainConfig, config_to_toml, load_config
from cs336_basics.runs import load_model_from_run
from cs336_basics.train import TrainingDiverged, TrainingInterrupted, optimizer_groups, train

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.toml"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and two threads on a busy 2-core machine thrash)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def token_files(tmp_path_factory):
    """A toy corpus with structure: each token is followed by one of 3 successors (vocab 256)."""
    d = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    successors = rng.integers(0, 256, size=(256, 3))
    for name, n in (("train", 30_000), ("valid", 3_000)):
        ids = np.empty(n, dtype=np.uint16)
        ids[0] = 0
        choice = rng.integers(0, 3, size=n)
        for i in range(1, n):
            ids[i] = successors[ids[i - 1], choice[i]]
        np.save(d / f"{name}.npy", ids)
    return d


def smoke_config(token_files, out_dir, *overrides):
    return load_config(SMOKE, [
        f"data.train_tokens={token_files / 'train.npy'}", f"data.valid_tokens={token_files / 'valid.npy'}",
        f"run.out_dir={out_dir}", "run.progress=false", "model.d_model=32", "model.num_layers=1",
        "model.d_ff=64", "model.num_heads=2", "data.batch_size=8", "model.context_length=16",
        "run.eval_batches=2", *overrides,
    ])


def read_metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def train_losses(run_dir):
    return {r["step"]: r["train/loss"] for r in read_metrics(run_dir) if "train/loss" in r}


def _fixed_validation_loss(model, cfg, token_files):
    """The loss of ``model`` on the loop's fixed validation batches (drawn from [seed, 1])."""
    valid = np.load(token_files / "valid.npy")
    ctx, batch = cfg.model.context_length, cfg.data.batch_size
    starts = np.random.default_rng([cfg.run.seed, 1]).integers(0, len(valid) - ctx, size=(cfg.run.eval_batches, batch))
    with torch.no_grad():
        return np.mean([cross_entropy(model(x), y).item() for x, y in (train_mod.batch_at(valid, s, ctx) for s in starts)])


# ---------------------------------------------------------------- configs
def test_config_round_trips_through_toml(tmp_path):
    cfg = load_config(SMOKE, ["optim.lr=0.01", "run.compile=true", "run.out_dir=runs/2024", "model.d_ff=0"])
    assert cfg.optim.lr == 0.01 and cfg.run.compile is True and cfg.run.out_dir == "runs/2024"
    (tmp_path / "c.toml").write_text(config_to_toml(cfg))
    assert load_config(tmp_path / "c.toml") == cfg
    assert load_config(None) == TrainConfig()
    assert load_config(None, ["schedule.max_steps=1e3"]).schedule.max_steps == 1000  # integral float ok


@pytest.mark.parametrize("overrides, message", [
    (["optim.learning_rate=1"], "unknown config key optim.learning_rate"),
    (["optimizer.lr=1"], "unknown config section \\[optimizer\\]"),
    (["model.d_model=big"], "model.d_model must be an integer"),
    (["model.num_layers=2.5"], "model.num_layers must be an integer"),
    (["run.compile=yes"], "run.compile must be true or false"),
    (["schedule.max_steps=0"], "schedule.max_steps must be > 0"),
    (["optim.beta2=1.0"], "optim.beta2 must be in \\[0, 1\\)"),
    (["optim.ema_halflife=-5"], "optim.ema_halflife must be >= 0"),
    (["run.precision=fp8"], "run.precision = 'fp8' is not one of auto, bf16, fp32"),
    (["schedule.short_context_until=1.5"], "schedule.short_context_until is a fraction of the schedule"),
    (["lr=3"], "must look like section.key=value"),
    (["optim.lr"], "must look like section.key=value"),
])
def test_bad_overrides_name_the_problem(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SMOKE, overrides)


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[model\nvocab_size = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "typo.toml").write_text("[model]\nvocab_sise = 3\n")
    with pytest.raises(ConfigError, match="vocab_sise.*vocab_size"):
        load_config(tmp_path / "typo.toml")
    (tmp_path / "flat.toml").write_text("lr = 3\n")
    with pytest.raises(ConfigError, match="must be a \\[section\\] table"):
        load_config(tmp_path / "flat.toml")


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert cli.main(["train", "--config", str(SMOKE), "--set", "optim.lrr=1"]) == 2
    assert "unknown config key optim.lrr" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(SMOKE), "--set", f"data.train_tokens={tmp_path}/x.npy",
                     "--set", f"run.out_dir={tmp_path}/run"]) == 2
    err = capsys.readouterr().err
    assert "x.npy" in err and "does not exist" in err and "Traceback" not in err


def test_bad_paths_and_resume_errors(token_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(smoke_config(token_files, tmp_path / "r"), resume=True)
    cfg = smoke_config(token_files, tmp_path / "r", "data.valid_tokens=/nonexistent/valid.npy")
    with pytest.raises(FileNotFoundError, match="/nonexistent/valid.npy"):
        train(cfg)
    with pytest.raises(ValueError, match="outside \\[0, 100\\)"):
        train(smoke_config(token_files, tmp_path / "r", "model.vocab_size=100"))
    with pytest.raises(ConfigError, match="run.device"):
        train(smoke_config(token_files, tmp_path / "r", "run.device=cuda:7" if not torch.cuda.is_available() else "run.device=tpu"))


def test_resume_from_a_checkpoint_with_other_optimizer_groups_says_so(token_files, tmp_path):
    cfg = smoke_config(token_files, tmp_path / "old", "schedule.max_steps=2", "run.checkpoint_every=2")
    latest = train(cfg) / "checkpoints" / "latest.pt"
    ckpt = torch.load(latest, weights_only=False)
    groups = ckpt["optimizer"]["param_groups"]
    ckpt["optimizer"]["param_groups"] = [{**groups[0], "params": [i for g in groups for i in g["params"]]}]
    torch.save(ckpt, latest)  # as an older loop wrote it: one group for every parameter
    with pytest.raises(ConfigError, match="older version of the training loop"):
        train(cfg, resume=True)


# ---------------------------------------------------------------- the loop
@pytest.mark.parametrize("tie,value_embedding", [(False, False), (True, False), (False, True), (True, True)])
def test_optimizer_groups_cover_every_parameter_once_with_their_scales(tie, value_embedding):
    model = TransformerLM(vocab_size=64, context_length=8, d_model=16, num_layers=2, num_heads=2, d_ff=32,
                          tie_embeddings=tie, value_embedding=value_embedding)
    optim = load_config(SMOKE, ["optim.embedding_lr_scale=30", "optim.head_lr_scale=2", "optim.weight_decay=0.1"]).optim
    groups = optimizer_groups(model, optim)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each exactly once
    by_param = {id(p): g for g in groups for p in g["params"]}
    head = by_param[id(model.lm_head.weight)]
    assert head["lr_scale"] == 2 and head["weight_decay"] == 0.0  # scaled-up rate: no decay
    embedding = by_param[id(model.token_embeddings.weight)]
    assert embedding is head if tie else (embedding["lr_scale"] == 30 and embedding["weight_decay"] == 0.0)
    if value_embedding:  # a lookup table like the token embedding: its rate, no decay; its scales are gains
        table = by_param[id(model.value_embeddings.weight)]
        assert table["lr_scale"] == 30 and table["weight_decay"] == 0.0
        assert by_param[id(model.layers[1].attn.value_scale)]["weight_decay"] == 0.0
    gain = by_param[id(model.ln_final.weight)]
    assert gain["lr_scale"] == 1 and gain["weight_decay"] == 0.0
    hidden = by_param[id(model.layers[0].attn.q_proj.weight)]
    assert hidden["lr_scale"] == 1 and hidden["weight_decay"] == 0.1
    # with the default scales the handout's setup is unchanged: every matrix decays
    default = optimizer_groups(model, load_config(SMOKE, ["optim.weight_decay=0.1"]).optim)
    assert all(g["weight_decay"] == 0.1 for g in default for p in g["params"] if p.ndim == 2)


def test_overfitting_one_batch_drives_the_loss_near_zero():
    torch.manual_seed(0)
    model = TransformerLM(vocab_size=64, context_length=16, d_model=32, num_layers=1, num_heads=2, d_ff=64)
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    batch = torch.randint(0, 64, (4, 17))
    for _ in range(60):
        loss = cross_entropy(model(batch[:, :-1]), batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()


def test_train_writes_metrics_checkpoints_and_learns(token_files, tmp_path):
    cfg = smoke_config(token_files, tmp_path / "run", "schedule.max_steps=30", "run.log_every=10",
                       "run.eval_every=15", "run.checkpoint_every=15", "run.keep_checkpoints=true",
                       "optim.lr=1e-2")
    run_dir = train(cfg)
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [0, 10, 15, 20, 30]
    assert {"step", "tokens", "train/loss", "lr", "grad_norm", "tok_per_s", "mfu", "wallclock_s"} <= set(records[1])
    assert {"val/loss", "val/ppl"} <= set(records[2]) and "val/loss" in records[-1] and "val/loss" in records[0]
    assert records[-1]["tokens"] == 30 * 8 * 16
    assert records[0]["val/loss"] == pytest.approx(np.log(cfg.model.vocab_size), abs=0.3)  # untrained: ~uniform
    assert records[-1]["val/loss"] < records[0]["val/loss"] - 0.5              # and it learns
    assert records[-1]["val/ppl"] == pytest.approx(np.exp(records[-1]["val/loss"]))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest.pt", "step_15.pt", "step_30.pt"]
    ckpt = read_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert ckpt["iteration"] == 30 and ckpt["config"]["model"]["d_model"] == 32
    assert {"torch", "numpy", "python", "batches"} <= set(ckpt["rng"])
    assert load_config(run_dir / "config.toml") == cfg
    # the trained model comes back in eval mode and reproduces the final validation loss
    model, cfg2 = load_model_from_run(run_dir)
    assert not model.training and cfg2 == cfg
    assert _fixed_validation_loss(model, cfg, token_files) == pytest.approx(records[-1]["val/loss"], rel=1e-5)


def _interrupt_after(monkeypatch, n_calls, how):
    """Make the n-th training batch (eval batches excluded) raise Ctrl-C: via a real SIGINT or directly."""
    real, calls = train_mod.batch_at, {"n": 0}

    def batch_at(*args, **kw):
        if torch.is_grad_enabled():  # training batches; evaluation runs under no_grad
            calls["n"] += 1
            if calls["n"] == n_calls:
                if how == "signal":
                    os.kill(os.getpid(), signal.SIGINT)  # the handler lets this step finish
                else:
                    raise KeyboardInterrupt                # mid-step: this step is lost
        return real(*args, **kw)

    monkeypatch.setattr(train_mod, "batch_at", batch_at)


def _stopped_at_step_then_resumed(cfg, monkeypatch, step):
    """Train ``cfg``, press Ctrl-C during step ``step`` (the step finishes and is saved), resume to the end."""
    _interrupt_after(monkeypatch, step, "signal")
    with pytest.raises(TrainingInterrupted):
        train(cfg)
    monkeypatch.undo()
    return train(cfg, resume=True)


@pytest.mark.parametrize("how", ["signal", "exception"])
def test_interrupt_then_resume_is_exact(token_files, tmp_path, monkeypatch, how):
    common = ("schedule.max_steps=10", "schedule.warmup_steps=3", "run.log_every=1", "run.eval_every=5",
              "run.checkpoint_every=100", "run.deterministic=true")
    full = train(smoke_config(token_files, tmp_path / "full", *common))

    cfg = smoke_config(token_files, tmp_path / "split", *common)
    _interrupt_after(monkeypatch, 6, how)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg)
    stopped = 6 if how == "signal" else 5
    assert info.value.step == stopped and read_checkpoint(info.value.checkpoint)["iteration"] == stopped
    monkeypatch.undo()
    train(cfg, resume=True)

    a, b = train_losses(full), train_losses(tmp_path / "split")
    assert sorted(b) == list(range(1, 11))          # no step is logged twice after resuming
    assert a == b                                   # bit-for-bit the same losses
    va = [r["val/loss"] for r in read_metrics(full) if "val/loss" in r]
    vb = [r["val/loss"] for r in read_metrics(tmp_path / "split") if "val/loss" in r]
    assert va == vb


def test_epoch_sampler_feeds_the_loop_and_resumes_exactly(token_files, tmp_path, monkeypatch):
    common = ("schedule.max_steps=10", "run.log_every=1", "run.eval_every=5", "run.checkpoint_every=100",
              "run.deterministic=true", "data.sampler=epoch", "run.seed=5")
    real, seen = train_mod.batch_at, []

    def recording(tokens, starts, *args, **kw):
        if torch.is_grad_enabled():
            seen.append(np.array(starts))
        return real(tokens, starts, *args, **kw)

    monkeypatch.setattr(train_mod, "batch_at", recording)
    full = train(smoke_config(token_files, tmp_path / "full", *common))
    monkeypatch.undo()
    n = len(np.load(token_files / "train.npy"))
    assert len(seen) == 10
    for step, starts in enumerate(seen):
        np.testing.assert_array_equal(starts, epoch_batch_starts(n, 16, 8, step, seed=5))

    _stopped_at_step_then_resumed(smoke_config(token_files, tmp_path / "split", *common), monkeypatch, 4)
    assert train_losses(full) == train_losses(tmp_path / "split")


def test_weight_average_is_validated_saved_resumed_and_loaded(token_files, tmp_path, monkeypatch):
    common = ("schedule.max_steps=10", "run.log_every=1", "run.eval_every=5", "run.checkpoint_every=100",
              "run.deterministic=true", "optim.ema_halflife=3", "optim.lr=1e-2")
    full = train(smoke_config(token_files, tmp_path / "full", *common))
    records = read_metrics(full)
    vals = [r for r in records if "val/loss" in r]
    assert [r["step"] for r in vals] == [0, 5, 10] and all("val/ema_loss" in r for r in vals)
    assert vals[0]["val/ema_loss"] == vals[0]["val/loss"]       # before any step: the same weights
    assert vals[-1]["val/ema_loss"] != vals[-1]["val/loss"]
    ckpt = read_checkpoint(full / "checkpoints" / "latest.pt")
    assert ckpt["ema"]["updates"] == 10

    # the averaged weights are what load_model_from_run returns, and they score val/ema_loss
    averaged, cfg = load_model_from_run(full)
    trained, _ = load_model_from_run(full, average=False)
    assert all(torch.equal(trained.get_parameter(n), ckpt["model"][n]) for n, _ in trained.named_parameters())
    assert all(torch.equal(averaged.get_parameter(n), w) for n, w in ckpt["ema"]["average"].items())
    assert _fixed_validation_loss(averaged, cfg, token_files) == pytest.approx(vals[-1]["val/ema_loss"], rel=1e-5)

    # an interrupted run resumes its average exactly
    _stopped_at_step_then_resumed(smoke_config(token_files, tmp_path / "split", *common), monkeypatch, 4)
    split = read_metrics(tmp_path / "split")
    assert [r.get("val/ema_loss") for r in split if "val/loss" in r] == [r["val/ema_loss"] for r in vals]
    resumed = read_checkpoint(tmp_path / "split" / "checkpoints" / "latest.pt")["ema"]
    assert all(torch.equal(resumed["average"][n], w) for n, w in ckpt["ema"]["average"].items())


def test_without_the_weight_average_nothing_changes(token_files, tmp_path):
    run_dir = train(smoke_config(token_files, tmp_path / "r", "schedule.max_steps=3", "run.eval_every=3"))
    assert not any("val/ema_loss" in r for r in read_metrics(run_dir))
    assert "ema" not in read_checkpoint(run_dir / "checkpoints" / "latest.pt")


def test_short_context_until_cuts_the_first_batches_windows_in_two(token_files, tmp_path, monkeypatch):
    shapes, forward = [], TransformerLM.forward

    def recording(self, token_ids, *args, **kwargs):
        if torch.is_grad_enabled():  # training steps, not the evaluations
            shapes.append(tuple(token_ids.shape))
        return forward(self, token_ids, *args, **kwargs)

    monkeypatch.setattr(TransformerLM, "forward", recording)
    run_dir = train(smoke_config(token_files, tmp_path / "r", "schedule.max_steps=6", "run.eval_every=6",
                                 "schedule.short_context_until=0.5", "data.sampler=epoch"))
    assert shapes == [(16, 8)] * 3 + [(8, 16)] * 3  # steps 0-2 (progress < 0.5): the same tokens, halved
    assert all(math.isfinite(loss) for loss in train_losses(run_dir).values())
    with pytest.raises(ConfigError, match="context_length must be even"):
        train(smoke_config(token_files, tmp_path / "odd", "schedule.short_context_until=0.5", "model.context_length=15"))


def test_epoch_sampler_with_too_little_data_fails_before_training(token_files, tmp_path):
    cfg = smoke_config(token_files, tmp_path / "r", "data.sampler=epoch", "data.batch_size=4096")
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(cfg)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_cli_ctrl_c_exits_130(token_files, tmp_path, monkeypatch, capsys):
    _interrupt_after(monkeypatch, 3, "signal")
    argv = ["train", "--config", str(SMOKE), "--set", f"data.train_tokens={token_files / 'train.npy'}",
            "--set", f"data.valid_tokens={token_files / 'valid.npy'}", "--set", f"run.out_dir={tmp_path / 'r'}",
            "--set", "run.progress=false", "--set", "run.eval_batches=1"]
    assert cli.main(argv) == 130
    assert "interrupted at step 3" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "r" / "checkpoints" / "latest.pt")["iteration"] == 3


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(token_files, tmp_path, monkeypatch):
    real, calls = train_mod.cross_entropy, {"n": 0}

    def poisoned(logits, targets):
        loss = real(logits, targets)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] >= 7:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(train_mod, "cross_entropy", poisoned)
    cfg = smoke_config(token_files, tmp_path / "r", "schedule.max_steps=20", "run.log_every=4",
                       "run.checkpoint_every=5", "run.eval_every=100")
    with pytest.raises(TrainingDiverged, match="at step 7") as info:
        train(cfg)
    assert "step 5" in str(info.value)
    ckpt = read_checkpoint(tmp_path / "r" / "checkpoints" / "latest.pt")
    assert ckpt["iteration"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_chunked_loss_trains_like_the_whole_logits_loss(token_files, tmp_path):
    common = ("schedule.max_steps=6", "run.log_every=1", "run.eval_every=3", "run.deterministic=true")
    whole = train(smoke_config(token_files, tmp_path / "whole", *common))
    chunked = train(smoke_config(token_files, tmp_path / "chunked", *common, "run.loss_chunk_rows=40"))
    a, b = train_losses(whole), train_losses(chunked)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-5)
    va = [r["val/loss"] for r in read_metrics(whole) if "val/loss" in r]
    vb = [r["val/loss"] for r in read_metrics(chunked) if "val/loss" in r]
    np.testing.assert_allclose(vb, va, rtol=1e-5)


def test_bf16_autocast_on_cpu(token_files, tmp_path):
    run_dir = train(smoke_config(token_files, tmp_path / "bf16", "run.precision=bf16", "schedule.max_steps=5",
                                 "run.log_every=5", "run.eval_every=5"))
    last = read_metrics(run_dir)[-1]
    assert np.isfinite(last["train/loss"]) and np.isfinite(last["val/loss"])


# ---------------------------------------------------------------- DDP
@pytest.mark.slow
@pytest.mark.parametrize("loss_chunk_rows", [0, 40])
def test_ddp_two_processes_match_one_process(token_files, tmp_path, loss_chunk_rows):
    common = ["schedule.max_steps=4", "run.log_every=1", "run.eval_every=4", "run.num_threads=1",
              f"run.loss_chunk_rows={loss_chunk_rows}"]
    single = train(smoke_config(token_files, tmp_path / "single", *common))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "cs336_basics.cli", "train", "--config", str(SMOKE)]
    for item in [f"data.train_tokens={token_files / 'train.npy'}", f"data.valid_tokens={token_files / 'valid.npy'}",
                 f"run.out_dir={tmp_path / 'ddp'}", "run.progress=false", "model.d_model=32", "model.num_layers=1",
                 "model.d_ff=64", "model.num_heads=2", "data.batch_size=8", "model.context_length=16",
                 "run.eval_batches=2", *common]:
        cmd += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = train_losses(single), train_losses(tmp_path / "ddp")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-5)
    va = [r["val/loss"] for r in read_metrics(single) if "val/loss" in r]
    vb = [r["val/loss"] for r in read_metrics(tmp_path / "ddp") if "val/loss" in r]
    np.testing.assert_allclose(vb, va, rtol=1e-5)
