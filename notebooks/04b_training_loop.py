# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04b · The training loop
#
# Notebook 04 built the pieces: the loss, AdamW, the cosine schedule, gradient clipping and
# batches. Here we put them together:
#
# 1. **checkpoints**: a run's state on disk (`serialization.py`);
# 2. **a training loop in a few dozen lines**: batch → model → loss → backward → clip → AdamW step
#    at the cosine learning rate → log, and a checkpoint at the end; it trains a tiny model and its
#    loss falls;
# 3. **the training loop of `train.py`**: the same steps, and around them validation, metrics,
#    resume, Ctrl-C, bf16 and DDP. Its plumbing is hand-written beside it: the typed TOML config
#    (`config.py`), devices, processes and random state (`runtime.py`), and the run folder (`runs.py`);
# 4. **training live**: `train()` on the tiny model, its learning curves, resuming.
#
# A reader who stops after section 2 has a complete training loop; the rest is what a run that
# takes hours needs. Notebook 04c then makes the loop fast, and better.

# %%
import os
from pathlib import Path

SMOKE = os.environ.get("CS336_SMOKE") == "1"
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
FIGURES = ROOT / "figures"   # write figures here only when not SMOKE (use a temp dir in smoke mode)

import math
import tempfile
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

TMP = Path(tempfile.mkdtemp(prefix="nb04b-"))
FIG_DIR = TMP if SMOKE else FIGURES
FIG_DIR.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
if SMOKE:
    torch.set_num_threads(1)  # everything here is tiny; one thread avoids thrashing on a busy machine

# %% [markdown]
# ## 1 · Checkpoints
#
# A checkpoint is a dict: model `state_dict`, optimiser `state_dict` (AdamW's moments and step
# counts), the iteration, and anything else the caller adds (the training loop adds its config, RNG
# states and timings). A path is written under a temporary name in the same directory, then renamed
# with `os.replace`, which is atomic: a crash mid-write (or a full disk) leaves the previous
# checkpoint intact and no temporary file behind. `torch.save` gets an open file, not the path, so a
# full disk is Python's `OSError` (ENOSPC), not a C++ `RuntimeError`; a file object (a `BytesIO`)
# is written directly. A model wrapped by `torch.compile` or DDP is unwrapped first.

# %%
#| default_exp serialization

# %%
#| export
"""Save and load training checkpoints (model, optimizer, iteration, extras), atomically for paths.

    >>> import io; buffer = io.BytesIO()   # a path works too, e.g. "runs/x/checkpoints/latest.pt"
    >>> model = torch.nn.Linear(2, 2); optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> save_checkpoint(model, optimizer, 1000, buffer, config={"lr": 0.1})
    >>> _ = buffer.seek(0)
    >>> load_checkpoint(buffer, model, optimizer)
    1000
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import IO, Any, BinaryIO

import torch

from cs336_basics.files import atomic_path


# %%
#| export
class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: truncated (a crash or a full disk mid-copy) or not a checkpoint."""


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside torch.compile (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif type(model).__name__ == "DistributedDataParallel":
            model = model.module
        else:
            return model


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | BinaryIO | IO[bytes],
    **extra: Any,
) -> None:
    """Write {"model", "optimizer", "iteration", **extra} with torch.save to a path (atomically) or a file object."""
    obj = {
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": int(iteration),
        **extra,
    }
    if not isinstance(out, (str, os.PathLike)):
        torch.save(obj, out)
        return
    with atomic_path(out) as tmp, open(tmp, "xb") as f:  # a file object: a full disk is an OSError
        torch.save(obj, f)


def read_checkpoint(src: str | os.PathLike | BinaryIO | IO[bytes], map_location: Any = "cpu") -> dict:
    """The checkpoint dict, with tensors mapped to ``map_location``.

    A missing path is a FileNotFoundError; a file that is empty, truncated or not a checkpoint is a
    CheckpointError that names it and says what to do (torch's own message would suggest
    ``weights_only=False``, which is never the fix for a damaged file).
    """
    is_path = isinstance(src, (str, os.PathLike))
    if is_path and not Path(src).is_file():
        raise FileNotFoundError(f"checkpoint {str(src)!r} does not exist; check the path (or the run's checkpoints/ folder)")
    with warnings.catch_warnings(record=True) as caught:  # garbage can make torch warn, then fail
        try:
            ckpt = torch.load(src, map_location=map_location, weights_only=True)
        except OSError:
            raise  # the file could not be read (EIO, EACCES): not damage
        except Exception:  # damaged bytes make the unpickler raise almost anything
            ckpt = None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "iteration" not in ckpt:
        raise CheckpointError(_damaged(Path(src) if is_path else None))
    for w in caught:  # the file loaded: its warnings are worth seeing
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ckpt


def _damaged(path: Path | None) -> str:
    """What to say about an unreadable checkpoint, and which kept checkpoints could replace it."""
    if path is None:
        return "the checkpoint is truncated or corrupt (not a file written by save_checkpoint)"
    kept = sorted(path.parent.glob("step_*.pt"), key=lambda p: int(p.stem[5:]) if p.stem[5:].isdigit() else -1)
    fix = (f"copy the newest kept checkpoint ({kept[-1]}) over it and resume" if kept and kept[-1] != path
           else "delete it and start the run again (or resume from a kept checkpoints/step_N.pt copied over it)")
    return f"checkpoint {path} is truncated or corrupt (a crash or a full disk while it was written?); {fix}"


def load_checkpoint(
    src: str | os.PathLike | BinaryIO | IO[bytes],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: Any = "cpu",
) -> int:
    """Restore model (and optimizer, if given) state from ``src``; return the saved iteration."""
    ckpt = read_checkpoint(src, map_location)
    unwrap_model(model).load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["iteration"])


# %% [markdown]
# Round trip through a file path and through a `BytesIO`: weights, AdamW moments and the iteration
# come back exactly.

# %%
import io
from cs336_basics.optimizer import AdamW
from cs336_basics.serialization import load_checkpoint, save_checkpoint


def fit(steps):
    """A small regression model after ``steps`` AdamW steps."""
    torch.manual_seed(42)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    for _ in range(steps):
        opt.zero_grad(); ((model(x) - y) ** 2).mean().backward(); opt.step()
    return model, opt


