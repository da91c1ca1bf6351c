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
# # 04 · Training, the pieces: loss, SGD, AdamW, schedule, clipping, batches
#
# Notebook 02 built a model that maps token ids to logits. Here we build, one at a time and each
# checked against torch, the pieces that train it:
#
# 1. **cross-entropy** (and perplexity) — the number we minimise (`nn_utils.py`);
# 2. **SGD**, and what the learning rate does;
# 3. **AdamW** — how the parameters move (`optimizer.py`),
# 4. with a **cosine schedule** for the learning rate,
# 5. and **gradient clipping** against the occasional huge gradient (`nn_utils.py`);
# 6. **batches** sampled from a token file on disk (`data.py`).
#
# Each piece is written as a student writes it from the handout: together they are every piece
# of a correct, slower training run. Notebook 04c, **making training fast, and better**, later
# replaces the loss and AdamW by versions that compute the same numbers faster (a hand-written
# backward, the loss in chunks, a fused update), checked against the plain ones here, and adds
# switches that lower the loss (reading the data epoch by epoch, an average of the weights).
#
# Everything is from scratch: no `torch.nn.functional`, no `torch.optim` optimiser; torch's own
# versions only appear as oracles in the checks.

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

TMP = Path(tempfile.mkdtemp(prefix="nb04-"))
FIG_DIR = TMP if SMOKE else FIGURES
FIG_DIR.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
if SMOKE:
    torch.set_num_threads(1)  # everything here is tiny; one thread avoids thrashing on a busy machine

# %% [markdown]
# ## 1 · Cross-entropy
#
# For logits $o \in \mathbb{R}^V$ and target $x$, the loss is
# $\ell = -\log \mathrm{softmax}(o)_x = \log\sum_a e^{o_a} - o_x$.
# Computed naively, $e^{o_a}$ overflows for logits around 89 in float32. Subtracting the maximum
# first changes nothing mathematically ($\log\sum_a e^{o_a - m} + m - o_x$) but keeps every
# exponent $\le 0$; and we never form $\log(e^{\cdot})$ for the target term, we just read $o_x - m$.
#
# As a student writes it from that formula: a few tensor operations, and autograd works out the
# gradient.

