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
# Each piece comes first as a student writes it from the handout. Section 7, **making it fast**,
# then replaces the loss and AdamW by versions that compute the same numbers faster (a
# hand-written backward, the loss in chunks, a fused update), and section 8, **making it
# better**, adds two switches that lower the loss (reading the data epoch by epoch, an average of
# the weights). Each is checked against the plain version and says what it gained. A reader who
# stops after section 6 has every piece of a correct, slower training run.
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
# between this optimiser, the package's (§7) and torch's.

# %%
class PlainAdamW(torch.optim.Optimizer):
    """AdamW one parameter tensor at a time, as the formulas read (the package's AdamW, §7, is faster)."""

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
# ## 7 · Making it fast
#
# Everything above is correct and enough to train: notebook 04b's first loop would run the same
# with `cross_entropy_plain` and `PlainAdamW`, only slower. What follows changes how fast the loss and AdamW run, never what they compute; each fast
# version is checked equal to its plain one, and says what it gained. These are the package's
# `cross_entropy` and `AdamW`, the ones the training loop uses.
#
# ### The loss with a hand-written backward
#
# Autograd through `cross_entropy_plain` keeps several (n, vocab) tensors alive (the shifted
# logits, their exponentials, ...) and, going back, builds a gradient for each of max, subtract,
# exp, sum and gather, then adds the paths. But the gradient has a closed form,
# $\partial\ell/\partial o = (\mathrm{softmax}(o) - \mathrm{onehot}(x))/n$, so a
# `torch.autograd.Function` can keep a single (n, vocab) tensor, the exponentials, and write the
# gradient in one pass. On the `cpu` preset's shape (8 × 256 positions, vocabulary 4,096), forward
# and backward took 35 instead of 160 ms on one thread of this CPU (median of 15 runs); the cell
# after the check measures it again.

# %%
#| default_exp nn_utils

# %%
#| export
class _CrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of (n, vocab) float logits with a hand-written backward.

    Autograd through max/sub/exp/sum/gather would keep several (n, vocab) tensors and, going back,
    zero-fill one for the gather and add two gradient paths; the closed form needs one pass:
    d loss / d logits = (softmax(logits) - one_hot(target)) / n.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        row_max = logits.amax(dim=-1, keepdim=True)
        shifted = logits - row_max  # <= 0, so exp cannot overflow
        target_shifted = shifted.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        exp = shifted.exp_()  # in place: this one (n, vocab) tensor is all that backward keeps
        sum_exp = exp.sum(dim=-1)
        ctx.save_for_backward(exp, sum_exp, targets)
        return (sum_exp.log() - target_shifted).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        exp, sum_exp, targets = ctx.saved_tensors
        per_row = grad / len(targets)
        grad_logits = exp * (per_row / sum_exp).unsqueeze(-1)  # softmax / n
        rows = torch.arange(len(targets), device=targets.device)
        grad_logits[rows, targets] -= per_row  # minus one_hot / n
        return grad_logits, None


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -log softmax(logits)[target] over every leading position.

    logits: (..., vocab) float; targets: (...) integer ids in [0, vocab). Returns a 0-dim tensor.
    Numerically stable for huge logits: the row maximum is subtracted before exponentiating, and
    the target's log-probability is read off the shifted logits without a log(exp(.)) round trip.
    Half-precision logits are upcast to float32 first (a bf16 log-sum-exp over 10k terms is coarse).
    The gradient is the closed form (softmax - one_hot) / n, written by hand (see _CrossEntropy).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"cross_entropy: logits {tuple(logits.shape)} need targets of shape {tuple(logits.shape[:-1])}, "
            f"got {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point:
        raise TypeError("cross_entropy: targets must be integer token ids (torch.long), not floats")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    vocab = logits.shape[-1]
    return _CrossEntropy.apply(logits.reshape(-1, vocab), targets.reshape(-1).long())

# %% [markdown]
# The same values and gradients as the plain version, for ordinary and for huge logits:

# %%
from cs336_basics.nn_utils import cross_entropy

