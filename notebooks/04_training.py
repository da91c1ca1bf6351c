# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Training: loss, AdamW, schedule, clipping, batches, checkpoints, the loop
#
# Notebook 02 built a model that maps token ids to logits. Here we build everything that turns it
# into a *trained* model:
#
# 1. **cross-entropy** (and perplexity) — the number we minimise (`nn_utils.py`);
# 2. **SGD and AdamW** — how parameters move (`optimizer.py`), with a **cosine schedule** for the
#    learning rate and **gradient clipping** against the occasional huge gradient;
# 3. **batches** sampled from a token file on disk (`data.py`) and **checkpoints** (`serialization.py`);
# 4. **the training loop** (`train.py`): validation, metrics, resume, Ctrl-C, bf16, DDP — and we run
#    it live on a tiny model and plot its curves. Its plumbing is hand-written beside it: the typed
#    TOML config (`config.py`), devices, processes and random state (`runtime.py`), and the run
#    folder (`runs.py`).
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


def perplexity(loss: float | torch.Tensor) -> float:
    """exp(mean cross-entropy in nats): the size of a uniform choice that is as surprising.

    >>> round(perplexity(math.log(10000)), 6)   # a uniform guess over 10k tokens
    10000.0
    """
    return math.exp(float(loss))


# %% [markdown]
# A check against `torch.nn.functional.cross_entropy` (oracle only), with extra leading dims and
# with logits of size 1e4 where a naive softmax overflows to `inf`:

# %%
from cs336_basics.nn_utils import cross_entropy, perplexity
import torch.nn.functional as F  # oracle only

logits = torch.randn(2, 3, 7); targets = torch.randint(0, 7, (2, 3))
ours, ref = cross_entropy(logits, targets), F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1))
huge = logits * 1e4
naive = -(huge.exp() / huge.exp().sum(-1, keepdim=True)).gather(-1, targets[..., None]).log().mean()
print(f"ours {ours:.6f}  torch {ref:.6f}  | huge logits: ours {cross_entropy(huge, targets):.1f}  "
      f"torch {F.cross_entropy(huge.reshape(-1, 7), targets.reshape(-1)):.1f}  naive {naive}")
assert torch.allclose(ours, ref, atol=1e-6)
assert torch.allclose(cross_entropy(huge, targets), F.cross_entropy(huge.reshape(-1, 7), targets.reshape(-1)))

# %% [markdown]
# **Perplexity** is `exp(loss)`: an untrained model over a vocabulary of 10,000 should start near
# `ln(10000) ≈ 9.21` nats, perplexity 10,000.

# %%
print(perplexity(math.log(10_000)), perplexity(cross_entropy(torch.zeros(4, 10_000), torch.zeros(4, dtype=torch.long))))

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
    """Mean cross-entropy of ``hidden @ weight.T`` over (n, d) hidden rows, ``rows`` at a time."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
        n = hidden.shape[0]
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if want_grad else None
        grad_weight = torch.zeros_like(weight) if want_grad else None
        total = hidden.new_zeros(())
        for start in range(0, n, rows):
            h, t = hidden[start:start + rows], targets[start:start + rows]
            logits = h @ weight.T  # (rows, vocab), small enough to stay in cache
            target_logit = logits.gather(1, t.unsqueeze(1))
            row_max = logits.amax(dim=1, keepdim=True)
            exp = logits.sub_(row_max).exp_()  # in place: one (rows, vocab) buffer per chunk
            sum_exp = exp.sum(dim=1, keepdim=True)
            total += (sum_exp.log() + row_max - target_logit).sum()
            if want_grad:  # d(sum of losses)/d logits = softmax - one_hot, used while in cache
                probs = exp.div_(sum_exp)
                probs.scatter_add_(1, t.unsqueeze(1), probs.new_full((len(t), 1), -1.0))
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
                grad_weight * scale if ctx.needs_input_grad[1] else None, None, None)


@torch.compiler.disable  # eager on purpose: a compiled version measured no faster (the matmuls dominate)
def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         rows_per_chunk: int = 128) -> torch.Tensor:
    """``cross_entropy(hidden @ weight.T, targets)`` without ever holding all the logits.

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
    dtype = torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)
    with torch.autocast(hidden.device.type, enabled=False):
        return _LinearCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]).to(dtype), weight.to(dtype),
                                         targets.reshape(-1).long(), rows_per_chunk)


