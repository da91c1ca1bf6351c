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
# # 04c · Making training fast, and better
#
# Notebook 04 built the pieces of training the plain way (`cross_entropy_plain`, `PlainAdamW`,
# `cosine_lr`, `clip_gradients`, `get_batch`), each checked, and notebook 04b put them into a
# training loop: a few dozen lines first, then `train.py`. A reader who stops there has a correct
# training run. This notebook makes it cheaper, in two parts:
#
# 1. **Making it fast**: the same numbers, sooner. The loss with a hand-written backward, the
#    output layer and the loss a few rows at a time (`nn_utils.py`), AdamW's update in one
#    compiled pass (`optimizer.py`); then the loop's switches that use them (`run.compile`,
#    `run.loss_chunk_rows`, `run.precision`), and the GPU presets, which switch them all on.
# 2. **Making it better**: a lower loss in the same time. Reading the data epoch by epoch
#    (`data.py`), evaluating an average of the weights (`optimizer.py`), and a learning rate per
#    parameter group (`train.py`).
#
# Each fast version is checked equal to its plain one and says what it gained; each better one
# says how much it lowered the `cpu` preset's validation score. The cells exported here go into
# the modules that notebooks 04 and 04b began, after their plain parts: the package's
# `cross_entropy` and `AdamW`, which 04b's loops already called, are the fast versions below.

# %%
from __future__ import annotations  # (as in the modules: annotations are not evaluated)

import os
from pathlib import Path

SMOKE = os.environ.get("CS336_SMOKE") == "1"
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
FIGURES = ROOT / "figures"   # only the GPU-scale cells (which the tests skip) write figures

import functools
import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import jupytext
import numpy as np
import numpy.typing as npt
import torch

from cs336_basics.config import OptimConfig  # (this and the names above: what the exported cells use)

TMP = Path(tempfile.mkdtemp(prefix="nb04c-"))
torch.manual_seed(0)
if SMOKE:
    torch.set_num_threads(1)  # everything here is small; one thread avoids thrashing on a busy machine

# %% [markdown]
# **The plain versions.** Every fast version below is checked against the plain one that notebook
# 04 wrote and checked against torch. Rather than copy them, we run those cells of
# `notebooks/04_training.py` here: `cross_entropy_plain(logits, targets)`, `PlainAdamW`, and
# `fit(optimizer_class)`, which trains a small regression model for 20 steps from fixed weights
# (its cell compares `PlainAdamW` with `torch.optim.AdamW` once more; its output follows).

# %%
wanted = ("def cross_entropy_plain(", "class PlainAdamW(", "def fit(")
cells_04 = jupytext.read(ROOT / "notebooks" / "04_training.py").cells
found = [cell.source for cell in cells_04 if cell.cell_type == "code" and cell.source.startswith(wanted)]
assert len(found) == len(wanted), f"notebooks/04_training.py no longer defines all of {wanted}"
for source in found:
    exec(source)  # in this notebook's namespace, as if the cell were here

# %% [markdown]
# ## 1 · Making it fast
#
# The plain versions are correct and enough to train: notebook 04b's loops would run the same
# with `cross_entropy_plain` and `PlainAdamW`, only slower. What follows changes how fast the loss
# and AdamW run, never what they compute. These are the package's `cross_entropy` and `AdamW`, the
# ones the training loop uses; then come the loop's switches that turn the rest on.
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
#
# Under bf16 autocast the loop passes `matmul_dtype=torch.bfloat16`: the chunk's three matmuls
# (logits, and the two gradients) run in bf16, as autocast would run an unchunked output layer,
# while the softmax, the sums and the gradient buffers stay in float32. Before, this layer alone
# stayed in float32 and took about 40% of a bf16 step; now the `cpu` preset's compiled bf16 step
# at two threads takes 160 instead of 193 ms (float32: 284 ms; `uv run python
# benchmarks/bench_precision_threads.py --fp32-output-layer`, one run, `benchmarks/RESULTS.md`).