model_a, opt_a = fit(steps=3)
model_b, opt_b = fit(steps=0)
for target in (TMP / "ckpt" / "latest.pt", io.BytesIO()):
    save_checkpoint(model_a, opt_a, 3, target)
    if isinstance(target, io.BytesIO):
        target.seek(0)
    assert load_checkpoint(target, model_b, opt_b) == 3
    assert all(torch.equal(p, q) for p, q in zip(model_a.parameters(), model_b.parameters()))
    assert all(torch.equal(opt_a.state[p]["exp_avg"], opt_b.state[q]["exp_avg"])
               for p, q in zip(model_a.parameters(), model_b.parameters()))
print(sorted(p.name for p in (TMP / "ckpt").iterdir()))   # no temporary file left behind

# %% [markdown]
# ## 2 · A training loop in a few dozen lines
#
# First, data. In smoke mode (tests) the corpus is a toy language we make here: 256 token ids,
# each followed by one of 3 fixed successors chosen at random, so the best possible loss is
# $\ln 3 \approx 1.10$ nats against $\ln 256 \approx 5.55$ for a uniform guess. Outside smoke mode
# we train the same small model on real English: the **bytes** of the stand-in corpus
# (`../shared/data/english`) — byte-level tokens need no tokenizer, and the loss in nats per byte
# converts straight to bits per byte.

# %%
DATA = ROOT.parent / "shared" / "data" / "english"
data_dir = TMP / "tokens"
data_dir.mkdir(exist_ok=True)
if SMOKE or not (DATA / "train.txt").exists():
    rng = np.random.default_rng(0)
    successors = rng.integers(0, 256, size=(256, 3))
    for name, n in (("train", 50_000), ("valid", 5_000)):
        ids = np.zeros(n, dtype=np.uint16)
        for i, c in enumerate(rng.integers(0, 3, size=n)[1:], start=1):
            ids[i] = successors[ids[i - 1], c]
        np.save(data_dir / f"{name}.npy", ids)
    corpus, overrides = "toy 3-successor language", ["schedule.max_steps=60", "run.eval_every=20"]
else:
    for name, size in (("train", 4_000_000), ("valid", 400_000)):
        raw = (DATA / f"{name}.txt").read_bytes()[:size]
        np.save(data_dir / f"{name}.npy", np.frombuffer(raw, dtype=np.uint8).astype(np.uint16))
    corpus = "bytes of ../shared/data/english"
    overrides = ["schedule.max_steps=600", "schedule.warmup_steps=30", "model.context_length=128",
                 "model.d_model=128", "model.num_layers=3", "model.d_ff=384", "data.batch_size=32",
                 "run.eval_every=100", "run.eval_batches=8", "run.log_every=10", "run.peak_flops=0"]
print(corpus, {p.name: len(np.load(p, mmap_mode="r")) for p in sorted(data_dir.iterdir())})

# %% [markdown]
# The model and its hyperparameters are the `smoke` preset's (`configs/smoke.toml`, read with
# `load_config`; §3 says more about the config), with our data paths and the changes above.

# %%
from cs336_basics.config import load_config

run_cfg = load_config(ROOT / "configs" / "smoke.toml", [
    f"data.train_tokens={data_dir / 'train.npy'}", f"data.valid_tokens={data_dir / 'valid.npy'}",
    f"run.out_dir={TMP / 'run'}", "run.progress=false", *overrides,
])
print(run_cfg.model, run_cfg.optim, run_cfg.schedule, f"batch_size={run_cfg.data.batch_size}", sep="\n")

# %% [markdown]
# The loop is the handout's: at each step set the learning rate from the cosine schedule, sample
# a batch, run the model, take the cross-entropy against the next tokens, backpropagate, clip the
# gradients' global norm, and let AdamW move the weights. Before and after, the mean loss on a few
# fixed validation batches says whether it learnt; at the end a checkpoint holds the result.
# (The package's `cross_entropy` and `AdamW` compute what notebook 04's plain versions compute,
# faster: notebook 04c shows how.)

# %%
from cs336_basics.data import get_batch
from cs336_basics.model import TransformerLM
from cs336_basics.nn_utils import clip_gradients, cross_entropy
from cs336_basics.optimizer import cosine_lr