# %% [markdown]
# The same loss and the same gradients as the unchunked path, with 5 rows per chunk over 2 × 7
# positions (the last chunk is short):

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
# `step()` works out the few numbers of this step for each tensor (decay factor, step size, bias
# correction) in Python and hands them, as one small tensor, to `_adamw_update`, which does the
# arithmetic on the big tensors. Written as separate in-place operations that is about six passes
# over memory per parameter tensor; `optimizer.compile_update()` (used by the training loop when
# `run.compile` is on) has `torch.compile` fuse them into one. Because the numbers arrive as a
# tensor, a changing learning rate does not trigger a recompile.

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
# Check: several steps of ours and of `torch.optim.AdamW` (oracle) on the same small regression
# problem, starting from the same weights, end at the same weights — and the optimiser state
# survives `state_dict()` → `load_state_dict()` into a fresh instance.

# %%
from cs336_basics.optimizer import AdamW, cosine_lr


def fit(opt_cls, steps=20):
    torch.manual_seed(42)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))  # oracle model
    opt = opt_cls(model.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    for _ in range(steps):
        opt.zero_grad(); ((model(x) - y) ** 2).mean().backward(); opt.step()
    return model, opt


ours, opt = fit(AdamW)
ref, _ = fit(torch.optim.AdamW)
diff = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), ref.parameters()))
print(f"max |ours - torch.optim.AdamW| after 20 steps: {diff:.2e}")
assert diff < 1e-6
fresh = AdamW(ours.parameters()); fresh.load_state_dict(opt.state_dict())
assert all(torch.equal(fresh.state[p]["exp_avg_sq"], opt.state[p]["exp_avg_sq"]) for p in ours.parameters())

# %% [markdown]
# ## 4 · Cosine learning-rate schedule with warm-up
#
# Linear warm-up from 0 to $\alpha_{max}$ over $T_w$ steps, then half a cosine down to
# $\alpha_{min}$ at step $T_c$, then flat at $\alpha_{min}$ — exactly the handout's definition.

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
# times were learnt by heart at the expense of the rest.

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
# ## 7 · Checkpoints
#
# A checkpoint is a dict: model `state_dict`, optimiser `state_dict` (AdamW's moments and step
# counts), the iteration, and anything else the caller adds (the training loop adds its config, RNG
# states and timings). Paths are written to a temporary name in the same directory and renamed
# with `os.replace`, which is atomic: a crash mid-write (or a full disk) leaves the previous
# checkpoint intact and no temporary file behind. We hand `torch.save` an open file rather than a
# path, so that a full disk surfaces as Python's `OSError` (ENOSPC) instead of a C++ `RuntimeError`.
# File objects (a `BytesIO`, an open file) are written directly. A model wrapped by `torch.compile`
# or `DistributedDataParallel` is unwrapped first, so the keys are always the plain model's.

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
from cs336_basics.serialization import load_checkpoint, save_checkpoint