# %%
#| export
class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` (softcapped if ``cap``) over (n, d) rows, ``rows`` at a time."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int,
                cap: float, matmul_dtype: torch.dtype) -> torch.Tensor:
        n = hidden.shape[0]
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if want_grad else None
        grad_weight = torch.zeros_like(weight) if want_grad else None
        total = hidden.new_zeros(())
        hidden_mm, weight_mm = hidden.to(matmul_dtype), weight.to(matmul_dtype)  # no copy when equal
        for start in range(0, n, rows):
            h, t = hidden_mm[start:start + rows], targets[start:start + rows]
            logits = (h @ weight_mm.T).to(hidden.dtype)  # (rows, vocab), small enough to stay in cache
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
                if matmul_dtype == hidden.dtype:  # straight into the gradient buffers
                    torch.mm(probs, weight, out=grad_hidden[start:start + rows])
                    grad_weight.addmm_(probs.T, h)
                else:  # low-precision products, summed in the higher precision
                    probs_mm = probs.to(matmul_dtype)
                    grad_hidden[start:start + rows] = probs_mm @ weight_mm
                    grad_weight += probs_mm.T @ h
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.n = n
        return total / n

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad / ctx.n
        return (grad_hidden * scale if ctx.needs_input_grad[0] else None,
                grad_weight * scale if ctx.needs_input_grad[1] else None, None, None, None, None)


@torch.compiler.disable  # eager on purpose: a compiled version measured no faster (the matmuls dominate)
def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         rows_per_chunk: int = 128, softcap: float = 0.0,
                         matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``cross_entropy(hidden @ weight.T, targets)`` without ever holding all the logits.

    ``softcap > 0``: the loss of the capped logits ``softcap * tanh(hidden @ weight.T / softcap)``,
    as ``TransformerLM(logit_softcap=...)`` computes them.

    hidden: (..., d_model); weight: (vocab, d_model), the output layer's; targets: (...) ids.
    Works through ``rows_per_chunk`` positions at a time and computes the gradients of hidden and
    weight during the forward pass (the loss's gradient is known in closed form), so the backward
    pass is a multiplication. Computed in float32 (half-precision inputs are upcast, autocast is
    off inside). ``matmul_dtype=torch.bfloat16`` runs the three matmuls (logits, and the gradients of
    hidden and weight) in bf16, as autocast runs every other Linear, and keeps the softmax, the sums
    and the gradient buffers in float32: 2-3x faster matmuls on a CPU or GPU with native bf16.
    ``hidden`` and ``weight`` must be on the same device.

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
                                         targets.reshape(-1).long(), rows_per_chunk, float(softcap),
                                         matmul_dtype or dtype)


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
# The same weights as `PlainAdamW` after the 20 steps of `fit` (and so as torch's).
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
# ### The loop's switches for speed
#
# Three switches make the training loop of notebook 04b faster without changing what it computes
# (up to rounding):
#
# * `run.compile = true` runs the model and the loss through `torch.compile` (and AdamW's update,
#   above): in the `cpu` preset, 1.3x the steps per second once the graph has no breaks, after a
#   first step that compiles for 10–30 s; the compiled update alone gave about 3% more tokens/s.
# * `run.loss_chunk_rows = 128` stops the model at its hidden states and computes the output
#   layer and the loss 128 positions at a time (`linear_cross_entropy`, above): in the `cpu`
#   preset 10,400 → 11,100 tokens/s, 4,500 instead of 3,900 steps in its 15 minutes.
# * `run.precision = "bf16"` runs the forward pass under bf16 autocast: on GPUs, and on CPUs with
#   AMX, bf16 matmuls can be several times faster; this CPU has AVX-512 BF16 but no AMX, and its bf16
#   matmuls ran at half speed, so the `cpu` preset stays fp32.
#
# A check that they compute the same: ten steps of the `smoke` preset on random tokens with each
# switch, against ten without, step by step (compiling takes a while on 2 cores, so that one only
# outside smoke mode).

# %%
from cs336_basics.config import load_config
from cs336_basics.runs import RunFolder
from cs336_basics.train import train

ids = np.random.default_rng(0).integers(0, 256, size=60_000, dtype=np.uint16)  # the preset's vocabulary: 320
np.save(TMP / "train.npy", ids[:50_000]); np.save(TMP / "valid.npy", ids[50_000:])


def step_losses(name, *changes):
    """The training loss of each of the smoke preset's first ten steps, with ``changes``."""
    cfg = load_config(ROOT / "configs" / "smoke.toml", [
        f"data.train_tokens={TMP / 'train.npy'}", f"data.valid_tokens={TMP / 'valid.npy'}",
        f"run.out_dir={TMP / name}", "run.progress=false", "schedule.max_steps=10", "run.log_every=1",
        "run.eval_every=10", "run.checkpoint_every=10", *changes])
    lines = RunFolder(train(cfg)).metrics.read_text().splitlines()
    return np.array([r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r])


# %%
plain_losses = step_losses("ten_steps")
switches = {"run.loss_chunk_rows=64": step_losses("chunked", "run.loss_chunk_rows=64")}
if not SMOKE:
    switches["run.compile=true"] = step_losses("compiled", "run.compile=true")
for switch, losses in switches.items():
    print(f"{switch}: max |loss difference| over 10 steps {np.abs(losses - plain_losses).max():.1e}")
    assert np.allclose(losses, plain_losses, atol=1e-3)

# %% [markdown]
# ### At GPU scale
#
# The GPU presets switch on all of the speed above that pays on a GPU. The cells below launch them
# with `cs336 train` as subprocesses (they need a GPU and the tokenised datasets, so the test
# suite skips them):
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
# ## 2 · Making it better
#
# Three changes that alter what a run computes, for a lower loss at the same cost: which windows
# it reads, which weights it evaluates, and how far each kind of weight moves per step. All three
# are switches of the training loop, off in the handout's setup and on in the `cpu` preset.
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
# ### A learning rate per parameter group
#
# Adam moves every weight by about `lr` per step, whatever the weight's size. That suits the hidden
# matrices (initial std ~0.07) but not the token embeddings, which start at std 1 and learn only on
# the steps where their token occurs. So the optimizer gets parameter groups, each with an
# `lr_scale` that the loop multiplies into the scheduled learning rate. The handout's setup is the
# default (every scale 1); the `cpu` preset trains the embeddings 15x and the output layer 5x faster
# than the rest. On the English stand-in, x30 and x5 lowered the validation loss of a 400-second,
# one-thread run from 4.44 to 4.31 nats/token (`benchmarks/sweep_cpu_preset.py`); over the whole
# 15-minute run the embeddings did best at x15 (1.5545 bits per byte, against 1.557 at x30 and
# 1.561 at x10). In every run, scaled or not, the groups also keep weight decay off the RMSNorm
# gains: that is the one difference between `train()` and the plain loop of notebook 04b §2 (given
# these groups, the plain loop ended at `train()`'s validation loss to within 1e-7 when this was
# written).

# %%
#| default_exp train

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

    The bigram table (``model.bigram_buckets``) trains with the embeddings, unless
    ``bigram_lr_scale`` or ``bigram_weight_decay`` is set: then it is a group of its own. Most of its
    rows see a gradient on few steps, and Adam's momentum keeps moving a row for ~10 steps after
    each one, so it may want a smaller rate, or a decay that forgets rows not seen for a while.
    """
    embedding = model.token_embeddings.weight
    head = model.lm_head.weight
    tied = embedding is head
    value_table, bigram_table = (getattr(model, name, None) for name in ("value_embeddings", "bigram_embeddings"))
    bigram_apart = bigram_table is not None and bool(o.bigram_lr_scale or o.bigram_weight_decay)
    # the value_embedding and bigram_buckets switches' lookup tables, trained as embeddings
    extra_tables = [value_table] + ([] if bigram_apart else [bigram_table])
    tables = ([] if tied else [embedding]) + [table.weight for table in extra_tables if table is not None]
    apart = [bigram_table.weight] if bigram_apart else []
    matrices = [p for p in model.parameters() if p.ndim >= 2 and all(p is not t for t in (head, *tables, *apart))]
    gains = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": matrices, "weight_decay": o.weight_decay, "lr_scale": 1.0},
        {"params": gains, "weight_decay": 0.0, "lr_scale": 1.0},
        {"params": [head], "weight_decay": o.weight_decay if o.head_lr_scale == 1.0 else 0.0,
         "lr_scale": o.head_lr_scale},
    ]
    if tables:  # the embedding tables (the token one unless tied to the head)
        embedding_decay = o.weight_decay if o.embedding_lr_scale == 1.0 else 0.0
        groups.append({"params": tables, "weight_decay": embedding_decay, "lr_scale": o.embedding_lr_scale})
    if apart:
        groups.append({"params": apart, "weight_decay": o.bigram_weight_decay,
                       "lr_scale": o.bigram_lr_scale or o.embedding_lr_scale})
    return [g for g in groups if g["params"]]


# %%
from cs336_basics.model import TransformerLM

_lm = TransformerLM(vocab_size=256, context_length=16, d_model=32, num_layers=2, num_heads=2, d_ff=64)
_o = OptimConfig(embedding_lr_scale=30.0, head_lr_scale=5.0)
for _g in optimizer_groups(_lm, _o):
    print(f"{sum(p.numel() for p in _g['params']):>6} weights  lr_scale {_g['lr_scale']:>4}  weight_decay {_g['weight_decay']}")

# %% [markdown]
# ## What the next notebook needs
#
# Nothing new: notebook 05 samples text from a run that `train()` wrote, with whichever of these
# switches it had on. With `optim.ema_halflife > 0` the model that `runs.load_model_from_run`
# gives back holds the weight average, so samples and `cs336 generate` use it too.