def train_plain(cfg, train_tokens, valid_tokens, checkpoint_path, log_every=10):
    """Train cfg's model; return it with its validation loss before and after."""
    m, o, s = cfg.model, cfg.optim, cfg.schedule
    torch.manual_seed(cfg.run.seed)
    rng = np.random.default_rng(cfg.run.seed)
    model = TransformerLM.from_config(m)
    optimizer = AdamW(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay)
    val_rng = np.random.default_rng([cfg.run.seed, 1])
    val_batches = [get_batch(valid_tokens, cfg.data.batch_size, m.context_length, rng=val_rng)
                   for _ in range(cfg.run.eval_batches)]

    @torch.no_grad()
    def val_loss():
        return sum(cross_entropy(model(x), y).item() for x, y in val_batches) / len(val_batches)

    before = val_loss()
    for step in range(s.max_steps):
        lr = cosine_lr(step, o.lr, o.lr * s.min_lr_ratio, s.warmup_steps, s.cosine_steps or s.max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_batch(train_tokens, cfg.data.batch_size, m.context_length, rng=rng)
        loss = cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        clip_gradients(model.parameters(), o.grad_clip)
        optimizer.step()
        if (step + 1) % log_every == 0:
            print(f"step {step + 1:4d}  lr {lr:.2e}  train loss {loss.item():.3f}")
    save_checkpoint(model, optimizer, s.max_steps, checkpoint_path)
    return model, before, val_loss()


# %%
train_tokens, valid_tokens = (np.load(data_dir / f"{name}.npy", mmap_mode="r") for name in ("train", "valid"))
t0 = time.perf_counter()
plain_model, plain_before, plain_after = train_plain(run_cfg, train_tokens, valid_tokens, TMP / "plain" / "latest.pt",
                                                     log_every=max(run_cfg.schedule.max_steps // 6, 1))
print(f"{run_cfg.schedule.max_steps} steps in {time.perf_counter() - t0:.1f} s; "
      f"validation loss {plain_before:.3f} -> {plain_after:.3f}")
assert plain_after < plain_before - 0.5

# %% [markdown]
# The checkpoint holds the trained model: a fresh one loaded from it predicts exactly the same.

# %%
restored = TransformerLM.from_config(run_cfg.model)
step = load_checkpoint(TMP / "plain" / "latest.pt", restored)
x, _ = get_batch(valid_tokens, 2, run_cfg.model.context_length, rng=np.random.default_rng(1))
with torch.no_grad():
    assert torch.equal(restored(x), plain_model(x))
print(f"restored the weights of step {step}")

# %% [markdown]
# ## 3 · The training loop of `train.py`
#
# The loop above is what every run does. A run that takes hours needs more around it: a config
# to describe it, a validation loss on the same tokens every time, metrics on disk, checkpoints
# that resume exactly, a clean stop on Ctrl-C, mixed precision and several GPUs. `train.py` adds
# those.
#
# ### The config
#
# A run is a **typed config** in five sections, `[model]`, `[optim]`, `[schedule]`, `[data]` and
# `[run]`: dataclasses whose defaults are the handout's TinyStories model. `[model]` *is* notebook
# 02's `ModelConfig` (so `TransformerLM.from_config` builds it); `d_ff = 0` means "the model's
# default". `data.batch_size` is the **global** batch: under DDP each of N ranks gets
# `batch_size / N` of it. Loading reads a TOML file, applies `section.key=value` overrides
# (`--set optim.lr=3e-3`; the value is parsed as TOML, so `3e-3` is a float and `true` a bool,
# anything else a string), coerces each value to its field's type and checks ranges and choices:
# an unknown key or a wrong type is an error that names it. That is plumbing that teaches nothing
# about training, so it lives in the hand-written `cs336_basics/config.py`. A quick look:

# %%
from cs336_basics.config import ConfigError, OptimConfig, config_from_dict, config_to_toml, load_config

cfg = config_from_dict({}, ["optim.lr=3e-3", "run.compile=true", "run.out_dir=runs/lr3e-3"])
print(cfg.model, cfg.optim.lr, cfg.run.compile, cfg.run.out_dir, sep="\n")
for bad in (["optim.learning_rate=1e-3"], ["model.d_model=big"], ["schedule.max_steps=-5"], ["run.precision=fp8"]):
    try:
        config_from_dict({}, bad)
    except ConfigError as err:
        print("ConfigError:", err)

# %% [markdown]
# ### Devices, precision, processes, random state
#
# `auto` picks CUDA, then Apple's MPS, then the CPU. On CUDA we allow TF32 matmuls and run the
# forward pass under bf16 autocast (weights, gradients and AdamW state stay float32; on a CPU see
# notebook 04c). Under `torchrun` the environment holds `RANK`, `WORLD_SIZE` and `LOCAL_RANK`; we
# start a process group (NCCL on GPUs, gloo on CPUs) and each rank takes GPU `LOCAL_RANK`. To
# resume *exactly*, a checkpoint holds every random state the loop uses (torch's, CUDA's, numpy's
# and Python's global generators, and the numpy `Generator` that draws batch starts) as plain
# lists and dicts, which `torch.load(weights_only=True)` can read. **MFU** divides the model FLOPs
# per second (about 6 per parameter and token, plus the attention scores: notebook 03's
# `accounting.training_flops_per_token`) by the peak of a large matmul *measured* in the training
# precision on this machine (`run.peak_flops` sets a datasheet number instead). All of this is
# plumbing, in the hand-written `cs336_basics/runtime.py` (`resolve_device`, `autocast_dtype`,
# `setup_distributed`, `all_reduce_mean`, `rng_state`, `measure_matmul_peak`, the thread count,
# the Ctrl-C flag); the loop below calls it by name.

# %% [markdown]
# ### The loop
#
# A few decisions worth spelling out:
#
# * **Validation** uses a fixed list of batch start positions drawn once from the seed, so every
#   evaluation (and every run with the same seed) measures the same tokens: curves are comparable.
# * **No per-step host sync.** Each step's loss stays on the device; every `log_every` steps the
#   window is copied once, checked for NaN/inf (naming the first bad step) and averaged.
# * **Ctrl-C**, or **SIGTERM** (what `kill`, a job scheduler or a shutting-down machine sends), sets
#   a flag; the step in progress finishes, a checkpoint is written and `TrainingInterrupted` is
#   raised (the CLI exits with 128 + the signal: 130, or 143). A second Ctrl-C aborts.
# * **A non-finite loss** raises `TrainingDiverged`; nothing is saved after the last good checkpoint.
#   "Good" is checked, not assumed: the update of a step whose loss was finite can still blow up
#   the weights, so a checkpoint is written only from finite weights, each records the training
#   loss of its last window, and the error names the newest checkpoint on disk that passes both.
# * **Resume** restores the model, AdamW, the step, the RNG states and the clock, and drops the
#   metrics lines logged after the checkpoint (and a last line cut short), so the curve continues.
# * **Before the first step** the run folder must be writable with room for two checkpoints (the
#   new one is written beside the old), so a full disk is found in a second, not after an hour.
# * **The weight average** (`optim.ema_halflife > 0`, notebook 04c): updated after every step,
#   validated as `val/ema_loss`, saved and resumed with the checkpoint, returned by `load_model_from_run`.
#
# Where each file of a run goes (`config.toml`, `metrics.jsonl`, `checkpoints/latest.pt`, ...) is
# written down once, in `runs.RunFolder`.

# %%
#| default_exp train

# %%
#| export
"""The training loop: batch -> forward -> loss -> backward -> clip -> AdamW step, and around it
validation, metrics, checkpoints, resume, Ctrl-C and DDP.

    $ cs336 train --config configs/cpu.toml --set optim.lr=3e-3 --set run.out_dir=runs/lr3e-3
    >>> cfg = load_config("configs/smoke.toml", ["schedule.max_steps=50"])  # doctest: +SKIP
    >>> run_dir = train(cfg)             # runs/.../{config.toml, metrics.jsonl, checkpoints/}  # doctest: +SKIP
    >>> model, cfg = runs.load_model_from_run(run_dir)   # latest checkpoint, eval mode  # doctest: +SKIP

One step: set the cosine learning rate -> sample a batch -> forward (bf16 autocast if enabled) ->
cross-entropy -> backward -> clip the global gradient norm -> AdamW step. Every ``log_every``
steps a line goes to metrics.jsonl; every ``eval_every`` steps the loss on a fixed set of
validation batches; every ``checkpoint_every`` steps and at the end a checkpoint that holds
everything needed to continue bit-for-bit (model, optimizer, step, config, RNG states).
Under torchrun, the same code runs DistributedDataParallel: every rank draws the same global
batch of start positions and reads its own slice, so N ranks see exactly the batch one process
would; DDP averages the gradients; rank 0 logs and saves.

The config is ``config.py``; devices, precision, DDP, RNG state and signals are ``runtime.py``;
the run folder's layout and loading a trained run are ``runs.py``.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import shutil
import signal
import sys
import time
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cs336_basics.accounting import training_flops_per_token
from cs336_basics.config import ConfigError, OptimConfig, ScheduleConfig, TrainConfig, config_to_toml, unrecorded_defaults_dropped
from cs336_basics.data import batch_at, epoch_batch_starts, load_tokens
from cs336_basics.files import atomic_write, attributed_to, check_writable
from cs336_basics.model import TransformerLM
from cs336_basics.nn_utils import clip_gradients, cross_entropy, linear_cross_entropy, perplexity
from cs336_basics.optimizer import AdamW, WeightAverage, cosine_lr
from cs336_basics.runs import RunFolder, run_lock
from cs336_basics.runtime import (
    Dist, StopFlag, all_reduce_mean, allow_tf32, any_rank, autocast_dtype, measure_matmul_peak, resolve_device,
    rng_state, seed_everything, set_rng_state, setup_distributed, teardown_distributed, torch_settings,
)
from cs336_basics.serialization import read_checkpoint, save_checkpoint


# %% [markdown]
# How a run ends when it does not reach `max_steps`: interrupted (a checkpoint was saved), or
# diverged. And `metrics.jsonl`, opened for appending: on resume it keeps only the lines up to the
# checkpoint's step, so the curve continues without a repeated step.

# %%
#| export
class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during training: a checkpoint at ``step`` was saved to ``checkpoint``.

    ``signum`` is the signal that asked to stop (SIGINT for Ctrl-C); the CLI exits with 128 + signum.
    """

    def __init__(self, step: int, checkpoint: Path | None, signum: int = signal.SIGINT):
        super().__init__(f"interrupted at step {step}; checkpoint saved to {checkpoint}; continue with --resume")
        self.step, self.checkpoint, self.signum = step, checkpoint, int(signum)


class TrainingDiverged(RuntimeError):
    """The training loss (or the weights) became NaN or infinite."""


def _metrics_writer(path: Path, keep_until_step: int | None):
    """Open metrics.jsonl for appending; on resume keep only lines up to the checkpoint's step.

    A last line that is not valid JSON is the one being written when the process died: it is
    dropped. A bad line anywhere else means the file was damaged or edited: a ValueError naming it.
    """
    if keep_until_step is None:
        path.unlink(missing_ok=True)
    elif path.exists():
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # torn by a crash mid-write
                    continue
                raise ValueError(f"{path} line {number} is not valid JSON; delete or repair that line (one JSON "
                                 "object per line), then resume again") from None
            if record.get("step", 0) <= keep_until_step:
                kept.append(line)
        with attributed_to(path):
            atomic_write(path, "".join(ln + "\n" for ln in kept))
    return path.open("a", encoding="utf-8")


# %% [markdown]
# Two questions a failing run must answer. Before it starts: is there room to save it? A
# checkpoint holds the weights and AdamW's two moments (and the weight average when it is on), 4
# bytes each, and saving needs room for the new file beside the old one. After a NaN: which
# checkpoint can I go back to? The newest one on disk whose recorded loss and whose weights are
# finite.

# %%
#| export
def checkpoint_bytes(n_params: int, weight_average: bool = False) -> int:
    """About how large a checkpoint is: weights + AdamW's two moments (+ the average), float32 each."""
    return 4 * n_params * (4 if weight_average else 3)


def _check_room(out_dir: Path, n_params: int, weight_average: bool) -> None:
    """Fail before the first step (OSError ENOSPC, or whatever check_writable meets) rather than at
    the first checkpoint: ``out_dir`` must be writable with room for two checkpoints."""
    check_writable(out_dir)
    need, free = 2 * checkpoint_bytes(n_params, weight_average), shutil.disk_usage(out_dir).free
    if free < need:
        raise OSError(errno.ENOSPC, f"{free / 2**20:,.1f} MiB free in {out_dir}; saving this model needs "
                      f"room for two {need / 2 / 2**20:,.1f} MiB checkpoints", str(out_dir))


def _all_finite(tensors) -> bool:
    """True when every tensor is free of NaN and inf (one host sync for all of them)."""
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _last_good_checkpoint(run: RunFolder) -> str:
    """A sentence naming the newest checkpoint on disk with a finite recorded loss and finite weights."""
    def step_of(p: Path) -> int:
        return int(p.stem[5:]) if p.stem[5:].isdigit() else -1
    best: tuple[int, Path] | None = None
    # latest.pt, then the kept step_N.pt newest first, reading only those that could be newer
    for path in [run.latest] + sorted(run.checkpoints.glob("step_*.pt"), key=step_of, reverse=True):
        if best is not None and path != run.latest and step_of(path) <= best[0]:
            break
        try:
            ckpt = read_checkpoint(path)
        except (FileNotFoundError, ValueError):  # absent, or damaged: not a checkpoint to go back to
            continue
        loss = ckpt.get("train_loss")  # None: not recorded (an interrupt before any step, an older loop)
        if (loss is None or math.isfinite(loss)) and _all_finite(ckpt["model"].values()):
            if best is None or ckpt["iteration"] > best[0]:
                best = (int(ckpt["iteration"]), path)
            if path != run.latest:
                break
    if best is None:
        return "No good checkpoint was written yet; lower optim.lr or use a smaller optim.grad_clip"
    step, path = best
    how = "resume from it" if path == run.latest else f"copy it over {run.latest.relative_to(run.path)} and resume"
    return (f"The last good checkpoint is {path} (step {step}); {how} with a lower optim.lr or a smaller "
            "optim.grad_clip")


# %% [markdown]
# The setup a run needs before its first step, as small named pieces: the run folder must fit the
# request (a new run in an empty one, a resume where a checkpoint is), the token files must be long
# enough, and a resumed run gets back its weights, AdamW's moments, the weight average, the random
# state and the clock. Then the model is wrapped for speed: DistributedDataParallel under torchrun,
# `torch.compile` when asked.

# %%
#| export
def _check_out_dir(run: RunFolder, resume: bool) -> None:
    """A new run must not overwrite a finished one; a resumed one needs its checkpoint."""
    if resume and not run.latest.is_file():
        raise FileNotFoundError(f"cannot resume: {run.latest} does not exist; start without --resume")
    if not resume and run.latest.is_file():
        raise FileExistsError(
            f"{run.path} already holds a run (checkpoints/latest.pt); pass --resume to continue it, "
            "or set run.out_dir to a new directory"
        )


def _token_files(config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The train and valid token files (memory-mapped), each checked to be long enough."""
    m, dc = config.model, config.data
    train_tokens = load_tokens(dc.train_tokens, m.vocab_size)
    valid_tokens = load_tokens(dc.valid_tokens, m.vocab_size)
    for name, toks in (("train", train_tokens), ("valid", valid_tokens)):
        if len(toks) <= m.context_length:
            raise ValueError(f"{name} token file holds {len(toks)} tokens, fewer than context_length + 1 = {m.context_length + 1}")
    if dc.sampler == "epoch":
        epoch_batch_starts(len(train_tokens), m.context_length, dc.batch_size, 0, config.run.seed)  # fails early if too short
    return train_tokens, valid_tokens


def _resume(run: RunFolder, config: TrainConfig, model, optimizer, averager, batch_rng, device) -> tuple[int, float, float | None]:
    """Load the latest checkpoint into the model, AdamW, the average and the RNGs; (step, clock, last loss)."""
    ckpt = read_checkpoint(run.latest, map_location=device)
    saved = ckpt.get("config", {}).get("model")  # a setting newer than the checkpoint counts as its default
    current, defaults = dataclasses.asdict(config.model), dataclasses.asdict(type(config.model)())
    if saved is not None and unrecorded_defaults_dropped(current, saved, defaults) != saved:
        raise ConfigError(f"[model] differs from the checkpoint's ({saved}); resume with the same model settings")
    model.load_state_dict(ckpt["model"])
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except ValueError as err:  # e.g. a checkpoint from before the optimizer had its current groups
        raise ConfigError(
            f"the checkpoint's optimizer state does not fit this optimizer ({err}); it was written by an "
            "older version of the training loop: start a new run (a new run.out_dir) instead of --resume"
        ) from err
    if averager is not None and "ema" in ckpt:  # (a run that turns the average on later starts it here)
        averager.load_state_dict(ckpt["ema"])
    set_rng_state(ckpt["rng"], batch_rng)
    return int(ckpt["iteration"]), float(ckpt.get("wallclock_s", 0.0)), ckpt.get("train_loss")


def _accelerate(model, optimizer, d: Dist, device: torch.device, use_compile: bool, two_shapes: bool = False):
    """(the model to call, the loss to call): DDP under torchrun, then torch.compile if asked.

    ``two_shapes`` (schedule.short_context_until): the batches change shape once, so the model is
    compiled for each shape as it comes (dynamic=False), rather than once more for any shape."""
    loss_fn = cross_entropy
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if use_compile:  # after DDP, so the compiler can split the graph at DDP's gradient buckets
        model = torch.compile(model, dynamic=False if two_shapes else None)
        loss_fn = torch.compile(cross_entropy)  # fused: one pass over the (batch, seq, vocab) logits
        optimizer.compile_update()  # one fused pass over each parameter's state per step
    return model, loss_fn


# %% [markdown]
# What the run writes as it goes: one JSON line per logged step (and the same record to Weights &
# Biases when `run.wandb` is on), from the main process only. Between two log lines the losses
# and gradient norms stay on the device, in a `_Window`, and are copied once when the window
# closes; that is also where a NaN is caught.

# %%
#| export
class _Log:
    """metrics.jsonl (+ wandb), written by the main process; a no-op on the other ranks."""

    def __init__(self, run: RunFolder, config: TrainConfig, keep_until_step: int | None, enabled: bool):
        self.metrics = self.wandb = None
        if not enabled:
            return
        self.metrics = _metrics_writer(run.metrics, keep_until_step)
        if config.run.wandb:
            import wandb  # optional dependency: pip install 'cs336-basics[wandb]'

            self.wandb = wandb.init(project=config.run.wandb_project, name=run.path.name, dir=str(run.path),
                                    config=dataclasses.asdict(config), mode=config.run.wandb_mode, resume="allow")

    def __call__(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            with attributed_to(self.metrics.name):  # a full disk names metrics.jsonl
                self.metrics.write(json.dumps(record) + "\n")
                self.metrics.flush()
        if self.wandb is not None:
            self.wandb.log(record, step=record["step"])

    def close(self) -> None:
        if self.metrics is not None:
            with suppress(OSError):  # every line was flushed; a failed one is already being raised
                self.metrics.close()
        if self.wandb is not None:
            self.wandb.finish()


class _Window:
    """The steps since the last log line: their losses and gradient norms, still on the device."""

    def __init__(self, start: int):
        self.start, self.t0 = start, time.perf_counter()
        self.losses: list[torch.Tensor] = []
        self.norms: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.losses.append(loss.detach())
        self.norms.append(grad_norm)

    def summarize(self, step: int, tokens_per_step: int, d: Dist, run: RunFolder) -> tuple[float, float, float]:
        """(mean loss, mean gradient norm, tokens/s) of the window, with one host sync.

        Averaged over ranks first, so a NaN on any rank stops every rank at the same step (TrainingDiverged).
        """
        losses = all_reduce_mean(torch.stack(self.losses).float(), d).cpu()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            first = self.start + int(bad[0]) + 1
            raise TrainingDiverged(f"loss became {losses[int(bad[0])].item()} at step {first}; stopping. "
                                   + _last_good_checkpoint(run))
        tok_s = (step - self.start) * tokens_per_step / max(time.perf_counter() - self.t0, 1e-9)
        return losses.mean().item(), torch.stack(self.norms).mean().item(), tok_s


# %% [markdown]
# A run can have a budget of wall-clock time instead of steps (`schedule.max_seconds > 0`; the
# handout compares batch sizes at equal time): the fraction of the budget spent then plays the part
# of step / max_steps, for the warm-up and the cosine alike, and the run stops at the first log step
# after the budget, with a last evaluation and checkpoint as at max_steps (still an upper bound).
# The same fraction can grow the context: with `schedule.short_context_until = f`, until the
# schedule is at f each batch's windows are cut in two, (2 x batch, context / 2). A step reads the
# same tokens but its attention spans half as far, so early steps, which learn mostly short-range
# statistics anyway, cost less (the leaderboard screens in notebook 06 measure whether it pays).

# %%
#| export
def scheduled_lr(step: int, elapsed: float, o: OptimConfig, s: ScheduleConfig) -> tuple[float, bool]:
    """(the learning rate of ``step``, whether the time budget is spent) after ``elapsed`` seconds.

    Without a budget the warm-up + cosine schedule follows the step; with one, the time: at half
    the budget the rate is where it would be at half of max_steps.

    >>> o, s = OptimConfig(lr=1.0), ScheduleConfig(max_steps=1000, warmup_steps=100, min_lr_ratio=0.1)
    >>> scheduled_lr(500, 0.0, o, s)           # by steps: half-way
    (0.6281416799501187, False)
    >>> s.max_seconds = 60.0
    >>> scheduled_lr(7, 30.0, o, s), scheduled_lr(9, 61.0, o, s)   # by time: half the budget, then over it
    ((0.6281416799501187, False), (0.1, True))
    """
    min_lr, cosine_steps = o.lr * s.min_lr_ratio, s.cosine_steps or s.max_steps
    at = schedule_progress(step, elapsed, s) * s.max_steps  # the time spent, in the schedule's steps
    return cosine_lr(at, o.lr, min_lr, s.warmup_steps, cosine_steps), 0 < s.max_seconds <= elapsed


def schedule_progress(step: int, elapsed: float, s: ScheduleConfig) -> float:
    """How far the schedule is: step / max_steps, or with a time budget elapsed / max_seconds (at most 1).

    >>> schedule_progress(250, 0.0, ScheduleConfig(max_steps=1000)), schedule_progress(9, 90.0, ScheduleConfig(max_seconds=60.0))
    (0.25, 1.0)
    """
    return step / s.max_steps if s.max_seconds <= 0 else min(elapsed / s.max_seconds, 1.0)


def halve_windows(tokens: torch.Tensor) -> torch.Tensor:
    """(batch, seq) -> (2 batch, seq / 2): each window cut into its two halves, in order (the
    schedule.short_context_until switch: the same tokens a step, with half the attention span).

    >>> halve_windows(torch.arange(8).view(2, 4))
    tensor([[0, 1],
            [2, 3],
            [4, 5],
            [6, 7]])
    """
    return tokens.reshape(-1, tokens.shape[1] // 2)


# %% [markdown]
# `train` sets up the process (torchrun's group, the device, the thread count, the run folder's
# lock) and hands over to `_train`, which builds everything from the seed and runs the loop. The
# loop itself is the first block inside `for step in ...`: learning rate, batch, forward, loss,
# backward, clip, step. The second block runs only at a boundary (a log, evaluation or checkpoint
# step, the last step, or a stop request).

# %%
#| export
def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train a TransformerLM as ``config`` says; return the run directory.

    Writes run.out_dir/config.toml, metrics.jsonl and checkpoints/latest.pt (+ step_N.pt when
    run.keep_checkpoints). ``resume=True`` continues from checkpoints/latest.pt exactly.
    Raises TrainingInterrupted after saving on Ctrl-C or SIGTERM, TrainingDiverged on a NaN/inf loss
    or weights, ConfigError / FileNotFoundError / ValueError (CheckpointError) for bad settings, data
    or a damaged checkpoint, OSError (with the file named) when the disk is full or read-only, and
    runs.RunInUse when another process is writing run.out_dir.
    """
    r = config.run
    d = setup_distributed(r.device)
    device = resolve_device(r.device, d.local_rank)
    # process-wide torch settings are restored afterwards (a notebook kernel keeps running); one writer
    # per run folder: a second run into it (another process) stops here, at once (RunInUse)
    lock = run_lock(r.out_dir) if d.is_main else nullcontext()
    try:
        with torch_settings(r.num_threads, r.deterministic), lock:
            return _train(config, resume, d, device)
    finally:
        teardown_distributed(d)


def _train(config: TrainConfig, resume: bool, d: Dist, device: torch.device) -> Path:
    from tqdm import tqdm

    m, o, s, dc, r = config.model, config.optim, config.schedule, config.data, config.run
    run = RunFolder(r.out_dir)
    allow_tf32(device, r.tf32)
    amp_dtype = autocast_dtype(r.precision, device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
    if dc.batch_size % d.world_size:
        raise ConfigError(f"data.batch_size = {dc.batch_size} must be divisible by the number of processes ({d.world_size})")
    if s.short_context_until and m.context_length % 2:
        raise ConfigError(f"schedule.short_context_until cuts each window in two, so model.context_length must be even, "
                          f"got {m.context_length}")
    local_batch = dc.batch_size // d.world_size
    rows = slice(d.rank * local_batch, (d.rank + 1) * local_batch)  # this rank's rows of each global batch
    _check_out_dir(run, resume)
    train_tokens, valid_tokens = _token_files(config)

    # ---- everything random comes from the seed: the weights, then the batches
    seed_everything(r.seed)
    model = TransformerLM.from_config(m, device=device)
    n_params = sum(p.numel() for p in model.parameters())
    _check_room(run.path, n_params, o.ema_halflife > 0)
    optimizer = AdamW(optimizer_groups(model, o), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    averager = WeightAverage(model, o.ema_halflife) if o.ema_halflife > 0 else None
    batch_rng = np.random.default_rng(r.seed)  # every rank draws the same global batch, reads its rows
    val_rng = np.random.default_rng([r.seed, 1])
    val_starts = [val_rng.integers(0, len(valid_tokens) - m.context_length, size=dc.batch_size)
                  for _ in range(r.eval_batches)]
    start_step, wall_offset, train_loss = 0, 0.0, None  # train_loss: the last window's mean (None: unknown)
    if resume:
        start_step, wall_offset, train_loss = _resume(run, config, model, optimizer, averager, batch_rng, device)
    raw_model = model
    model, loss_fn = _accelerate(model, optimizer, d, device, r.compile, s.short_context_until > 0)
    chunked_loss = r.loss_chunk_rows > 0  # the model stops at its hidden states; the loss applies lm_head

    max_norm = o.grad_clip if o.grad_clip > 0 else math.inf
    fpt = training_flops_per_token(m)
    peak = r.peak_flops or measure_matmul_peak(device, amp_dtype or torch.float32)
    tokens_per_step = dc.batch_size * m.context_length
    if d.is_main:
        with attributed_to(run.config):
            atomic_write(run.config, config_to_toml(config))
    log = _Log(run, config, start_step if resume else None, d.is_main)

    def next_starts(step: int) -> np.ndarray:
        """The global batch's start positions (the same on every rank)."""
        if dc.sampler == "epoch":
            return epoch_batch_starts(len(train_tokens), m.context_length, dc.batch_size, step, r.seed)
        return batch_rng.integers(0, len(train_tokens) - m.context_length, size=dc.batch_size)

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        """val/loss and val/ppl on the fixed validation batches (and val/ema_loss for the average)."""
        def mean_loss() -> float:
            raw_model.eval()
            total = torch.zeros((), device=device)
            for starts in val_starts:
                x, y = batch_at(valid_tokens, starts[rows], m.context_length, device)
                with autocast():
                    logits = raw_model(x)
                total += cross_entropy(logits, y)
            raw_model.train()
            return all_reduce_mean(total / len(val_starts), d).item()
        val = mean_loss()
        record = {"val/loss": val, "val/ppl": perplexity(val)}
        if averager is not None:
            with averager.applied():
                record["val/ema_loss"] = mean_loss()
        return record

    def checkpoint(step: int, batch_state: dict[str, Any], wall: float, train_loss: float | None) -> Path | None:
        """Save latest.pt (+ step_N.pt) from rank 0; never from NaN or infinite weights."""
        # the update of a step whose loss was finite can still make the weights NaN or inf: never
        # overwrite a good latest.pt with those. Every rank checks (DDP keeps the weights equal), so
        # every rank stops alike.
        if not _all_finite(raw_model.parameters()):
            raise TrainingDiverged(f"the weights became NaN or infinite by step {step}; stopping without saving "
                                   "them. " + _last_good_checkpoint(run))
        if not d.is_main:
            return None
        extra = dict(config=dataclasses.asdict(config), rng=rng_state(batch_rng) | {"batches": batch_state},
                     wallclock_s=wall, tokens=step * tokens_per_step, n_params=n_params, train_loss=train_loss)
        if averager is not None:
            extra["ema"] = averager.state_dict()
        for path in [run.latest] + ([run.step_checkpoint(step)] if r.keep_checkpoints else []):
            with attributed_to(path):  # a full disk names the checkpoint (and atomic_path keeps the old one)
                save_checkpoint(raw_model, optimizer, step, path, **extra)
        return run.latest

    t_start = time.perf_counter()
    clock = lambda: wall_offset + time.perf_counter() - t_start  # noqa: E731  (wallclock_s, across resumes)
    if start_step == 0:
        log({"step": 0, "tokens": 0, **evaluate(), "wallclock_s": clock()})
    bar = tqdm(total=s.max_steps, initial=start_step, disable=not (d.is_main and r.progress),
               file=sys.stderr, dynamic_ncols=True, unit="step")
    window = _Window(start_step)
    completed, batch_state = start_step, batch_rng.bit_generator.state  # batch_state: after `completed` steps
    elapsed = clock()  # the schedule's clock (schedule.max_seconds)
    model.train()
    stop = StopFlag()
    try:
        with stop:
            for step in range(start_step, s.max_steps):
                # ---- one step: learning rate, batch, forward, loss, backward, clip, AdamW
                if not d.enabled:  # (under DDP the ranks agree on the clock at each boundary, below)
                    elapsed = clock()
                lr, out_of_time = scheduled_lr(step, elapsed, o, s)  # by step, or by time (schedule.max_seconds)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_scale"]  # every group comes from optimizer_groups
                x, y = batch_at(train_tokens, next_starts(step)[rows], m.context_length, device)
                if schedule_progress(step, elapsed, s) < s.short_context_until:  # early on: short windows
                    x, y = halve_windows(x), halve_windows(y)
                with autocast():
                    out = model(x, return_hidden=chunked_loss)  # hidden states or logits
                if chunked_loss:
                    loss = linear_cross_entropy(out, raw_model.lm_head.weight, y, r.loss_chunk_rows, m.logit_softcap,
                                                amp_dtype)  # its matmuls in bf16 too, under bf16
                else:
                    loss = loss_fn(out, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = clip_gradients(raw_model.parameters(), max_norm)
                optimizer.step()
                if averager is not None:
                    averager.update()
                window.add(loss, grad_norm)
                completed = it = step + 1
                batch_state = batch_rng.bit_generator.state
                bar.update(1)

                # ---- at a boundary: log, evaluate, checkpoint; under DDP every rank stops at the same
                # step, so the ranks agree on a stop request at boundaries only (no per-step sync)
                last = it == s.max_steps or (out_of_time and it % r.log_every == 0)
                boundary = last or it % r.log_every == 0 or it % r.eval_every == 0 or it % r.checkpoint_every == 0
                stop_now = any_rank(stop.requested, d) if (d.enabled and boundary) else (stop.requested and not d.enabled)
                if boundary or stop_now:
                    train_loss, mean_norm, tok_s = window.summarize(it, tokens_per_step, d, run)
                    record = {"step": it, "tokens": it * tokens_per_step, "train/loss": train_loss, "lr": lr,
                              "grad_norm": mean_norm, "tok_per_s": tok_s, "mfu": tok_s * fpt / peak,
                              "wallclock_s": clock()}
                    if last or it % r.eval_every == 0:
                        record |= evaluate()
                    log(record)
                    bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}", refresh=False)
                    if last or it % r.checkpoint_every == 0 or stop_now:
                        checkpoint(it, batch_state, clock(), train_loss)
                    window = _Window(it)
                    if d.enabled and s.max_seconds > 0:  # one clock for all ranks: the same lr, the same stop
                        elapsed = all_reduce_mean(torch.tensor(clock(), device=device), d).item()
                if stop_now:
                    raise TrainingInterrupted(it, run.latest if d.is_main else None, stop.signum)
                if last:  # max_steps, or the time budget spent
                    break
    except KeyboardInterrupt as err:
        if isinstance(err, TrainingInterrupted):
            raise
        # interrupted inside a step (a second Ctrl-C, or a KeyboardInterrupt raised from elsewhere):
        # save the state after the last finished step, with the batch generator as it was then
        if window.losses:
            train_loss = torch.stack(window.losses).float().mean().item()
        path = checkpoint(completed, batch_state, clock(), train_loss)
        raise TrainingInterrupted(completed, path, stop.signum) from None
    finally:
        bar.close()
        log.close()
    return run.path


# %% [markdown]
# ## 4 · Training live
#
# Now `train()` on the same data, model and settings as the plain loop; it returns the run
# directory. (For the English run `run.peak_flops=0` makes the loop measure this CPU's matmul peak,
# so the logged MFU is against it.)

# %%
from cs336_basics.runs import RunFolder, load_model_from_run
from cs336_basics.train import train

t0 = time.perf_counter()
run_dir = train(run_cfg)
print(f"{run_cfg.schedule.max_steps} steps in {time.perf_counter() - t0:.1f} s -> {run_dir}")
run = RunFolder(run_dir)   # where each file of the run is
print(sorted(p.name for p in run.path.iterdir()), sorted(p.name for p in run.checkpoints.iterdir()))

# %% [markdown]
# Every line of `metrics.jsonl` is one JSON record; the last one:

# %%
import json

records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
last = records[-1]
print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in last.items()}, indent=1))
assert last["val/loss"] < records[0]["val/loss"] - 0.5
if corpus.startswith("bytes"):
    print(f"validation: {last['val/loss']:.3f} nats/byte = {last['val/loss'] / math.log(2):.3f} bits per byte")

# %% [markdown]
# The plain loop of §2 started from the same weights (both seed torch with `run.seed` before
# building the model) and read the same batches (both draw start positions from
# `np.random.default_rng(run.seed)`); `train()` differs in not decaying the RMSNorm gains (its
# parameter groups, notebook 04c). So the two end close together:

# %%
print(f"validation loss after {run_cfg.schedule.max_steps} steps: train() {last['val/loss']:.4f}, "
      f"the plain loop {plain_after:.4f}")
assert abs(last["val/loss"] - plain_after) < 0.05

# %% [markdown]
# Learning curves, against steps and against wall-clock time:

# %%
def curves(records, ax_step, ax_time, label=""):
    tr = [r for r in records if "train/loss" in r]
    va = [r for r in records if "val/loss" in r]
    for ax, x in ((ax_step, "step"), (ax_time, "wallclock_s")):
        ax.plot([r[x] for r in tr], [r["train/loss"] for r in tr], lw=1, label=f"{label}train")
        ax.plot([r[x] for r in va], [r["val/loss"] for r in va], "o-", label=f"{label}valid")
        ax.set(xlabel=x, ylabel="loss (nats/token)")
    ax_step.legend()


fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3))
curves(records, a1, a2)
fig.suptitle(f"smoke model on the {corpus}")
fig.tight_layout(); fig.savefig(FIG_DIR / "training_smoke_curves.png", dpi=120)

# %% [markdown]
# ### Resuming, and using the trained model
#
# A run continues from its latest checkpoint with `resume=True` (`cs336 train ... --resume`),
# here for 20 more steps — the schedule simply extends. `load_model_from_run` gives the model back
# in eval mode for decoding (notebook 05).

# %%
more = load_config(run.config, [f"schedule.max_steps={run_cfg.schedule.max_steps + 20}"])
train(more, resume=True)
records = [json.loads(line) for line in run.metrics.read_text().splitlines()]
print("steps logged:", [r["step"] for r in records][-4:])
model, cfg = load_model_from_run(run_dir)
x = torch.from_numpy(np.load(data_dir / "valid.npy")[:cfg.model.context_length + 1].astype(np.int64))[None]
with torch.no_grad():
    print(f"{type(model).__name__} ({sum(p.numel() for p in model.parameters()):,} parameters), "
          f"loss on the first validation window: {cross_entropy(model(x[:, :-1]), x[:, 1:]).item():.3f}")

# %% [markdown]
# ### From the command line
#
# The same loop is `cs336 train --config configs/NAME.toml [--set section.key=value] [--resume]`;
# with several GPUs, `torchrun --nproc_per_node=N -m cs336_basics.cli train ...` (DDP;
# `data.batch_size` stays the global batch). Notebook 04c launches the GPU presets.

# %% [markdown]
# ## What the next notebooks need
#
# Notebook **04c** makes this loop fast, and better: how the package's `cross_entropy` and `AdamW`,
# which the loops above call, compute the plain versions' numbers faster; the loss in chunks; the
# loop's switches (`run.compile`, `run.loss_chunk_rows`, `run.precision`, `data.sampler`,
# `optim.ema_halflife`, a learning rate per parameter group); and the GPU-scale runs. A first
# reading may skip it.
#
# Notebook 05 samples text from a trained run (temperature, top-p, the KV cache). It needs the
# model back: `runs.load_model_from_run(run_dir)` builds it from the run's `config.toml` and loads
# the weights (or their average) from `checkpoints/latest.pt`, in eval mode; the run's tokenizer
# comes from `runs.load_run_tokenizer`. Reading a run folder is not about training, so both live
# in the hand-written `runs.py`, next to the folder's layout (`RunFolder`).