model_a, opt_a = fit(AdamW, steps=3)
model_b, opt_b = fit(AdamW, steps=0)
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
# ## 8 · The training loop
#
# `train.py` puts it all together. A run is described by a **typed config** in five sections —
# `[model]`, `[optim]`, `[schedule]`, `[data]`, `[run]` — loaded from TOML and overridable from the
# command line (`--set optim.lr=3e-3`). An unknown key or a value of the wrong type is an error
# naming it.
#
# ### The config
#
# Five dataclasses; every field has a type and a default, and the defaults are the handout's
# TinyStories model. `[model]` *is* notebook 02's `ModelConfig` (so `TransformerLM.from_config`
# builds it); `d_ff = 0` means "the model's default". `data.batch_size` is the **global** batch:
# under DDP each of N ranks gets `batch_size / N` of it.
#
# Loading reads the TOML file, applies `section.key=value` overrides (the value is parsed as a TOML
# value, so `3e-3` is a float and `true` a bool; anything that does not parse is a string), then
# coerces each value to its field's type and validates the ranges and choices. That is plumbing
# that teaches nothing about training, so it lives in the hand-written `cs336_basics/config.py`.
# A quick look: the defaults are the handout's TinyStories model; overrides are typed; a typo is
# an error that lists the keys that do exist.

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
# forward pass under bf16 autocast (the master weights, gradients and AdamW state stay float32).
# bf16 autocast also works on CPUs with AVX-512 BF16 / AMX, where bf16 matmuls run several times
# faster than float32 — the `cpu` preset turns it on.
#
# Under `torchrun` the environment holds `RANK`, `WORLD_SIZE` and `LOCAL_RANK`; we start a process
# group (NCCL on GPUs, gloo on CPUs) and each rank takes GPU `LOCAL_RANK`.
#
# To resume *exactly*, a checkpoint holds every random state the loop uses: torch (CPU and CUDA),
# numpy's and Python's global generators, and the numpy `Generator` that draws batch start
# positions, stored as plain lists and dicts so that `torch.load(weights_only=True)` can read them.
#
# **MFU** compares the FLOPs we actually perform per second with the device's peak. The FLOPs per
# training token (about 6 per parameter, plus the attention scores) come from notebook 03's
# `accounting.training_flops_per_token`. The peak is *measured* with a large matmul in the training
# precision, so MFU is against what this machine can actually do (set `run.peak_flops` to use a
# datasheet number instead).
#
# All of this (`resolve_device`, `autocast_dtype`, `setup_distributed`, `all_reduce_mean`,
# `rng_state`, `measure_matmul_peak`, the thread count and the Ctrl-C flag) is plumbing too: it
# lives in the hand-written `cs336_basics/runtime.py`, and the loop below calls it by name.

# %% [markdown]
# ### The loop
#
# A few decisions worth spelling out:
#
# * **Validation** uses a fixed list of batch start positions drawn once from the seed, so every
#   evaluation (and every run with the same seed) measures the same tokens: curves are comparable.
# * **No per-step host sync.** Each step's loss stays on the device; every `log_every` steps the
#   window is copied once, checked for NaN/inf (naming the first bad step) and averaged.
# * **Ctrl-C** sets a flag; the step in progress finishes, a checkpoint is written and
#   `TrainingInterrupted` is raised (the CLI turns it into exit status 130). A second Ctrl-C aborts.
#   **SIGTERM** (what `kill`, a job scheduler or a shutting-down machine sends) does the same, and
#   the CLI exits with 143 (128 + 15, the usual status for "terminated").
# * **A non-finite loss** raises `TrainingDiverged`; nothing is saved after the last good checkpoint.
#   "Good" is checked, not assumed: the update of a step whose loss was finite can still blow up
#   the weights, so a checkpoint is written only from finite weights, each records the training
#   loss of its last window, and the error names the newest checkpoint on disk that passes both.
# * **Resume** restores the model, AdamW, the step, the RNG states and the clock, and drops any
#   metrics lines logged after the checkpoint, so a resumed run continues the same curve. A last
#   metrics line cut short (the process died while writing it) is dropped too.
# * **Before the first step** the run folder must be writable and its disk must have room for two
#   checkpoints (the new one is written next to the old before it replaces it), so a full disk is
#   found in a second, not after an hour.
# * **The weight average** (`optim.ema_halflife > 0`): updated after every optimizer step,
#   validated next to the weights themselves (`val/ema_loss`), saved in every checkpoint (`"ema"`,
#   restored on resume), and it is the model `load_model_from_run` returns — so evaluation, samples
#   and `cs336 generate` use it.
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
from cs336_basics.config import ConfigError, OptimConfig, ScheduleConfig, TrainConfig, config_to_toml
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
# Adam moves every weight by about `lr` per step, whatever the weight's size. That suits the hidden
# matrices (initial std ~0.07) but not the token embeddings, which start at std 1 and learn only on
# the steps where their token occurs. So the optimizer gets parameter groups, each with an
# `lr_scale` that the loop multiplies into the scheduled learning rate. The handout's setup is the
# default (every scale 1); the `cpu` preset trains the embeddings 15x and the output layer 5x faster
# than the rest. On the English stand-in, x30 and x5 lowered the validation loss of a 400-second,
# one-thread run from 4.44 to 4.31 nats/token (`benchmarks/sweep_cpu_preset.py`); over the whole
# 15-minute run the embeddings did best at x15 (1.5545 bits per byte, against 1.557 at x30 and
# 1.561 at x10).