# %%
def cross_entropy_plain(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over every leading position of log-sum-exp(logits) - logits[target]; logits (..., vocab)."""
    m = logits.amax(dim=-1, keepdim=True)
    log_sum_exp = (logits - m).exp().sum(dim=-1).log() + m.squeeze(-1)
    target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (log_sum_exp - target_logit).mean()


# %% [markdown]
# A check against `torch.nn.functional.cross_entropy` (oracle only), values and gradients, with
# extra leading dims and with logits of size 1e4 where a naive softmax overflows to `inf`:

# %%
import torch.nn.functional as F  # oracle only

logits = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True); targets = torch.randint(0, 7, (2, 3))
ours, ref = cross_entropy_plain(logits, targets), F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1))
grad_ours, grad_ref = (torch.autograd.grad(loss, logits)[0] for loss in (ours, ref))
assert torch.allclose(ours, ref) and torch.allclose(grad_ours, grad_ref)
huge = logits.detach() * 1e4
naive = -(huge.exp() / huge.exp().sum(-1, keepdim=True)).gather(-1, targets[..., None]).log().mean()
print(f"ours {ours.item():.6f}  torch {ref.item():.6f}  | huge logits: ours {cross_entropy_plain(huge, targets):.1f}  "
      f"torch {F.cross_entropy(huge.reshape(-1, 7), targets.reshape(-1)):.1f}  naive {naive}")
assert torch.allclose(cross_entropy_plain(huge, targets), F.cross_entropy(huge.reshape(-1, 7), targets.reshape(-1)))

# %% [markdown]
# **Perplexity** is `exp(loss)`: an untrained model over a vocabulary of 10,000 should start near
# `ln(10000) ≈ 9.21` nats, perplexity 10,000. It is the first function of `nn_utils.py`.

# %%
#| default_exp nn_utils

# %%
#| export
"""Loss and gradient utilities: cross-entropy (also fused with the output layer, in chunks),
perplexity, global-norm gradient clipping.

    >>> logits = torch.tensor([[2.0, 0.0, 0.0]]); targets = torch.tensor([0])
    >>> round(cross_entropy(logits, targets).item(), 4)   # -log(e^2 / (e^2 + 2))
    0.2395
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


# %%
#| export
def perplexity(loss: float | torch.Tensor) -> float:
    """exp(mean cross-entropy in nats): the size of a uniform choice that is as surprising.

    >>> round(perplexity(math.log(10000)), 6)   # a uniform guess over 10k tokens
    10000.0
    >>> perplexity(800.0)                       # a diverging run: infinite, not an OverflowError
    inf
    """
    loss = float(loss)
    return math.exp(loss) if loss < 709.0 else math.inf  # (exp overflows a float just above 709.78)


# %%
from cs336_basics.nn_utils import perplexity

print(perplexity(math.log(10_000)), perplexity(cross_entropy_plain(torch.zeros(4, 10_000), torch.zeros(4, dtype=torch.long))))

# %% [markdown]
# ## 2 · SGD, and what the learning rate does (`learning_rate_tuning`)
#
# The handout's toy: SGD with a learning rate that decays as $\alpha/\sqrt{t+1}$, minimising
# `mean(w**2)` for a random 10×10 matrix. The gradient is $2w/100$, so one step multiplies every
# weight by $1 - 0.02\,\alpha/\sqrt{t+1}$. This optimiser is only for the demonstration (AdamW is the
# one we export), so it lives in the notebook.

# %%
class SGD(torch.optim.Optimizer):
    """theta <- theta - lr / sqrt(t + 1) * grad   (the handout's decaying-lr SGD)."""

    def __init__(self, params, lr=1e-3):
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                t = self.state[p].get("t", 0)
                p -= group["lr"] / math.sqrt(t + 1) * p.grad
                self.state[p]["t"] = t + 1
        return loss


def sgd_toy(lr, steps=10, seed=0):
    torch.manual_seed(seed)
    weights = torch.nn.Parameter(5 * torch.randn((10, 10)))
    opt = SGD([weights], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (weights**2).mean()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    return losses


# %% [markdown]
# Ten iterations at each learning rate (1 is the handout's example; 1e1, 1e2, 1e3 are the problem's):

# %%
# NBVAL_CHECK_OUTPUT
toy = {lr: sgd_toy(lr) for lr in (1.0, 1e1, 1e2, 1e3)}
print("iter " + "".join(f"{f'lr={lr:g}':>12}" for lr in toy))
for i in range(10):
    print(f"{i:4d} " + "".join(f"{toy[lr][i]:12.4g}" for lr in toy))

# %% [markdown]
# With lr=1 the loss decays slowly (26.3 → 21.7). lr=10 decays faster (each step scales w by
# 1 − 0.2/√(t+1): 26.3 → 3.5). lr=100 is at the edge: the first step multiplies w by 1 − 2 = −1
# (the loss does not move), the next ones by −0.41 and −0.15, and the fourth by 1 − 2/√4 = 0, so
# the loss collapses to ~1e-16 and stays there. lr=1000 multiplies w by |1 − 20| = 19 at the first
# step and keeps growing: it **diverges** (loss ~2e18 after 10 iterations).

# %%
assert toy[1e1][-1] < toy[1.0][-1] < toy[1.0][0]
assert toy[1e2][-1] < 1e-10 * toy[1e2][0]
assert toy[1e3][-1] > 1e10 * toy[1e3][0]

# %% [markdown]
# ## 3 · AdamW
#
# AdamW keeps two running moments per parameter: $m$ (mean of gradients) and $v$ (mean of squared
# gradients), corrects their bias towards 0 from the zero start, and takes a step of size about
# `lr` in every coordinate, $\theta \leftarrow \theta - \alpha\,\hat m/(\sqrt{\hat v}+\epsilon)$.
# Weight decay is **decoupled**: the parameters shrink by $\alpha\lambda\theta$ directly instead of
# adding $\lambda\theta$ to the gradient (where Adam's normalisation would rescale it).
#
# We follow Loshchilov & Hutter's Algorithm 2 (which is what `torch.optim.AdamW` computes): the
# decay uses the parameter *before* this step's update, and $\epsilon$ is added to $\sqrt{\hat v}$.
# The handout's Algorithm 1 folds the bias corrections into $\alpha_t$ (so its $\epsilon$ is scaled
# by $\sqrt{1-\beta_2^t}$) and decays after the update; both differences are of order
# $\epsilon$ and $\alpha^2\lambda$, i.e. invisible.
#
#
# Written the plain way, one parameter tensor at a time, the algorithm is a dozen lines. The state
# names (`step`, `exp_avg` for $m$, `exp_avg_sq` for $v$) are torch's, so a state dict moves
# between this optimiser, the package's (notebook 04c) and torch's.

# %%
class PlainAdamW(torch.optim.Optimizer):
    """AdamW one parameter tensor at a time, as the formulas read (the package's AdamW, notebook 04c, is faster)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # the first step: both moments start at zero
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                t, g = state["step"], p.grad
                m = state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * g
                v = state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * g**2
                p -= lr * wd * p  # decoupled weight decay, from the weights before this step's update
                p -= lr / (1 - beta1**t) * m / (torch.sqrt(v / (1 - beta2**t)) + eps)
        return loss


# %% [markdown]
# Check: several steps of ours and of `torch.optim.AdamW` (oracle) on the same small regression
# problem, starting from the same weights, end at the same weights — and the optimiser state
# survives `state_dict()` → `load_state_dict()` into a fresh instance.

# %%
def fit(opt_cls, steps=20):
    torch.manual_seed(42)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))  # oracle model
    opt = opt_cls(model.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    for _ in range(steps):
        opt.zero_grad(); ((model(x) - y) ** 2).mean().backward(); opt.step()
    return model, opt


ours, opt = fit(PlainAdamW)
ref, _ = fit(torch.optim.AdamW)
diff = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), ref.parameters()))
print(f"max |ours - torch.optim.AdamW| after 20 steps: {diff:.2e}")
assert diff < 1e-6
fresh = PlainAdamW(ours.parameters()); fresh.load_state_dict(opt.state_dict())
assert all(torch.equal(fresh.state[p]["exp_avg_sq"], opt.state[p]["exp_avg_sq"]) for p in ours.parameters())

# %% [markdown]
# ## 4 · Cosine learning-rate schedule with warm-up
#
# Linear warm-up from 0 to $\alpha_{max}$ over $T_w$ steps, then half a cosine down to
# $\alpha_{min}$ at step $T_c$, then flat at $\alpha_{min}$ — exactly the handout's definition.

# %%
#| default_exp optimizer

# %%
#| export
"""AdamW (decoupled weight decay), the cosine learning-rate schedule with linear warm-up, and an
exponential moving average of the weights.

    >>> model = torch.nn.Linear(4, 4)
    >>> opt = AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    >>> step = 10
    >>> for group in opt.param_groups: group["lr"] = cosine_lr(step, 3e-4, 3e-5, 100, 5000)
    >>> round(opt.param_groups[0]["lr"], 8)   # warming up: 10/100 of the peak
    3e-05
    >>> avg = WeightAverage(model, halflife_steps=200); avg.update()   # after each opt.step()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch


# %%
#| export
def cosine_lr(it: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int) -> float:
    """Learning rate at iteration ``it`` (0-based) of warm-up + cosine annealing.

        it <  Tw:        it / Tw * max_lr
        Tw <= it <= Tc:  min_lr + (1 + cos(pi * (it - Tw) / (Tc - Tw))) / 2 * (max_lr - min_lr)
        it >  Tc:        min_lr

    >>> cosine_lr(0, 1.0, 0.1, 10, 110), cosine_lr(10, 1.0, 0.1, 10, 110), cosine_lr(500, 1.0, 0.1, 10, 110)
    (0.0, 1.0, 0.1)
    """
    if it < warmup_iters:
        return it / warmup_iters * max_lr
    if it > cosine_cycle_iters:
        return min_lr
    if cosine_cycle_iters == warmup_iters:  # no annealing phase: the single step Tw == Tc is the peak
        return max_lr
    progress = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


# %% [markdown]
# The handout's test values (max 1, min 0.1, $T_w$=7, $T_c$=21), and the picture:

# %%
# NBVAL_CHECK_OUTPUT
print([round(cosine_lr(it, 1.0, 0.1, 7, 21), 4) for it in range(25)])

# %%
its = np.arange(0, 1200)
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.plot(its, [cosine_lr(int(i), 1e-3, 1e-4, 100, 1000) for i in its])
ax.axvline(100, ls=":", c="gray"); ax.axvline(1000, ls=":", c="gray")
ax.set(xlabel="iteration", ylabel="learning rate", title="warm-up 100, cosine to step 1000, then min_lr")
fig.tight_layout(); fig.savefig(FIG_DIR / "cosine_schedule.png", dpi=120)

# %% [markdown]
# ## 5 · Gradient clipping
#
# One global L2 norm over *all* gradients $\|g\|_2$; if it exceeds $M$, every gradient is scaled by
# $M/(\|g\|_2+\epsilon)$ with $\epsilon = 10^{-6}$, so the direction is kept and the norm lands just
# under $M$. Parameters without a gradient (frozen, or unused this step) are skipped. We return the
# norm *before* clipping (worth logging: spikes announce trouble) as a tensor, so calling it costs no
# device→host synchronisation; multiplying by `min(1, M/(norm+eps))` instead of branching on the norm
# keeps it sync-free too.

# %%
#| default_exp nn_utils

# %%
#| export
def clip_gradients(parameters: Iterable[torch.nn.Parameter], max_l2_norm: float, eps: float = 1e-6) -> torch.Tensor:
    """Scale all gradients in place so that their global L2 norm is at most ``max_l2_norm``.

    Returns the global norm before clipping (0-dim float32 tensor; 0 when no parameter has a grad).
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch.stack([torch.linalg.vector_norm(g.detach(), dtype=torch.float32) for g in grads])
    total = torch.linalg.vector_norm(norms)
    scale = torch.clamp(max_l2_norm / (total + eps), max=1.0)
    for g in grads:
        g.detach().mul_(scale.to(g.dtype))
    return total


# %% [markdown]
# Against `torch.nn.utils.clip_grad_norm_` (oracle), with one parameter that has no gradient:

# %%
from cs336_basics.nn_utils import clip_gradients

a = [torch.nn.Parameter(torch.randn(3, 4)) for _ in range(3)]
b = [torch.nn.Parameter(p.detach().clone()) for p in a]
for params in (a, b):
    (params[0] ** 3).sum().backward(); (params[1] * 5).sum().backward()   # params[2] gets no grad
norm_ours = clip_gradients(a, 1.0)
norm_ref = torch.nn.utils.clip_grad_norm_(b, 1.0)
print(f"norm before: ours {norm_ours:.4f} torch {norm_ref:.4f};  after: "
      f"{torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in a[:2]])):.6f}")
assert torch.allclose(norm_ours, norm_ref) and all(torch.allclose(p.grad, q.grad) for p, q in zip(a[:2], b[:2]))

# %% [markdown]
# ## 6 · Batches from a token file
#
# A tokenised corpus is one long 1-D array of ids. A batch is `batch_size` windows of
# `context_length + 1` tokens at uniformly random starts in `[0, n - context_length)`: inputs are the
# first `context_length`, targets the same window shifted by one. We gather all windows with one
# fancy-indexing call, which on an `np.memmap` reads only those pages from disk. On CUDA the batch
# goes through pinned memory with a non-blocking copy, so the transfer overlaps with compute.

# %%
#| default_exp data

# %%
#| export
"""Token datasets on disk and random training batches (uniform starts, or epoch by epoch).

    >>> tokens = load_tokens("data/train.npy")              # doctest: +SKIP
    >>> tokens = np.arange(1000, dtype=np.uint16)            # (here: a stand-in for that np.memmap)
    >>> x, y = get_batch(tokens, batch_size=32, context_length=256, device="cpu")
    >>> tuple(x.shape), tuple(y.shape), bool((x[:, 1:] == y[:, :-1]).all())
    ((32, 256), (32, 256), True)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch


# %%
#| export
def check_device(device: str | torch.device) -> torch.device:
    """Parse a device string and make sure it exists here, with an error that says what to use instead."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise RuntimeError(f"unknown device {device!r} ({err}); use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r}: Torch not compiled with CUDA enabled or no GPU visible; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {device!r}: CUDA error: invalid device ordinal (this machine has "
                f"{torch.cuda.device_count()} GPU(s): cuda:0..cuda:{torch.cuda.device_count() - 1})"
            )
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise RuntimeError(f"device {device!r}: MPS is not available on this machine; use 'cpu'")
    return dev


def batch_at(
    tokens: npt.NDArray, starts: npt.NDArray, context_length: int, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows tokens[s : s + context_length + 1] for each start s, split into (inputs, targets).

    tokens: (n,) ints (array or memmap); starts: (batch,). Returns two (batch, context_length) int64
    tensors on ``device``, targets shifted one to the left of inputs.
    """
    dev = device if isinstance(device, torch.device) else check_device(device)
    windows = tokens[np.asarray(starts)[:, None] + np.arange(context_length + 1)]  # (batch, ctx + 1)
    batch = torch.from_numpy(windows.astype(np.int64, copy=False))
    if dev.type == "cuda":
        batch = batch.pin_memory().to(dev, non_blocking=True)
    elif dev.type != "cpu":
        batch = batch.to(dev)
    return batch[:, :-1], batch[:, 1:]


def get_batch(
    tokens: npt.NDArray,
    batch_size: int,
    context_length: int,
    device: str | torch.device = "cpu",
    rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``batch_size`` random windows: (inputs, targets), each (batch_size, context_length).

    Start positions are uniform over [0, len(tokens) - context_length), so every window fits and
    every token can be a target. ``rng`` (a numpy Generator) makes the draw reproducible; without
    it numpy's global generator is used. A device that does not exist here raises RuntimeError.
    """
    dev = check_device(device)
    n = len(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"get_batch: tokens must be a 1-D array of ids, got shape {tokens.shape}")
    if n <= context_length:
        raise ValueError(
            f"get_batch: {n} tokens cannot hold one window of context_length + 1 = {context_length + 1}; "
            "use more data or a shorter context_length"
        )
    high = n - context_length
    starts = rng.integers(0, high, size=batch_size) if rng is not None else np.random.randint(0, high, size=batch_size)
    return batch_at(tokens, starts, context_length, dev)


# %% [markdown]
# Token files are `.npy` arrays (what `tokenize_file` writes). We open them as memory maps and check
# what can go wrong early, with errors that say what to do: a missing file, a 2-D or float array, an
# id that is out of range for the model's vocabulary (checked in chunks, so a 10 GB file never has to
# fit in memory).

# %%
#| export
def load_tokens(path: str | os.PathLike, vocab_size: int | None = None, *, chunk: int = 1 << 24) -> np.memmap:
    """Open a .npy token file as a read-only memmap, after checking it is a 1-D integer array
    whose ids are all < vocab_size (when given)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"token file {str(path)!r} does not exist; create it with `cs336 tokenize` "
            "or point the config's [data] train_tokens/valid_tokens at an existing .npy file"
        )
    try:
        tokens = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise ValueError(f"token file {str(path)!r} is not a .npy array ({err}); write it with np.save") from None
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token file {str(path)!r} holds a {tokens.ndim}-D {tokens.dtype} array; expected 1-D integer ids")
    if vocab_size is not None:
        for i in range(0, len(tokens), chunk):
            part = tokens[i : i + chunk]
            lo, hi = int(part.min()), int(part.max())
            if lo < 0 or hi >= vocab_size:
                raise ValueError(
                    f"token file {str(path)!r} holds id {hi if hi >= vocab_size else lo} outside [0, {vocab_size}); "
                    "was it made with another tokenizer? set model.vocab_size to match the tokenizer"
                )
    return tokens


# %% [markdown]
# Checks: shapes, the shift by one, and that start positions are uniform — 32,000 draws over 93
# possible starts should hit each about 344 times (a chi-square statistic near its 92 degrees of
# freedom). Then the time it takes, from a memmap on disk.

# %%
from cs336_basics.data import get_batch, load_tokens

data = np.arange(100)
rng = np.random.default_rng(0)
counts = np.zeros(93)
for _ in range(1000):
    x, y = get_batch(data, 32, 7, "cpu", rng=rng)
    assert x.shape == y.shape == (32, 7) and torch.equal(x + 1, y)
    np.add.at(counts, x[:, 0].numpy(), 1)
expected = counts.sum() / len(counts)
chi2 = ((counts - expected) ** 2 / expected).sum()
print(f"starts seen: {int((counts > 0).sum())}/93, min {counts.min():.0f} max {counts.max():.0f}, chi2 = {chi2:.1f} (df 92)")
assert (counts > 0).all() and chi2 < 150

# %%
np.save(TMP / "tokens.npy", np.random.default_rng(0).integers(0, 10_000, size=5_000_000, dtype=np.uint16))
tokens = load_tokens(TMP / "tokens.npy", vocab_size=10_000)
rng = np.random.default_rng(0)
t0 = time.perf_counter(); n = 200
for _ in range(n):
    x, y = get_batch(tokens, 32, 256, "cpu", rng=rng)
print(f"get_batch(32 x 256) from a 5M-token memmap: {(time.perf_counter() - t0) / n * 1e3:.3f} ms per batch")

# %% [markdown]
# ## What the next notebook needs
#
# Notebook **04b** puts these pieces into a training loop: `get_batch` → the model →
# `cross_entropy` → backward → `clip_gradients` → `AdamW.step` at the `cosine_lr` learning rate.
# It writes that loop in a few dozen lines first, then adds checkpoints (`serialization.py`) and
# the full `train.py`: validation, metrics, resume, Ctrl-C, DDP. The `cross_entropy` and `AdamW`
# it imports from the package compute what `cross_entropy_plain` and `PlainAdamW` compute, only
# faster; notebook **04c** shows how, and adds the loop's switches for speed and for a lower loss
# (`run.compile`, `run.loss_chunk_rows`, `data.sampler`, `optim.ema_halflife`). A first reading may
# skip it.