logits = torch.randn(4, 5, 11, dtype=torch.float64, requires_grad=True); targets = torch.randint(0, 11, (4, 5))
for scale in (1.0, 1e4):
    fast, plain = cross_entropy(logits * scale, targets), cross_entropy_plain(logits * scale, targets)
    grad_fast, grad_plain = (torch.autograd.grad(loss, logits)[0] for loss in (fast, plain))
    print(f"logits x {scale:g}: loss {fast.item():.9f} vs plain {plain.item():.9f}, "
          f"max |grad difference| {(grad_fast - grad_plain).abs().max().item():.1e}")
    assert torch.allclose(fast, plain) and torch.allclose(grad_fast, grad_plain)

# %%
rows = 512 if SMOKE else 2048  # 2048 = the cpu preset's 8 x 256 positions
big_logits = torch.randn(rows, 4096, requires_grad=True); big_targets = torch.randint(0, 4096, (rows,))


def forward_backward_ms(loss_fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss_fn(big_logits, big_targets).backward()
        times.append(time.perf_counter() - t0)
        big_logits.grad = None
    return sorted(times)[repeats // 2] * 1e3


print(f"forward + backward on ({rows}, 4096) logits, {torch.get_num_threads()} thread(s): "
      f"plain {forward_backward_ms(cross_entropy_plain):.1f} ms, hand-written {forward_backward_ms(cross_entropy):.1f} ms")

# %% [markdown]
# ### The output layer and the loss, a few rows at a time
#
# For a batch of 8 × 256 positions and a vocabulary of 4,096 the logits are a 32 MiB float32
# tensor, written once by the output layer, read back by the loss, and again (as its gradient) by
# the backward pass. On a CPU that is slow for a reason that has nothing to do with arithmetic: a
# fresh 32 MiB buffer comes from the operating system page by page, and those page faults cost
# more than the matmul that fills it. `linear_cross_entropy(hidden, weight, targets)` computes
# `cross_entropy(hidden @ weight.T, targets)` for `rows_per_chunk` positions at a time. Each
# chunk's logits (128 × 4,096 floats, 2 MiB) stay in cache, and since the gradient of the loss
# with respect to them is known in closed form (softmax − one-hot), the chunk's contributions to
# the gradients of `hidden` and `weight` are computed right away and the logits are dropped.
# The backward pass only scales the saved gradients. Same arithmetic as the unchunked path; the
# training loop uses it when `run.loss_chunk_rows > 0`: with 128, the `cpu` preset's compiled
# training step took 187 instead of 218 ms in `benchmarks/bench_model.py --shapes cpu --compile
# --threads 2`, and its 15-minute run made 7% more steps.

# %%
#| export
class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` (softcapped if ``cap``) over (n, d) rows, ``rows`` at a time."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int,
                cap: float) -> torch.Tensor:
        n = hidden.shape[0]
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if want_grad else None
        grad_weight = torch.zeros_like(weight) if want_grad else None
        total = hidden.new_zeros(())
        for start in range(0, n, rows):
            h, t = hidden[start:start + rows], targets[start:start + rows]
            logits = h @ weight.T  # (rows, vocab), small enough to stay in cache
            if cap:  # logits = cap tanh(z / cap); keep tanh for the chain rule's d/dz = 1 - tanh^2
                tanh = logits.div_(cap).tanh_()
                logits = tanh * cap
            target_logit = logits.gather(1, t.unsqueeze(1))
            row_max = logits.amax(dim=1, keepdim=True)
            exp = logits.sub_(row_max).exp_()  # in place: one (rows, vocab) buffer per chunk
            sum_exp = exp.sum(dim=1, keepdim=True)
            total += (sum_exp.log() + row_max - target_logit).sum()
            if want_grad:  # d(sum of losses)/d logits = softmax - one_hot, used while in cache
                probs = exp.div_(sum_exp)
                probs.scatter_add_(1, t.unsqueeze(1), probs.new_full((len(t), 1), -1.0))
                if cap:
                    probs.mul_(tanh.square_().neg_().add_(1))
                torch.mm(probs, weight, out=grad_hidden[start:start + rows])
                grad_weight.addmm_(probs.T, h)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.n = n
        return total / n

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad / ctx.n
        return (grad_hidden * scale if ctx.needs_input_grad[0] else None,
                grad_weight * scale if ctx.needs_input_grad[1] else None, None, None, None)


@torch.compiler.disable  # eager on purpose: a compiled version measured no faster (the matmuls dominate)
def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         rows_per_chunk: int = 128, softcap: float = 0.0) -> torch.Tensor:
    """``cross_entropy(hidden @ weight.T, targets)`` without ever holding all the logits.

    ``softcap > 0``: the loss of the capped logits ``softcap * tanh(hidden @ weight.T / softcap)``,
    as ``TransformerLM(logit_softcap=...)`` computes them.

    hidden: (..., d_model); weight: (vocab, d_model), the output layer's; targets: (...) ids.
    Works through ``rows_per_chunk`` positions at a time and computes the gradients of hidden and
    weight during the forward pass (the loss's gradient is known in closed form), so the backward
    pass is a multiplication. Computed in float32 (half-precision inputs are upcast, autocast is
    off inside). ``hidden`` and ``weight`` must be on the same device.

        >>> h, w, t = torch.randn(2, 5, 4), torch.randn(7, 4), torch.randint(0, 7, (2, 5))
        >>> torch.allclose(linear_cross_entropy(h, w, t, 3), cross_entropy(h @ w.T, t))
        True
    """
    if hidden.shape[:-1] != targets.shape or hidden.shape[-1] != weight.shape[-1] or weight.dim() != 2:
        raise ValueError(
            f"linear_cross_entropy: need hidden (..., d), weight (vocab, d) and targets (...) with matching "
            f"shapes; got hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)}, targets {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point:
        raise TypeError("linear_cross_entropy: targets must be integer token ids (torch.long), not floats")
    if rows_per_chunk < 1:
        raise ValueError(f"linear_cross_entropy: rows_per_chunk must be >= 1, got {rows_per_chunk}")
    if not softcap >= 0:
        raise ValueError(f"linear_cross_entropy: softcap must be >= 0 (0: off), got {softcap}")
    dtype = torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)
    with torch.autocast(hidden.device.type, enabled=False):
        return _LinearCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]).to(dtype), weight.to(dtype),
                                         targets.reshape(-1).long(), rows_per_chunk, float(softcap))


# %% [markdown]
# The same loss and the same gradients as the unchunked path, with 5 rows per chunk over 2 × 7
# positions (the last chunk is short). With `softcap=c` (the model's `logit_softcap`, notebook 02)
# each chunk's logits become $c\tanh(z/c)$ and their closed-form gradient gains the chain rule's
# factor $1 - \tanh^2(z/c)$; `gradcheck` compares it with finite differences.

# %%
from cs336_basics.nn_utils import linear_cross_entropy

hidden = torch.randn(2, 7, 16, dtype=torch.float64, requires_grad=True)
weight = torch.randn(11, 16, dtype=torch.float64, requires_grad=True)
targets = torch.randint(0, 11, (2, 7))
chunked = linear_cross_entropy(hidden, weight, targets, rows_per_chunk=5)
grads_chunked = torch.autograd.grad(chunked, (hidden, weight))
whole = cross_entropy(hidden @ weight.T, targets)
grads_whole = torch.autograd.grad(whole, (hidden, weight))
print(f"loss chunked {chunked.item():.12f}  whole {whole.item():.12f}")
assert torch.allclose(chunked, whole) and all(torch.allclose(a, b) for a, b in zip(grads_chunked, grads_whole))
capped = linear_cross_entropy(hidden, weight, targets, rows_per_chunk=5, softcap=2.0)
assert torch.allclose(capped, cross_entropy(2.0 * torch.tanh(hidden @ weight.T / 2.0), targets))
assert torch.autograd.gradcheck(lambda h, w: linear_cross_entropy(h, w, targets, 5, softcap=2.0), (hidden, weight))

# %% [markdown]
# ### AdamW's update in one pass
#
# `PlainAdamW` computes a handful of temporary tensors per parameter tensor, each one a pass over
# memory. The package's `AdamW` computes the same, but its `step()` works out the few numbers of
# this step for each tensor (decay factor, step size, bias correction) in Python and hands them,
# as one small tensor, to `_adamw_update`, which does the arithmetic on the big tensors in place:
# about six passes over memory per parameter tensor. `optimizer.compile_update()` (used by the
# training loop when `run.compile` is on) has `torch.compile` fuse them into one. Because the
# numbers arrive as a tensor, a changing learning rate does not trigger a recompile. For the `cpu`
# preset's 3.3 M parameters, one step took about 25 ms with `PlainAdamW`, 12–14 ms with the eager
# update and 2.3 ms compiled, on one thread of this shared 2-core CPU (medians of 20); on 2 threads
# an earlier measurement gave 4.38 ms eager and 1.33 ms compiled (`torch.optim.AdamW(fused=True)`:
# 1.42). In the `cpu` preset's training run the compiled update gave about 3% more tokens per second.

# %%
#| default_exp optimizer

# %%
#| export
class AdamW(torch.optim.Optimizer):
    """Adam with bias correction and decoupled weight decay (Loshchilov & Hutter, Algorithm 2).

    Per parameter tensor theta with gradient g, at step t = 1, 2, ...:
        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        theta <- theta - lr * wd * theta                               (decoupled weight decay)
        theta <- theta - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
    State per parameter: "step" (int), "exp_avg" (m) and "exp_avg_sq" (v), both shaped like theta;
    state_dict()/load_state_dict() round-trip it. Parameter groups may override any hyperparameter.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        if not lr >= 0.0:
            raise ValueError(f"AdamW: learning rate must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"AdamW: betas must each be in [0, 1), got {betas}")
        if not eps >= 0.0:
            raise ValueError(f"AdamW: eps must be >= 0, got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"AdamW: weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self._update = _adamw_update  # compile_update() swaps in a compiled version

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            params, grads, exp_avgs, exp_avg_sqs, scalars = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                # the per-tensor numbers of this step: decay factor, step size, 1 / sqrt(bias correction 2)
                scalars.append((1 - lr * wd, lr / (1 - beta1**t), 1 / math.sqrt(1 - beta2**t)))
                params.append(p); grads.append(p.grad)
                exp_avgs.append(state["exp_avg"]); exp_avg_sqs.append(state["exp_avg_sq"])
            if params:
                # the numbers travel as one tensor, so a compiled update never sees a new constant
                dtype = torch.float64 if params[0].dtype == torch.float64 else torch.float32
                scalars = torch.tensor(scalars, dtype=dtype, device=params[0].device)
                self._update(params, grads, exp_avgs, exp_avg_sqs, scalars, beta1, beta2, eps, wd != 0)
        return loss

    def compile_update(self) -> AdamW:
        """Run the update through ``torch.compile``: one fused pass per tensor instead of about six
        (on the `cpu` preset's 3.3 M parameters, 1.3 instead of 4.4 ms a step on 2 CPU threads)."""
        self._update = torch.compile(_adamw_update)
        return self


def _adamw_update(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avgs: list[torch.Tensor],
                  exp_avg_sqs: list[torch.Tensor], scalars: torch.Tensor, beta1: float, beta2: float,
                  eps: float, decay: bool) -> None:
    """One AdamW step for each tensor, in place. scalars: (n, 3) = decay factor 1 - lr wd, step size
    lr / (1 - b1^t) and 1 / sqrt(1 - b2^t) per tensor."""
    for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs)):
        decay_factor, step_size, inv_sqrt_bias2 = scalars[i].to(p.device).unbind()
        m.lerp_(g, 1 - beta1)                                     # m = b1 m + (1 - b1) g
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)             # v = b2 v + (1 - b2) g^2
        if decay:
            p.mul_(decay_factor)                                  # decoupled weight decay
        denom = v.sqrt().mul_(inv_sqrt_bias2).add_(eps)           # sqrt(v / (1 - b2^t)) + eps
        p.sub_(m.div(denom).mul_(step_size))


# %% [markdown]
# The same weights as `PlainAdamW` after 20 steps of the regression above (and so as torch's).
# Outside smoke mode (compiling takes a while on 2 cores) the compiled update too; the test suite
# checks it against the eager one.

# %%
from cs336_basics.optimizer import AdamW


def max_difference(model_a, model_b):
    return max((a - b).abs().max().item() for a, b in zip(model_a.parameters(), model_b.parameters()))


plain, _ = fit(PlainAdamW)
diff = max_difference(fit(AdamW)[0], plain)
print(f"max |AdamW - PlainAdamW| after 20 steps: {diff:.2e}")
assert diff < 1e-6
if not SMOKE:
    import logging
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on a CPU box
    compiled, _ = fit(lambda params, **kw: AdamW(params, **kw).compile_update())
    diff = max_difference(compiled, plain)
    print(f"compiled update: max |AdamW - PlainAdamW| = {diff:.2e}")
    assert diff < 1e-6

# %% [markdown]
# ## 8 · Making it better
#
# Two changes that alter what a run computes, for a lower loss at the same cost: which windows it
# reads, and which weights it evaluates. Both are switches of the training loop (notebook 04b),
# off in the handout's setup and on in the `cpu` preset.
#
# ### Uniform starts or epochs?
#
# Uniform random starts are what the handout asks for, and for a corpus much larger than the
# training run they are all one needs. When a run reads its data more than once they waste some of
# it: after drawing as many windows as would cover the corpus 1.6 times, a given token has been in
# no window at all with probability $e^{-1.6} \approx 20\%$, and in three or more with 22%. The
# alternative visits the corpus epoch by epoch: cut it into back-to-back windows from a random
# offset, shuffle them, read them in that order, and repeat with a new offset and order. Every token
# is then read once per epoch. `epoch_batch_starts(n, context_length, batch_size, step, seed)`
# returns the start positions of batch `step`; it is a pure function of its arguments (each epoch's
# offset and order come from `(seed, epoch)`), so a resumed run needs no extra state. The training
# loop uses it when `data.sampler = "epoch"`.
#
# It matters when the model can memorise: with a quarter of the English stand-in (1.5 M tokens,
# so that a 400 s run reads it 1.6 times), uniform starts scored 1.764 bits per byte and epochs
# 1.732, with the training loss the other way round (3.89 vs 4.00): the windows seen three or four
# times were learnt by heart at the expense of the rest. In the `cpu` preset's 15-minute run,
# epochs took the validation score from 1.574 to 1.557 bits per byte.

# %%
#| default_exp data

# %%
#| export
def epoch_batch_starts(n_tokens: int, context_length: int, batch_size: int, step: int, seed: int = 0) -> npt.NDArray:
    """Start positions (batch_size,) of training batch ``step`` (0-based) when each epoch reads
    every window once.

    Epoch e = step // batches_per_epoch takes the windows that begin at offset, offset + context_length,
    offset + 2 context_length, ... (offset random in [0, context_length)), in a random order, and
    reads them batch_size at a time; the few left over at the end of an epoch are skipped. Offset
    and order depend only on (seed, e).

        >>> epoch_batch_starts(1000, 100, 4, step=0, seed=0)   # 9 windows: 2 batches per epoch
        array([897, 297, 197,  97])
    """
    windows = max((n_tokens - context_length) // context_length, 0)  # fit for any offset < context_length
    per_epoch = windows // batch_size
    if per_epoch == 0:
        raise ValueError(
            f"epoch_batch_starts: {n_tokens} tokens hold {windows} windows of {context_length} + 1 tokens, "
            f"fewer than one batch of {batch_size}; use more data, a smaller batch, or the uniform sampler"
        )
    epoch, i = divmod(step, per_epoch)
    return _epoch_order(windows, context_length, seed, epoch)[i * batch_size : (i + 1) * batch_size]


@functools.lru_cache(maxsize=2)
def _epoch_order(windows: int, context_length: int, seed: int, epoch: int) -> npt.NDArray:
    rng = np.random.default_rng([seed, 2, epoch])  # 2: a stream of its own (the loop's eval batches use [seed, 1])
    order = int(rng.integers(context_length)) + context_length * rng.permutation(windows)
    order.flags.writeable = False  # cached and shared by every batch of the epoch
    return order


# %% [markdown]
# Every window exactly once per epoch, a new offset and order the next epoch:

# %%
from cs336_basics.data import epoch_batch_starts

n, ctx, batch = 10_000, 64, 8
per_epoch = ((n - ctx) // ctx) // batch
epoch0 = np.concatenate([epoch_batch_starts(n, ctx, batch, s, seed=0) for s in range(per_epoch)])
epoch1 = np.concatenate([epoch_batch_starts(n, ctx, batch, s, seed=0) for s in range(per_epoch, 2 * per_epoch)])
for starts in (epoch0, epoch1):
    assert len(np.unique(starts)) == len(starts) and len(np.unique(starts % ctx)) == 1
    assert starts.min() >= 0 and starts.max() + ctx + 1 <= n
print(f"{per_epoch} batches per epoch; offsets {epoch0[0] % ctx} and {epoch1[0] % ctx}; "
      f"first starts {epoch0[:4]} then {epoch1[:4]}")

# %% [markdown]
# ### An average of the weights
#
# Late in training each step still moves the weights by about `lr` in a random-ish direction: the
# gradient of one small batch is mostly noise. The cosine tail shrinks those steps; averaging the
# weights of the last few hundred steps cancels the noise without shrinking them further.
# `WeightAverage` keeps an exponential moving average (EMA) next to the training weights — the
# training itself never sees it — with a half-life in steps, bias-corrected like Adam's moments so
# that it is an exact weighted mean of the weights seen so far (after one step it equals them).
# The training loop keeps one when `optim.ema_halflife > 0`, evaluates and saves it, and
# `load_model_from_run` returns it.
#
# In the `cpu` preset's 15-minute run the average scored 1.549 bits per byte on the validation
# text, the last weights 1.571; updating it after every step costs about 2 ms.

# %%
#| default_exp optimizer

# %%
#| export
class WeightAverage:
    """An exponential moving average (EMA) of a model's parameters, beside the training weights.

    After the t-th ``update()`` (t = 1, 2, ...), with decay = 0.5 ** (1 / halflife_steps):
        average <- average + (theta - average) * (1 - decay) / (1 - decay^t)
    so step s's weights count half as much as step s + halflife_steps's, and the bias correction
    makes the average an exact weighted mean of the weights seen (after one update it is theta).

    >>> avg = WeightAverage(model, halflife_steps=200)                       # doctest: +SKIP
    >>> loss.backward(); optimizer.step(); avg.update()                      # doctest: +SKIP
    >>> with avg.applied():   # the model holds the averaged weights inside  # doctest: +SKIP
    ...     val_loss = evaluate(model)
    """

    def __init__(self, model: torch.nn.Module, halflife_steps: float):
        if not halflife_steps > 0:
            raise ValueError(f"halflife_steps must be > 0, got {halflife_steps}")
        self.decay = 0.5 ** (1.0 / halflife_steps)
        self.updates = 0
        self.params = dict(model.named_parameters())  # a tied weight appears once
        self.average = {name: p.detach().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        weight = (1 - self.decay) / (1 - self.decay ** self.updates)
        for name, p in self.params.items():
            self.average[name].lerp_(p, weight)

    @contextmanager
    def applied(self):
        """Swap the average into the model for the duration of a ``with`` block."""
        saved = {name: p.detach().clone() for name, p in self.params.items()}
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.average[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(saved[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "average": dict(self.average)}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved average. The decay stays this object's own: a run resumed with
        another half-life averages on with the new one."""
        if set(state["average"]) != set(self.average):
            raise ValueError(f"the saved average holds {sorted(state['average'])}, this model {sorted(self.average)}")
        self.updates = int(state["updates"])
        for name, avg in state["average"].items():
            self.average[name].copy_(avg)


# %% [markdown]
# A check on a toy problem: noisy gradient steps around a minimum at 0. The weights keep jittering
# with the step size; their average sits much closer to the minimum.

# %%
torch.manual_seed(0)
toy = torch.nn.Linear(64, 1, bias=False)
toy_opt = AdamW(toy.parameters(), lr=0.05, weight_decay=0.0)
toy_avg = WeightAverage(toy, halflife_steps=100)
for _ in range(500):
    toy_opt.zero_grad()
    (0.5 * (toy.weight ** 2).sum() + (toy.weight * torch.randn_like(toy.weight)).sum()).backward()  # noisy gradient of |w|^2 / 2
    toy_opt.step()
    toy_avg.update()
raw_dist = toy.weight.norm().item()
with toy_avg.applied():
    avg_dist = toy.weight.norm().item()
print(f"distance from the minimum: weights {raw_dist:.3f}, their average {avg_dist:.3f}")
assert avg_dist < raw_dist / 2 and toy.weight.norm().item() == raw_dist

# %% [markdown]
# ## What the next notebook needs
#
# Notebook **04b** puts these pieces into a training loop: `get_batch` → the model →
# `cross_entropy` → backward → `clip_gradients` → `AdamW.step` at the `cosine_lr` learning rate.
# It writes that loop in a few dozen lines first, then adds checkpoints (`serialization.py`) and
# the full `train.py`: validation, metrics, resume, Ctrl-C, DDP, and the switches of §7–8
# (`run.compile`, `run.loss_chunk_rows`, `data.sampler`, `optim.ema_halflife`).