# %%
#| export
def optimizer_groups(model: torch.nn.Module, o: OptimConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups: embeddings, lm_head, other matrices, and gains, each with its own
    ``lr_scale`` (the training loop sets ``lr = schedule(step) * lr_scale``) and weight decay.

    Why separate learning rates: Adam moves every weight by about ``lr`` per step whatever its
    size. The embedding rows start at std 1 (and each row learns only on steps where its token
    occurs), so at a learning rate sized for the std-0.07 hidden matrices they hardly move; the
    output layer sees a dense gradient at every position and tolerates a larger step. Weight
    decay on matrices only: decaying RMSNorm gains towards 0 would fight the normalisation. And
    decoupled decay shrinks a weight by lr * weight_decay per step, so a group whose learning rate
    is scaled up (embeddings, head) gets no decay rather than a decay scaled up alike.
    """
    embedding = model.token_embeddings.weight
    head = model.lm_head.weight
    tied = embedding is head
    matrices = [p for p in model.parameters() if p.ndim >= 2 and p is not embedding and p is not head]
    gains = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": matrices, "weight_decay": o.weight_decay, "lr_scale": 1.0},
        {"params": gains, "weight_decay": 0.0, "lr_scale": 1.0},
        {"params": [head], "weight_decay": o.weight_decay if o.head_lr_scale == 1.0 else 0.0,
         "lr_scale": o.head_lr_scale},
    ]
    if not tied:
        embedding_decay = o.weight_decay if o.embedding_lr_scale == 1.0 else 0.0
        groups.append({"params": [embedding], "weight_decay": embedding_decay, "lr_scale": o.embedding_lr_scale})
    return [g for g in groups if g["params"]]


# %%
from cs336_basics.model import TransformerLM

_lm = TransformerLM(vocab_size=256, context_length=16, d_model=32, num_layers=2, num_heads=2, d_ff=64)
_o = OptimConfig(embedding_lr_scale=30.0, head_lr_scale=5.0)
for _g in optimizer_groups(_lm, _o):
    print(f"{sum(p.numel() for p in _g['params']):>6} weights  lr_scale {_g['lr_scale']:>4}  weight_decay {_g['weight_decay']}")


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
    saved = ckpt.get("config", {}).get("model")
    if saved is not None and saved != dataclasses.asdict(config.model):
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


def _accelerate(model, optimizer, d: Dist, device: torch.device, use_compile: bool):
    """(the model to call, the loss to call): DDP under torchrun, then torch.compile if asked."""
    loss_fn = cross_entropy
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if use_compile:  # after DDP, so the compiler can split the graph at DDP's gradient buckets
        model = torch.compile(model)
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
    if s.max_seconds <= 0:
        return cosine_lr(step, o.lr, min_lr, s.warmup_steps, cosine_steps), False
    at = min(elapsed / s.max_seconds, 1.0) * s.max_steps  # the time spent, in the schedule's steps
    return cosine_lr(at, o.lr, min_lr, s.warmup_steps, cosine_steps), elapsed >= s.max_seconds


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
    model, loss_fn = _accelerate(model, optimizer, d, device, r.compile)
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
                with autocast():
                    out = model(x, return_hidden=chunked_loss)  # hidden states or logits
                if chunked_loss:
                    loss = linear_cross_entropy(out, raw_model.lm_head.weight, y, r.loss_chunk_rows)
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
# ### Loading a trained run
#
# Decoding and evaluation need the model back: the run directory's `config.toml` says how to build
# it, `checkpoints/latest.pt` holds the weights (or their average). That is a question about a run
# folder, not about training, so `load_model_from_run` lives in `runs.py`, next to the folder's
# layout (`RunFolder`) and `load_run_tokenizer`.

# %% [markdown]
# ## 9 · Training live
#
# Now the whole loop on a tiny model. In smoke mode (tests) the corpus is a toy language we make
# here: 256 token ids, each followed by one of 3 fixed successors chosen at random, so the best
# possible loss is $\ln 3 \approx 1.10$ nats against $\ln 256 \approx 5.55$ for a uniform guess.
# Outside smoke mode we train the same small model on real English: the **bytes** of the stand-in
# corpus (`../shared/data/english`) — byte-level tokens need no tokenizer, and the loss in nats per
# byte converts straight to bits per byte.

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
# The `smoke` preset with our data paths; `train` returns the run directory. (For the English run
# `run.peak_flops=0` makes the loop measure this CPU's matmul peak, so the logged MFU is against it.)

# %%
from cs336_basics.runs import RunFolder, load_model_from_run
from cs336_basics.train import train

run_cfg = load_config(ROOT / "configs" / "smoke.toml", [
    f"data.train_tokens={data_dir / 'train.npy'}", f"data.valid_tokens={data_dir / 'valid.npy'}",
    f"run.out_dir={TMP / 'run'}", "run.progress=false", *overrides,
])
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
# ### From the command line, and at GPU scale
#
# The same loop is `cs336 train`. The cells below launch the GPU-scale presets as subprocesses
# (they need a GPU and the tokenised datasets, so the test suite skips them):
#
# * `tinystories` — the handout's model: vocab 10,000, context 256, d_model 512, d_ff 1344,
#   4 layers, 16 heads, 327,680,000 tokens (128 × 10,000 × 256), bf16 autocast + TF32 + `torch.compile`.
# * `owt` — vocab 32,000, a 12-layer d_model 768 model, 655M tokens.
#
# With several GPUs, the same command runs under `torchrun --nproc_per_node=N -m cs336_basics.cli train ...`
# (DistributedDataParallel; `data.batch_size` stays the global batch).

# %%
# NBVAL_SKIP
import subprocess, sys

def launch(preset):
    """Run `cs336 train --config configs/PRESET.toml` (needs a GPU and data/PRESET/{train,valid}.npy)."""
    if not torch.cuda.is_available():
        print(f"{preset}: skipped, no GPU here")
        return None
    subprocess.run([sys.executable, "-m", "cs336_basics.cli", "train", "--config", str(ROOT / "configs" / f"{preset}.toml"),
                    "--set", f"run.out_dir={ROOT / 'runs' / preset}"], cwd=ROOT, check=True)
    return ROOT / "runs" / preset

gpu_runs = {"tinystories": launch("tinystories")}

# %%
# NBVAL_SKIP
gpu_runs["owt"] = launch("owt")

# %%
# NBVAL_SKIP
from cs336_basics.plotting import plot_learning_curves
for name, path in gpu_runs.items():
    if path is not None:
        plot_learning_curves([path], FIGURES / f"{name}_curves.png", title=name)

# %% [markdown]
# Next: notebook 05 samples text from a trained run (temperature, top-p, the KV cache).
