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
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · The Transformer language model, from scratch
#
# This notebook builds the decoder-only Transformer LM of the handout's section 3, one piece at a
# time, the plain way a student would write it from the handout (a few lines of tensor operations,
# autograd for the backward pass, a full (seq, seq) causal mask), and checks every piece against
# PyTorch's own implementation right after writing it. That is a complete, correct model.
# Notebook **02b · Making it fast** then writes faster versions of five small functions the layers
# call, checks the KV cache, and explains the leaderboard recipe's switches.
#
# * `cs336_basics/nn.py`: `Linear`, `Embedding`, `RMSNorm`, `silu`, `SwiGLU`,
#   `RotaryPositionalEmbedding`, `CausalMultiHeadSelfAttention`, `TransformerBlock`.
# * `cs336_basics/model.py`: `TransformerLM` (with the switches for the handout's ablations of
#   section 7.3 and for the leaderboard recipe) and `KVCache` for fast decoding.
#
# From scratch means: inside the package, no `torch.nn.functional`, no `torch.nn` layers; tensors,
# `nn.Parameter`, `nn.Module` and `torch.nn.init` are all we use. The checks *may* use
# `torch.nn.functional`: it is our oracle.

# %%
import math
import os
from pathlib import Path
import tempfile

SMOKE = os.environ.get("CS336_SMOKE") == "1"
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
FIGURES = Path(tempfile.mkdtemp()) if SMOKE else ROOT / "figures"
FIGURES.mkdir(exist_ok=True)

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F  # the oracle, never used by the exported code

_ = torch.manual_seed(0)

# %%
#| default_exp nn

# %% [markdown]
# ## Conventions
#
# Every module takes `device=` and `dtype=` so that parameters are created where they will live
# (no CPU allocation followed by a copy to the GPU). Shapes are written `(batch, seq, d_model)`;
# every layer accepts any number of leading "batch-like" dimensions, because the same operation is
# applied to every batch element, position and head.
#
# The layers do their arithmetic in five functions: `rms_norm`, `silu_gate`, `softmax`,
# `scaled_dot_product_attention` and `causal_attention`. We write the plain version of each in a
# cell that is not exported; the package's `nn.py` imports (next cell) faster versions with the
# same names and results from `cs336_basics.kernels` (notebook 02b), and re-exports two of them.

# %%
#| export
"""Transformer building blocks, from scratch: no torch.nn.functional and no torch.nn layers.

The layers' arithmetic comes from ``kernels.py`` (notebooks/02b_model_fast): faster versions of the
plain functions of notebooks/02_model, equal to them in values and gradients.

Every module takes ``device=`` and ``dtype=`` and accepts any leading batch-like dimensions::

    >>> layer = Linear(4, 3)
    >>> layer(torch.ones(2, 5, 4)).shape          # (batch, seq, d_in) -> (batch, seq, d_out)
    torch.Size([2, 5, 3])
"""

from __future__ import annotations

import math
import typing
from typing import Literal

import torch
from torch import nn

# the fast versions (notebook 02b); softmax and scaled_dot_product_attention are re-exported from here
from cs336_basics.kernels import QUERY_BLOCK, causal_attention, rms_norm, scaled_dot_product_attention  # noqa: F401
from cs336_basics.kernels import silu_gate, softmax  # noqa: F401

# %% [markdown]
# ## Linear
#
# A linear layer without bias computes $y = Wx$. We store $W$ as `(out_features, in_features)`,
# the same layout as `torch.nn.Linear`, so that a row-major input `x` of shape `(..., d_in)` is
# multiplied as `x @ W.T`. The handout's initialisation is a normal distribution with variance
# $2/(d_\text{in}+d_\text{out})$, truncated at three standard deviations: it keeps the variance of
# activations roughly constant through the layer in both directions (forward and backward).

# %%
#| export
class Linear(nn.Module):
    """y = x W^T without bias; ``weight`` has shape (out_features, in_features).

    >>> Linear(8, 2)(torch.zeros(3, 8)).shape    # (..., in_features) -> (..., out_features)
    torch.Size([3, 2])
    """

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        std = math.sqrt(2.0 / (in_features + out_features))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # matmul folds the leading dims into one (rows, d_in) @ (d_in, d_out) product: one GEMM
        return x @ self.weight.T

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

# %% [markdown]
# Check: the same weight gives the same output as `F.linear`, and the initial weights have the
# standard deviation we asked for and nothing beyond 3σ.

# %%
layer = Linear(64, 32)
x = torch.randn(2, 5, 64)
assert torch.allclose(layer(x), F.linear(x, layer.weight), atol=1e-6)
std = (2 / (64 + 32)) ** 0.5
print(f"weight std {layer.weight.std():.4f} (target {std:.4f}), max |w|/std = {layer.weight.abs().max() / std:.2f} <= 3")

# %% [markdown]
# ## Embedding
#
# The embedding is a lookup table of shape `(vocab_size, d_model)`: indexing the weight with an
# integer tensor of ids of any shape selects their rows. An id outside the table would surface as an
# opaque index error (or a device-side assert on a GPU), so we check the range and say what is wrong.

# %%
#| export
class Embedding(nn.Module):
    """Look up a d-dimensional vector per token id; ``weight`` has shape (num_embeddings, embedding_dim).

    >>> Embedding(10, 4)(torch.tensor([[1, 2, 3]])).shape     # (batch, seq) -> (batch, seq, d)
    torch.Size([1, 3, 4])
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.weight[check_token_ids(token_ids, self.num_embeddings)]

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


def check_token_ids(token_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Return ``token_ids`` as an int64/int32 index tensor; ValueError unless integer ids in [0, vocab_size)."""
    if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex or token_ids.dtype == torch.bool:
        raise ValueError(f"token ids must be an integer tensor (torch.long), got dtype {token_ids.dtype}")
    if token_ids.dtype not in (torch.int64, torch.int32):
        token_ids = token_ids.long()  # uint8 would index as a boolean mask, uint16 not at all
    if token_ids.numel() == 0 or torch.compiler.is_compiling():
        return token_ids  # under torch.compile a data-dependent check would split the graph
    lo, hi = torch.aminmax(token_ids)
    lo, hi = int(lo), int(hi)
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}) (the vocabulary size), but they range over "
            f"[{lo}, {hi}]; encode with the tokenizer that matches this model, or build the model "
            f"with a larger vocab_size"
        )
    return token_ids

# %%
emb = Embedding(100, 16)
ids = torch.randint(0, 100, (3, 7))
assert torch.equal(emb(ids), F.embedding(ids, emb.weight))
try:
    emb(torch.tensor([[5, 100]]))
except ValueError as e:
    print("ValueError:", e)

# %% [markdown]
# ## RMSNorm
#
# RMSNorm rescales each vector by its root mean square and multiplies by a learned gain $g$:
# $a_i / \sqrt{\frac1d\sum_j a_j^2 + \varepsilon} \cdot g_i$. Squaring can overflow in 16-bit
# floats, so we compute in float32 and cast back to the input's dtype at the end. `rsqrt` gives
# $1/\sqrt{\cdot}$ in one kernel. The arithmetic is a function; the module holds the gain.

# %%
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / RMS(x) * weight over the last dim, computed in float32, returned in x's dtype."""
    x32 = x.float()
    inv_rms = torch.rsqrt(x32.square().mean(dim=-1, keepdim=True) + eps)
    return (x32 * inv_rms * weight).to(x.dtype)

# %%
#| export
class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension, with a learned gain (init 1).

    Computes in float32 and returns the input dtype. (..., d_model) -> (..., d_model).

    >>> RMSNorm(4)(torch.tensor([[3.0, -3.0, 3.0, -3.0]])).round(decimals=4).tolist()   # rms is 3 (eps aside)
    [[1.0, -1.0, 1.0, -1.0]]
    """

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}"

# %% [markdown]
# Check against `F.rms_norm` in float32 and bfloat16 (we must return bfloat16), gradients too.

# %%
norm = RMSNorm(16)
with torch.no_grad():
    norm.weight.uniform_(0.5, 1.5)
x = torch.randn(4, 3, 16) * 10
assert torch.allclose(norm(x), F.rms_norm(x, (16,), norm.weight, eps=1e-5), atol=1e-5)
xb = x.bfloat16()
out_b = norm(xb)
assert out_b.dtype == torch.bfloat16
print("max |ours - F.rms_norm| in bf16:",
      (out_b.float() - F.rms_norm(xb.float(), (16,), norm.weight, eps=1e-5)).abs().max().item())
x.requires_grad_()
g = torch.randn_like(x)
ours = torch.autograd.grad(norm(x), (x, norm.weight), g)
ref = torch.autograd.grad(F.rms_norm(x, (16,), norm.weight, eps=1e-5), (x, norm.weight), g)
assert all(torch.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(ours, ref))

# %% [markdown]
# ## The feed-forward network: SiLU and SwiGLU
#
# SiLU is $x\,\sigma(x)$: smooth, almost ReLU for large $|x|$.

# %%
#| export
def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU (swish): x * sigmoid(x), elementwise. silu(0) = 0, silu(x) -> x for large x."""
    return x * torch.sigmoid(x)

# %% [markdown]
# SwiGLU gates it with a second linear map: $\text{FFN}(x) = W_2(\text{SiLU}(W_1x) \odot W_3x)$.
# The gate $\text{SiLU}(a) \odot b$ is the function `silu_gate`. The inner width $d_\text{ff}$ is
# about $\frac83 d_\text{model}$ (three matrices instead of two keep the parameter count of a
# $4d_\text{model}$ two-matrix FFN), rounded to a multiple of 64 for the hardware.
#
# For the handout's SwiGLU-vs-SiLU ablation we also need the ungated FFN
# $W_2\,\text{SiLU}(W_1x)$, with $d_\text{ff} = 4d_\text{model}$ to match parameters (and its
# sibling `ffn="relu2"`, one of the leaderboard recipe's switches of notebook 02b).

# %%
def silu_gate(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The SwiGLU gate silu(a) * b, elementwise (a, b of the same shape)."""
    return silu(a) * b

# %%
#| export
def default_d_ff(d_model: int, ffn: str = "swiglu") -> int:
    """The FFN inner width: ~8/3 d_model rounded to a multiple of 64 for SwiGLU, 4 d_model for SiLU, ReLU².

    >>> default_d_ff(512), default_d_ff(512, "silu"), default_d_ff(512, "relu2")
    (1344, 2048, 2048)
    """
    if ffn in ("silu", "relu2"):
        return 4 * d_model
    return max(64, 64 * round(8 * d_model / 3 / 64))


class SwiGLU(nn.Module):
    """Gated feed-forward network W2(silu(W1 x) * W3 x). (..., d_model) -> (..., d_model)."""

    def __init__(self, d_model: int, d_ff: int | None = None, device=None, dtype=None):
        super().__init__()
        d_ff = default_d_ff(d_model) if d_ff is None else d_ff
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(silu_gate(self.w1(x), self.w3(x)))


class SiLUFeedForward(nn.Module):
    """Ungated feed-forward network W2 silu(W1 x), the handout's SwiGLU ablation (d_ff = 4 d_model)."""

    def __init__(self, d_model: int, d_ff: int | None = None, device=None, dtype=None):
        super().__init__()
        d_ff = default_d_ff(d_model, "silu") if d_ff is None else d_ff
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(silu(self.w1(x)))


class ReLU2FeedForward(SiLUFeedForward):
    """Ungated feed-forward network W2 relu(W1 x)^2 (d_ff = 4 d_model): ``ffn="relu2"``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.w1(x).clamp(min=0).square())

# %%
x = torch.linspace(-5, 5, 101)
assert torch.allclose(silu(x), F.silu(x), atol=1e-6)
ffn = SwiGLU(64)
x = torch.randn(2, 3, 64)
expected = F.linear(F.silu(F.linear(x, ffn.w1.weight)) * F.linear(x, ffn.w3.weight), ffn.w2.weight)
assert torch.allclose(ffn(x), expected, atol=1e-5)
relu2 = ReLU2FeedForward(64)
assert torch.allclose(relu2(x), F.linear(F.relu(F.linear(x, relu2.w1.weight)) ** 2, relu2.w2.weight), atol=1e-5)
print({d: default_d_ff(d) for d in (64, 256, 512, 768, 1024, 1600)}, "(d_model -> SwiGLU d_ff)")

# %% [markdown]
# ## Rotary positional embeddings (RoPE)
#
# RoPE encodes position by rotating each adjacent pair $(x_{2k}, x_{2k+1})$ of a query or key
# vector at position $i$ by the angle $\theta_{i,k} = i / \Theta^{2k/d}$. The dot product of a
# rotated query and key then depends only on their *relative* position. The pairs rotate at
# geometrically spaced frequencies, from one radian per token down to $\Theta^{-(d-2)/d}$.
#
# The angles never change, so `cos` and `sin` are computed once, `(max_seq_len, d_k/2)`, as
# non-persistent buffers (they follow `.to(device)`, the state dict leaves them out);
# `token_positions` select the rows and broadcast against any leading dimensions of `x`. Each pair
# $(a, b)$ is read as the complex number $a + ib$: rotating it by $\theta$ is multiplying by
# $e^{i\theta}$, one kernel instead of six elementwise operations (7x faster forward+backward on
# this CPU). bfloat16 has no complex type, so 16-bit inputs are rotated in float32.

# %%
#| export
class RotaryPositionalEmbedding(nn.Module):
    """Rotate adjacent pairs (x[2k], x[2k+1]) of the last dim by angle position / theta^(2k/d_k).

    forward(x (..., seq, d_k), token_positions (..., seq)) -> (..., seq, d_k). No parameters.

    >>> rope = RotaryPositionalEmbedding(10000.0, d_k=4, max_seq_len=8)
    >>> rope(torch.ones(1, 3, 4), torch.arange(3)).shape
    torch.Size([1, 3, 4])
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None):
        super().__init__()
        if d_k % 2:
            raise ValueError(
                f"RoPE rotates pairs of dimensions, so the per-head dimension d_k must be even; got "
                f"d_k={d_k}. Pick num_heads so that d_model / num_heads is even, or use positional='none'"
            )
        self.theta, self.d_k, self.max_seq_len = theta, d_k, max_seq_len
        # angles in float64 so that long contexts keep their precision, stored as float32
        inv_freq = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float64, device=device) / d_k)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64, device=device), inv_freq)
        self.register_buffer("cos", angles.cos().float(), persistent=False)  # (max_seq_len, d_k/2)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, token_positions: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_k:
            raise ValueError(f"RoPE was built for d_k={self.d_k} but the input's last dim is {x.shape[-1]}")
        if not torch.compiler.is_compiling() and token_positions.numel():
            if int(token_positions.max()) >= self.max_seq_len or int(token_positions.min()) < 0:
                raise ValueError(
                    f"token positions must lie in [0, {self.max_seq_len}) (max_seq_len); got "
                    f"[{int(token_positions.min())}, {int(token_positions.max())}]"
                )
        return self.rotate(x, self.cos[token_positions], self.sin[token_positions])

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate the pairs of x (..., seq, d) by angles given as cos, sin (..., seq, d/2).

        The pair (a, b) is the complex number a + ib; turning it by angle t is multiplying by
        cos t + i sin t. One complex multiply is one kernel (forward and backward), where the
        real-arithmetic form (a cos - b sin, a sin + b cos) costs six elementwise ops and a stack
        in eager mode; under torch.compile we use that real form, which the compiler fuses.
        """
        work = torch.float64 if x.dtype == torch.float64 else torch.float32  # no complex bfloat16
        if torch.compiler.is_compiling() or x.device.type == "mps":
            # the compiler fuses real arithmetic (not complex) into one kernel; MPS lacks some complex ops
            return rotate_pairs_real(x.to(work), cos.to(work), sin.to(work)).to(x.dtype)
        pairs = x.to(work).unflatten(-1, (-1, 2))
        if pairs.stride(-1) != 1 or pairs.storage_offset() % 2 or any(st % 2 for st in pairs.stride()[:-1]):
            pairs = pairs.contiguous()  # view_as_complex needs each (a, b) pair adjacent and aligned
        turned = torch.view_as_complex(pairs) * torch.complex(cos.to(work), sin.to(work))
        return torch.view_as_real(turned).flatten(-2).to(x.dtype)

    def extra_repr(self) -> str:
        return f"theta={self.theta}, d_k={self.d_k}, max_seq_len={self.max_seq_len}"


def rotate_pairs_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The same rotation in real arithmetic: (a, b) -> (a cos - b sin, a sin + b cos)."""
    x_even, x_odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1).flatten(-2)

# %% [markdown]
# Check against the handout's definition, written independently: the block-diagonal rotation
# matrix $R^i$ of 2×2 blocks $\begin{pmatrix}\cos & -\sin\\ \sin & \cos\end{pmatrix}$ per
# position. The first pairs turn quickly (nearby tokens), the last barely move (long-range position).

# %%
def rope_matrix(x, positions, theta):
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions[..., None].double() * freqs                       # (..., seq, d/2)
    c, s = angles.cos(), angles.sin()
    blocks = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)  # (..., seq, d/2, 2, 2)
    R = torch.zeros(*angles.shape[:-1], d, d, dtype=torch.float64)
    for k in range(d // 2):
        R[..., 2 * k : 2 * k + 2, 2 * k : 2 * k + 2] = blocks[..., k, :, :]
    return (R @ x.double()[..., None]).squeeze(-1).float()

rope = RotaryPositionalEmbedding(10000.0, d_k=16, max_seq_len=64)
x = torch.randn(2, 4, 10, 16)                     # (batch, heads, seq, d_k)
pos = torch.randint(0, 64, (2, 1, 10))            # broadcasts over heads
assert torch.allclose(rope(x, pos), rope_matrix(x, pos, 10000.0), atol=1e-5)
# relative: <R_i q, R_j k> depends on i - j only
q, k = torch.randn(16), torch.randn(16)
dots = [rope(q[None], torch.tensor([i])) @ rope(k[None], torch.tensor([i - 3])).T for i in (3, 10, 40)]
print("q·k at distance 3 from three absolute positions:", [round(d.item(), 4) for d in dots])

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
big = RotaryPositionalEmbedding(10000.0, d_k=64, max_seq_len=256)
axes[0].semilogy(1 / 10000.0 ** (torch.arange(0, 64, 2) / 64), "o-")
axes[0].set(title="RoPE frequency per pair (d_k=64)", xlabel="pair k", ylabel="radians per token")
axes[1].imshow(big.cos.T, aspect="auto", cmap="RdBu")
axes[1].set(title="cos(angle): pair k × position", xlabel="position", ylabel="pair k")
fig.tight_layout()
fig.savefig(FIGURES / "rope_frequencies.png", dpi=100)

# %% [markdown]
# ## Softmax
#
# $\text{softmax}(v)_i = e^{v_i} / \sum_j e^{v_j}$. Subtracting the row's maximum first changes
# nothing mathematically but keeps `exp` from overflowing. One more case matters for attention: a
# row where every entry is $-\infty$ (a query that may attend to nothing). Plain softmax gives
# $0/0 = \text{NaN}$ there, which would poison everything downstream; we return zeros instead.

# %%
def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along ``dim``; a row of all -inf gives zeros (not NaN)."""
    row_max = x.amax(dim=dim, keepdim=True)
    row_max = row_max.masked_fill(row_max == -math.inf, 0.0)  # all -inf: exp gives zeros
    e = (x - row_max).exp()
    total = e.sum(dim=dim, keepdim=True)
    return e / total.masked_fill(total == 0, 1.0)

# %% [markdown]
# Check: equal to `torch.softmax` (values and gradients), stable for huge inputs, and zeros for a
# fully masked row.

# %%
x = torch.randn(3, 5, 7, requires_grad=True)
g = torch.randn(3, 5, 7)
for dim in (0, 1, -1):
    ours, = torch.autograd.grad(softmax(x, dim), x, g)
    ref, = torch.autograd.grad(torch.softmax(x, dim), x, g)
    assert torch.allclose(softmax(x, dim), torch.softmax(x, dim), atol=1e-6) and torch.allclose(ours, ref, atol=1e-6)
assert torch.allclose(softmax(torch.tensor([1e4, 1e4 - 1]), 0), torch.softmax(torch.tensor([1.0, 0.0]), 0))
print(softmax(torch.tensor([[0.0, -math.inf], [-math.inf, -math.inf]]), dim=-1))

# %% [markdown]
# ## Scaled dot-product attention
#
# $\text{Attention}(Q,K,V) = \text{softmax}(QK^\top/\sqrt{d_k})\,V$, batched over any leading
# dimensions. A boolean mask says which keys each query may see (`True` = attend); the blocked
# scores become $-\infty$ before the softmax, so their probability is exactly 0.

# %%
def scaled_dot_product_attention(
    Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_k)) V; Q (..., queries, d_k), K (..., keys, d_k), V (..., keys, d_v)."""
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])    # (..., queries, keys)
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    return softmax(scores, dim=-1) @ V

# %%
Q, K, V = torch.randn(2, 3, 6, 8), torch.randn(2, 3, 9, 8), torch.randn(2, 3, 9, 5)
mask = torch.rand(6, 9) > 0.3
mask[:, 0] = True  # every query sees at least one key, so the oracle has no NaN either
assert torch.allclose(scaled_dot_product_attention(Q, K, V, mask), F.scaled_dot_product_attention(Q, K, V, attn_mask=mask), atol=1e-5)
causal = torch.ones(6, 6, dtype=torch.bool).tril()
probs = softmax(Q[0, 0] @ K[0, 0, :6].T / 8**0.5 + torch.zeros(6, 6).masked_fill(~causal, -math.inf))
fig, ax = plt.subplots(figsize=(3, 3))
ax.imshow(probs.detach(), cmap="Blues")
ax.set(title="causal attention weights", xlabel="key", ylabel="query")
fig.savefig(FIGURES / "attention_pattern.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## Causal multi-head self-attention
#
# Each of $h$ heads attends with its own $d_k = d_\text{model}/h$ slice of the projected queries,
# keys and values; the heads are concatenated and mixed by the output projection. The heads are
# just one more batch dimension: `(batch, seq, d_model) -> (batch, heads, seq, d_k)`.
#
# * The state dict keeps the assignment's separate `q_proj`, `k_proj`, `v_proj`, but the forward
#   pass concatenates them for **one** matmul (9.1 vs 10.3 ms for three, `benchmarks/bench_model.py`).
# * RoPE is applied to queries and keys, the same rotation for every head. With `positional="none"`
#   (the NoPE ablation) the causal mask alone must tell the model where it is.
# * For decoding, a `kv_cache` (`model.KVCache`) keeps the keys and values of earlier positions;
#   new queries attend to all of them, and positions continue at `start = kv_cache.length`.
#
# The causal mask lets the query at position $i$ see keys $0..i$: a lower-triangular boolean matrix
# made per call, `start` columns wider on the left when positions are cached. (`attn.query_block`
# is for notebook 02b's fast version, which skips the scores this mask throws away.)

# %%
def causal_attention(q, k, v, start: int = 0, query_block: int | None = None) -> torch.Tensor:
    """q (..., seq, d_k) at positions start.. attend to k, v (..., start + seq, d) up to their own."""
    seq = q.shape[-2]
    mask = torch.ones(seq, start + seq, dtype=torch.bool, device=q.device).tril(diagonal=start)
    return scaled_dot_product_attention(q, k, v, mask)

# %%
#| export
class CausalMultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention with optional RoPE. (batch, seq, d_model) -> (batch, seq, d_model).

    Parameters: q_proj, k_proj, v_proj (d_model -> d_model) and output_proj; d_k = d_v = d_model / num_heads.
    ``max_seq_len``/``theta`` size the RoPE tables; ``positional="none"`` disables RoPE (NoPE).
    ``qk_norm=True`` adds q_norm, k_norm: RMSNorm(d_k) on every head's queries and keys, before RoPE.
    ``value_embedding=True`` adds value_scale (one number, 0.5 at first): forward's ``value_embeds``
    (..., seq, d_model), a token embedding looked up by the model, times it, is added to the values.
    """

    def __init__(self, d_model: int, num_heads: int, max_seq_len: int | None = None, theta: float = 10000.0, *,
                 positional: str = "rope", qk_norm: bool = False, value_embedding: bool = False, device=None,
                 dtype=None):
        super().__init__()
        if num_heads <= 0 or d_model % num_heads:
            raise ValueError(
                f"d_model ({d_model}) must be divisible by num_heads ({num_heads}) so that every head "
                f"gets d_k = d_model / num_heads dimensions; pick e.g. num_heads in "
                f"{[h for h in range(1, min(d_model, 64) + 1) if d_model % h == 0][-6:]}"
            )
        if positional not in ("rope", "none"):
            raise ValueError(f"positional must be 'rope' or 'none', got {positional!r}")
        self.d_model, self.num_heads, self.d_k = d_model, num_heads, d_model // num_heads
        self.query_block = QUERY_BLOCK  # the fast causal_attention's query block; None: dense
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.q_norm = RMSNorm(self.d_k, device=device, dtype=dtype) if qk_norm else None
        self.k_norm = RMSNorm(self.d_k, device=device, dtype=dtype) if qk_norm else None
        self.value_scale = nn.Parameter(torch.full((1,), 0.5, device=device, dtype=dtype)) if value_embedding else None
        self.rope = None
        if positional == "rope":
            if max_seq_len is None:
                raise ValueError("RoPE needs max_seq_len (the longest sequence the model will see)")
            self.rope = RotaryPositionalEmbedding(theta, self.d_k, max_seq_len, device=device)

    def forward(self, x: torch.Tensor, token_positions: torch.Tensor | None = None, kv_cache=None,
                layer: int = 0, value_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """x (..., seq, d_model); token_positions (..., seq) default to start, start+1, ...

        ``kv_cache`` (a ``model.KVCache``): attend to its cached keys/values for ``layer`` too and
        append this call's; positions start at ``kv_cache.length``. ``value_embeds`` (..., seq,
        d_model): needed exactly when the attention was built with ``value_embedding=True``.
        """
        *lead, seq, _ = x.shape
        h, d_k = self.num_heads, self.d_k
        start = 0 if kv_cache is None else kv_cache.length
        # one matmul for q, k and v: (..., seq, 3 d_model) -> 3 x (..., heads, seq, d_k)
        w_qkv = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))
        qkv = (x @ w_qkv.T).unflatten(-1, (3, h, d_k)).movedim(-3, 0).transpose(-3, -2)
        q, k, v = qkv.unbind(0)
        if (value_embeds is None) != (self.value_scale is None):
            raise ValueError("value_embeds must be given exactly when the attention has value_embedding=True")
        if value_embeds is not None:  # (before the cache: a position's value depends on its own token only)
            v = v + self.value_scale * value_embeds.unflatten(-1, (h, d_k)).transpose(-3, -2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if token_positions is None:
                if start + seq > self.rope.max_seq_len:
                    raise ValueError(
                        f"positions {start}..{start + seq - 1} exceed max_seq_len={self.rope.max_seq_len}"
                    )
                cos, sin = self.rope.cos[start : start + seq], self.rope.sin[start : start + seq]
                q, k = self.rope.rotate(q, cos, sin), self.rope.rotate(k, cos, sin)
            else:
                positions = token_positions.unsqueeze(-2)  # (..., 1, seq): same rotation for every head
                q, k = self.rope(q, positions), self.rope(k, positions)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)
        out = causal_attention(q, k, v, start, self.query_block)  # (..., heads, seq, d_k)
        return self.output_proj(out.transpose(-3, -2).reshape(*lead, seq, self.d_model))

# %% [markdown]
# Check against `F.scaled_dot_product_attention(is_causal=True)` on the same projections, with a
# 4-D input (two batch-like dims) and with RoPE applied by the oracle RoPE of the previous section.

# %%
def mha_oracle(x, attn, positions=None):
    *lead, s, d = x.shape
    h = attn.num_heads
    split = lambda t: t.reshape(*lead, s, h, d // h).transpose(-3, -2)
    q, k, v = (split(F.linear(x, p.weight)) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    if attn.q_norm is not None:  # qk_norm: RMSNorm over each head's d_k dimensions, before RoPE
        q, k = (F.rms_norm(t, (d // h,), n.weight, eps=1e-5) for t, n in ((q, attn.q_norm), (k, attn.k_norm)))
    if positions is not None:
        q, k = rope_matrix(q, positions, 10000.0), rope_matrix(k, positions, 10000.0)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(out.transpose(-3, -2).reshape(*lead, s, d), attn.output_proj.weight)

attn = CausalMultiHeadSelfAttention(32, 4, max_seq_len=16)
x = torch.randn(2, 3, 10, 32)
assert torch.allclose(attn(x), mha_oracle(x, attn, torch.arange(10)), atol=1e-5)
nope = CausalMultiHeadSelfAttention(32, 4, positional="none")
nope.load_state_dict(attn.state_dict())
assert torch.allclose(nope(x), mha_oracle(x, nope), atol=1e-5)
qk = CausalMultiHeadSelfAttention(32, 4, max_seq_len=16, qk_norm=True)
qk.q_norm.weight.data.uniform_(0.5, 1.5)
assert torch.allclose(qk(x), mha_oracle(x, qk, torch.arange(10)), atol=1e-5)
print(sorted(attn.state_dict()))

# %% [markdown]
# ## The Transformer block, and its ablations
#
# A pre-norm block normalises the *input* of each sub-layer and adds the sub-layer's output to a
# clean residual stream: $z = x + \text{MHA}(\text{RMSNorm}(x))$, $y = z + \text{FFN}(\text{RMSNorm}(z))$.
# The handout's section 7.3 asks for three variants, selected by keyword:
# `norm="post"` (the original Transformer: $z = \text{RMSNorm}(x + \text{MHA}(x))$, ...),
# `norm="none"` (no RMSNorm at all), `positional="none"` (NoPE) and `ffn="silu"` (ungated FFN).

# %%
#| export
Norm = Literal["pre", "post", "none"]     # where the RMSNorms go
Positional = Literal["rope", "none"]      # RoPE, or no position information at all (NoPE)
FFN = Literal["swiglu", "silu", "relu2"]  # gated SwiGLU, the plain SiLU MLP, or the ReLU² MLP
NORMS, POSITIONALS, FFNS = typing.get_args(Norm), typing.get_args(Positional), typing.get_args(FFN)
CANON_WIDTH = 3  # how many previous positions the canon switch mixes in


def with_history(x: torch.Tensor, k: int, kv_cache=None, key: str = "", fill: float = 0) -> torch.Tensor:
    """x (batch, seq, ...) with the k positions before its first prepended: (batch, k + seq, ...).

    Without a KV cache (or with an empty one) those positions hold ``fill``; with one, they are the
    previous calls' last k, which the cache keeps under ``key`` and this call replaces with its own.
    mix_previous (token_shift, canon) and the bigram rows share it, so decoding matches a full forward.

        >>> with_history(torch.tensor([[3, 4]]), 1, fill=-1)
        tensor([[-1,  3,  4]])
    """
    if kv_cache is not None and kv_cache.length:
        before = kv_cache.recent[key]
    else:
        before = x.new_full((x.shape[0], k, *x.shape[2:]), fill)
    padded = torch.cat([before, x], dim=1)
    if kv_cache is not None:
        kv_cache.recent[key] = padded[:, -k:]
    return padded


def mix_previous(x: torch.Tensor, weights: torch.Tensor, kv_cache=None, key: str = "") -> torch.Tensor:
    """``x[:, t] + sum_j weights[j - 1] * x[:, t - j]`` for j = 1..k: a causal depthwise convolution
    added to x, positions before the first counting as 0. x (batch, seq, d); weights (k, d).

    With a KV cache the positions before the first are the previous calls' last k, which the cache
    keeps under ``key`` (the token_shift and canon switches use this, so decoding matches).

        >>> mix_previous(torch.tensor([[[1.0], [2.0], [4.0]]]), torch.tensor([[0.5], [0.25]])).flatten()
        tensor([1.0000, 2.5000, 5.2500])
    """
    k, seq = weights.shape[0], x.shape[1]
    padded = with_history(x, k, kv_cache, key)  # position t of x is padded[:, k + t]
    for j in range(1, k + 1):
        x = x + weights[j - 1] * padded[:, k - j : k - j + seq]
    return x


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Each element zeroed with probability p, the rest scaled by 1 / (1 - p), so the mean is kept
    (inverted dropout; the model applies it only while training). p = 0: x itself.

        >>> dropout(torch.ones(4), 0.0)
        tensor([1., 1., 1., 1.])
    """
    if not p:
        return x
    keep = torch.rand(x.shape, device=x.device) >= p  # float32 draws, whatever x's dtype
    return x * keep / (1 - p)


class TransformerBlock(nn.Module):
    """One Transformer block (pre-norm by default). (batch, seq, d_model) -> (batch, seq, d_model).

    Sub-modules (state-dict names): ln1, attn, ln2, ffn. ``norm``: "pre" | "post" | "none";
    ``positional``: "rope" | "none"; ``ffn``: "swiglu" | "silu" | "relu2" (d_ff defaults to 8/3 or 4 x
    d_model); ``qk_norm``, ``value_embedding`` (see the attention); ``zero_init_proj``: attn.output_proj
    and ffn.w2 start at 0; ``canon``: the attention's and the FFN's inputs each get the previous
    CANON_WIDTH positions' inputs mixed in (``mix_previous``, weights canon_attn and canon_ffn,
    (CANON_WIDTH * d_model,) each, 0 at first); ``dropout``: the attention's and the FFN's outputs
    pass through ``dropout`` with that probability while the block trains (``block.train()``).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int | None = None, max_seq_len: int | None = None,
                 theta: float = 10000.0, *, norm: Norm = "pre", positional: Positional = "rope", ffn: FFN = "swiglu",
                 qk_norm: bool = False, zero_init_proj: bool = False, value_embedding: bool = False,
                 canon: bool = False, dropout: float = 0.0, device=None, dtype=None):
        super().__init__()
        for name, value, allowed in (("norm", norm, NORMS), ("positional", positional, POSITIONALS),
                                     ("ffn", ffn, FFNS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.norm, self.dropout = norm, float(dropout)
        self.attn = CausalMultiHeadSelfAttention(d_model, num_heads, max_seq_len, theta, positional=positional,
                                                 qk_norm=qk_norm, value_embedding=value_embedding,
                                                 device=device, dtype=dtype)
        ffn_class = {"swiglu": SwiGLU, "silu": SiLUFeedForward, "relu2": ReLU2FeedForward}[ffn]
        self.ffn = ffn_class(d_model, d_ff, device=device, dtype=dtype)
        if zero_init_proj:  # after the usual init, so every other weight draws the same random numbers
            nn.init.zeros_(self.attn.output_proj.weight)
            nn.init.zeros_(self.ffn.w2.weight)
        if norm != "none":
            self.ln1 = RMSNorm(d_model, device=device, dtype=dtype)
            self.ln2 = RMSNorm(d_model, device=device, dtype=dtype)
        # flat (k * d_model,), viewed as (k, d_model): one number per channel and offset, trained as gains
        self.canon_attn = nn.Parameter(torch.zeros(CANON_WIDTH * d_model, device=device, dtype=dtype)) if canon else None
        self.canon_ffn = nn.Parameter(torch.zeros(CANON_WIDTH * d_model, device=device, dtype=dtype)) if canon else None

    def forward(self, x: torch.Tensor, token_positions: torch.Tensor | None = None, kv_cache=None,
                layer: int = 0, value_embeds: torch.Tensor | None = None) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        attn = lambda a: dropout(self.attn(self.mix(a, self.canon_attn, kv_cache, f"{layer}.attn"), token_positions,
                                           kv_cache, layer, value_embeds), p)
        ffn = lambda f: dropout(self.ffn(self.mix(f, self.canon_ffn, kv_cache, f"{layer}.ffn")), p)
        if self.norm == "pre":
            x = x + attn(self.ln1(x))
            return x + ffn(self.ln2(x))
        if self.norm == "post":
            x = self.ln1(x + attn(x))
            return self.ln2(x + ffn(x))
        x = x + attn(x)
        return x + ffn(x)

    @staticmethod
    def mix(a: torch.Tensor, weights: torch.Tensor | None, kv_cache, key: str) -> torch.Tensor:
        """The canon switch's mix of the previous positions into a sublayer's input (none: unchanged)."""
        return a if weights is None else mix_previous(a, weights.view(CANON_WIDTH, -1), kv_cache, key)

# %%
def block_oracle(x, block):
    """A pre-norm SwiGLU block with RoPE, from F.* and mha_oracle, on the block's weights."""
    rms = lambda t, w: F.rms_norm(t, (x.shape[-1],), w, eps=1e-5)
    z = x + mha_oracle(rms(x, block.ln1.weight), block.attn, torch.arange(x.shape[-2]))
    h = rms(z, block.ln2.weight)
    return z + F.linear(F.silu(F.linear(h, block.ffn.w1.weight)) * F.linear(h, block.ffn.w3.weight), block.ffn.w2.weight)

block = TransformerBlock(32, 4, 64, max_seq_len=16)
x = torch.randn(2, 10, 32)
assert torch.allclose(block(x), block_oracle(x, block), atol=1e-5)
for kw in ({"norm": "post"}, {"norm": "none"}, {"positional": "none"}, {"ffn": "silu"}, {"ffn": "relu2"}):
    b = TransformerBlock(32, 4, max_seq_len=16, **kw)
    print(kw, "->", b(x).shape, sorted({k.split(".")[0] for k in b.state_dict()}), "d_ff", b.ffn.w1.out_features)

# %% [markdown]
# ## The language model
#
# Token embedding → `num_layers` blocks → final RMSNorm (pre-norm only: a post-norm block already
# ends normalised; "none" removes every RMSNorm) → LM head, logits `(batch, seq, vocab_size)`.
# `model.config` holds the constructor's keyword arguments: a checkpoint records it, and
# `TransformerLM(**config)` rebuilds the same architecture.
#
# With `tie_embeddings=True` the LM head reuses the embedding matrix (fewer parameters; GPT-2 does
# this). A shared matrix then gets the Linear initialisation (std ≈ sqrt(2/(vocab+d))): the
# embedding's std 1 would make initial logits of size ≈ sqrt(d_model).
#
# `model.py` imports the layers from `cs336_basics.nn`, so from here on this notebook runs the
# classes above with the fast versions of the five functions (02b checks they equal the plain ones).

# %%
#| default_exp model

# %%
#| export
"""The Transformer language model (with the handout's ablation switches) and its decoding KV cache.

    >>> model = TransformerLM(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4)
    >>> model(torch.randint(0, 100, (2, 8))).shape          # (batch, seq) -> (batch, seq, vocab)
    torch.Size([2, 8, 100])
    >>> TransformerLM(**model.config).config == model.config
    True
    >>> TransformerLM.from_config(ModelConfig(vocab_size=100, context_length=16, d_model=32, num_layers=2,
    ...                                       num_heads=4, d_ff=0)).config == model.config
    True
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from cs336_basics.nn import (FFN, Embedding, Linear, Norm, Positional, RMSNorm, TransformerBlock, default_d_ff,
                             mix_previous, with_history)

__all__ = ["KVCache", "ModelConfig", "TransformerBlock", "TransformerLM", "bigram_buckets_of", "softcap"]

# %% [markdown]
# The KV cache makes decoding fast: past keys and values never change (attention is causal), so
# each new token costs one position (notebook 02b checks that it decodes exactly). Per layer it
# holds the rotated keys and the values of every position so far, in buffers preallocated for the
# whole context on first use (a step writes one slice, never concatenates); `length` counts the
# cached positions. It is for inference, under `torch.no_grad()` / `torch.inference_mode()`.

# %%
#| export
class KVCache:
    """Keys and values of the positions decoded so far, one (k, v) buffer pair per layer.

    Make one with ``model.new_kv_cache()``, then call ``model(ids, kv_cache=cache)`` with the prompt
    and then one new token at a time: each call appends its keys/values and advances ``length``.
    Buffers are (batch, heads, max_len, d_k), allocated on the first call.
    """

    def __init__(self, num_layers: int, max_len: int):
        self.num_layers, self.max_len = num_layers, max_len
        self.length = 0
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.recent: dict[str, torch.Tensor] = {}  # the last inputs of each mix_previous, for the next call

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (batch, heads, seq, d_k) at positions length.. and return all cached so far."""
        start, end = self.length, self.length + k.shape[-2]
        if end > self.max_len:
            raise ValueError(f"the KV cache holds {self.max_len} positions; cannot write up to {end}")
        if self.keys[layer] is None:
            shape = (*k.shape[:-2], self.max_len, k.shape[-1])
            self.keys[layer] = k.new_empty(shape)
            self.values[layer] = v.new_empty((*v.shape[:-2], self.max_len, v.shape[-1]))
        elif self.keys[layer].shape[:-2] != k.shape[:-2] or self.keys[layer].dtype != k.dtype:
            raise ValueError(
                f"this KV cache was filled with batch/heads {tuple(self.keys[layer].shape[:-2])} and dtype "
                f"{self.keys[layer].dtype}, got {tuple(k.shape[:-2])} and {k.dtype}; use model.new_kv_cache() "
                f"for a new batch"
            )
        self.keys[layer][..., start:end, :] = k
        self.values[layer][..., start:end, :] = v
        return self.keys[layer][..., :end, :], self.values[layer][..., :end, :]

    def advance(self, seq: int) -> None:
        """Mark ``seq`` more positions as cached (the model calls this after its last layer)."""
        self.length += seq

    def reset(self) -> None:
        """Forget every cached position (buffers are kept for reuse)."""
        self.length = 0
        self.recent = {}

    def __repr__(self) -> str:
        return f"KVCache(length={self.length}, max_len={self.max_len}, num_layers={self.num_layers})"

# %% [markdown]
# What makes one model differ from another (sizes and switches) sits in one dataclass,
# `ModelConfig`: its fields carry the defaults (the handout's TinyStories model) and the valid
# choices (`Literal` types), `check` the rules. `TransformerLM` takes the same keyword arguments,
# the training config's `[model]` section *is* this dataclass, and notebook 03 reads it too.

# %%
#| export
@dataclass
class ModelConfig:
    """A TransformerLM's sizes and ablation switches; the defaults are the handout's TinyStories model.

    ``d_ff = 0`` means the model's default width for its FFN (``nn.default_d_ff``: about 8/3 d_model
    for SwiGLU, 4 d_model for the SiLU and ReLU² MLPs), which is what ``TransformerLM(d_ff=None)`` builds.

        >>> cfg = ModelConfig(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=0)
        >>> cfg.as_kwargs()["d_ff"] is None, ModelConfig.choices()["norm"]
        (True, ('pre', 'post', 'none'))
        >>> ModelConfig(norm="sandwich").check()
        Traceback (most recent call last):
        ...
        ValueError: norm must be one of ('pre', 'post', 'none'), got 'sandwich'
    """

    vocab_size: int = 10_000
    context_length: int = 256
    d_model: int = 512
    num_layers: int = 4
    num_heads: int = 16
    d_ff: int = 1344          # 0: the model's default (default_d_ff(d_model, ffn); 1344 for d_model 512)
    rope_theta: float = 10_000.0
    norm: Norm = "pre"
    positional: Positional = "rope"
    ffn: FFN = "swiglu"
    tie_embeddings: bool = False
    # the leaderboard recipe's switches (notebook 02); off, the defaults, they change nothing
    qk_norm: bool = False         # RMSNorm on each head's queries and keys
    logit_softcap: float = 0.0    # > 0: logits = cap * tanh(logits / cap)
    zero_init_proj: bool = False  # attention and FFN output projections start at zero
    value_embedding: bool = False  # a second token embedding, added (scaled) to every layer's values
    unet_skips: bool = False      # layer i's output is added (scaled) to the input of layer n-1-i
    token_shift: bool = False     # each position's embedding gets the previous token's, times a learned gate
    canon: bool = False           # each attention and FFN input gets the previous 3 positions', per channel
    bigram_buckets: int = 0       # > 0: a table of that many rows, looked up by a hash of (previous token,
                                  # token), added to the embeddings (0 at first)
    bigram_dim: int = 0           # the bigram table's width: 0, d_model; else rows that narrow, projected
                                  # to d_model by a matrix (more rows for the same optimizer work)
    trigrams: bool = False        # with bigram_buckets: each position also adds the row of a hash of the
                                  # two tokens before it and itself, from the same table (no new weights)
    dropout: float = 0.0          # while training, each block's attention and FFN outputs lose elements
                                  # with this probability (the rest scaled up); no weights

    SIZES: ClassVar[tuple[str, ...]] = ("vocab_size", "context_length", "d_model", "num_layers", "num_heads")

    @classmethod
    def choices(cls) -> dict[str, tuple[str, ...]]:
        """The settings with a fixed set of values, and those values (from the ``Literal`` types)."""
        hints = typing.get_type_hints(cls)
        return {name: typing.get_args(hint) for name, hint in hints.items() if typing.get_origin(hint) is Literal}

    def check(self) -> ModelConfig:
        """A ValueError naming the first setting no model can be built with; else ``self``."""
        for name in self.SIZES:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, allowed in self.choices().items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.d_ff, int) or self.d_ff < 0:
            raise ValueError(f"d_ff must be a positive integer (or 0 for the model's default), got {self.d_ff!r}")
        if not isinstance(self.logit_softcap, (int, float)) or not self.logit_softcap >= 0:
            raise ValueError(f"logit_softcap must be a number >= 0 (0: off), got {self.logit_softcap!r}")
        if not isinstance(self.bigram_buckets, int) or isinstance(self.bigram_buckets, bool) or self.bigram_buckets < 0:
            raise ValueError(f"bigram_buckets must be an integer >= 0 (0: off), got {self.bigram_buckets!r}")
        if not isinstance(self.bigram_dim, int) or isinstance(self.bigram_dim, bool) or self.bigram_dim < 0:
            raise ValueError(f"bigram_dim must be an integer >= 0 (0: d_model), got {self.bigram_dim!r}")
        if self.bigram_dim and not self.bigram_buckets:
            raise ValueError("bigram_dim sets the bigram table's width, so it needs bigram_buckets > 0 too")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a probability in [0, 1) (0: off), got {self.dropout!r}")
        if self.trigrams and not self.bigram_buckets:
            raise ValueError("trigrams adds rows from the bigram table, so it needs bigram_buckets > 0 too")
        return self

    def as_kwargs(self) -> dict[str, Any]:
        """``TransformerLM`` keyword arguments (d_ff 0 -> None: the model's default)."""
        return dataclasses.asdict(self) | {"d_ff": self.d_ff or None}


# %%
#| export
class TransformerLM(nn.Module):
    """Decoder-only Transformer LM. forward(token_ids (batch, seq), kv_cache=None) -> logits (batch, seq, vocab).

    ``forward(token_ids, return_hidden=True)`` stops before the output layer and returns the final
    normalised hidden states (batch, seq, d_model), for a loss that applies ``lm_head`` itself
    (``nn_utils.linear_cross_entropy``, which never materialises all the logits).

    State-dict keys are the assignment's: token_embeddings.weight, layers.{i}.attn.{q,k,v,output}_proj.weight,
    layers.{i}.ln1.weight, layers.{i}.ln2.weight, layers.{i}.ffn.{w1,w2,w3}.weight, ln_final.weight,
    lm_head.weight. Ablations: norm="pre"|"post"|"none", positional="rope"|"none", ffn="swiglu"|"silu"|"relu2";
    the leaderboard's switches qk_norm, logit_softcap, zero_init_proj, value_embedding, unet_skips,
    token_shift, canon, bigram_buckets (see ``ModelConfig``); value_embedding adds value_embeddings.weight
    (vocab, d_model) and layers.{i}.attn.value_scale, unet_skips skip_weights (num_layers // 2), token_shift
    shift_gate (d_model), canon layers.{i}.canon_attn and layers.{i}.canon_ffn (3 d_model each),
    bigram_buckets bigram_embeddings.weight (bigram_buckets, d_model), or with bigram_dim = r
    (bigram_buckets, r) and bigram_projection.weight (d_model, r); trigrams and dropout add none.
    """

    def __init__(self, vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int,
                 d_ff: int | None = None, rope_theta: float = ModelConfig.rope_theta, *,
                 norm: Norm = ModelConfig.norm, positional: Positional = ModelConfig.positional,
                 ffn: FFN = ModelConfig.ffn, tie_embeddings: bool = ModelConfig.tie_embeddings,
                 qk_norm: bool = ModelConfig.qk_norm, logit_softcap: float = ModelConfig.logit_softcap,
                 zero_init_proj: bool = ModelConfig.zero_init_proj,
                 value_embedding: bool = ModelConfig.value_embedding, unet_skips: bool = ModelConfig.unet_skips,
                 token_shift: bool = ModelConfig.token_shift, canon: bool = ModelConfig.canon,
                 bigram_buckets: int = ModelConfig.bigram_buckets, bigram_dim: int = ModelConfig.bigram_dim,
                 trigrams: bool = ModelConfig.trigrams, dropout: float = ModelConfig.dropout, device=None, dtype=None):
        super().__init__()
        settings = ModelConfig(vocab_size, context_length, d_model, num_layers, num_heads, 0, float(rope_theta), norm,
                               positional, ffn, bool(tie_embeddings), bool(qk_norm), logit_softcap,
                               bool(zero_init_proj), bool(value_embedding), bool(unet_skips), bool(token_shift),
                               bool(canon), bigram_buckets, bigram_dim, bool(trigrams), dropout).check()
        d_ff = default_d_ff(d_model, ffn) if d_ff is None else int(d_ff)
        if d_ff <= 0:
            raise ValueError(f"d_ff must be a positive integer (or None for the default), got {d_ff}")
        self.config = dataclasses.asdict(settings) | {"d_ff": d_ff, "logit_softcap": float(logit_softcap),
                                                      "dropout": float(dropout)}
        self.vocab_size, self.context_length, self.logit_softcap = vocab_size, context_length, float(logit_softcap)
        self.token_embeddings = Embedding(vocab_size, d_model, device=device, dtype=dtype)
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, num_heads, d_ff, context_length, rope_theta, norm=norm,
                             positional=positional, ffn=ffn, qk_norm=qk_norm, zero_init_proj=zero_init_proj,
                             value_embedding=value_embedding, canon=canon, dropout=dropout, device=device,
                             dtype=dtype)
            for _ in range(num_layers)
        )
        self.ln_final = RMSNorm(d_model, device=device, dtype=dtype) if norm == "pre" else None
        self.lm_head = Linear(d_model, vocab_size, device=device, dtype=dtype)
        if tie_embeddings:
            self.token_embeddings.weight = self.lm_head.weight  # one matrix, Linear's init (see above)
        # drawn last, so that every other weight is the one the model without it draws
        self.value_embeddings = Embedding(vocab_size, d_model, device=device, dtype=dtype) if value_embedding else None
        # unet_skips: one weight per pair (the first half's outputs feed the second half's inputs, mirrored)
        self.skip_weights = (nn.Parameter(torch.ones(num_layers // 2, device=device, dtype=dtype))
                             if unet_skips else None)
        # token_shift: a gate per channel, 0 at first, so that the model starts as the one without it
        self.shift_gate = nn.Parameter(torch.zeros(d_model, device=device, dtype=dtype)) if token_shift else None
        # bigram_buckets: zeros, so that the model starts as the one without it (its gradient is not 0)
        self.bigram_embeddings = self.bigram_projection = None
        if bigram_buckets:
            self.bigram_embeddings = Embedding(bigram_buckets, bigram_dim or d_model, device=device, dtype=dtype)
            nn.init.zeros_(self.bigram_embeddings.weight)
            if bigram_dim:  # random, so that the zero rows get a gradient through it
                self.bigram_projection = Linear(bigram_dim, d_model, device=device, dtype=dtype)

    @classmethod
    def from_config(cls, config: ModelConfig, *, device=None, dtype=None) -> TransformerLM:
        """The model ``config`` describes (``model.config`` is the same settings as a dict)."""
        return cls(**config.as_kwargs(), device=device, dtype=dtype)

    def forward(self, token_ids: torch.Tensor, kv_cache: KVCache | None = None, *,
                return_hidden: bool = False) -> torch.Tensor:
        if token_ids.dim() != 2:
            raise ValueError(f"token_ids must have shape (batch, seq), got {tuple(token_ids.shape)}")
        seq = token_ids.shape[1]
        start = 0 if kv_cache is None else kv_cache.length
        if start + seq > self.context_length:
            where = f" after the {start} cached positions" if start else ""
            raise ValueError(
                f"the input has {seq} tokens{where}, more than context_length={self.context_length}; "
                f"truncate it to the last {self.context_length - start} tokens or build a longer-context model"
            )
        x = self.token_embeddings(token_ids)
        if self.shift_gate is not None:  # token_shift: x[:, t] + shift_gate * x[:, t-1]
            x = mix_previous(x, self.shift_gate.view(1, -1), kv_cache, "embedding")
        if self.bigram_embeddings is not None:  # a row per (previous token, token) pair, shared when hashes collide
            rows = self.bigram_embeddings(bigram_buckets_of(token_ids, self.bigram_embeddings.weight.shape[0],
                                                            kv_cache, trigrams=self.config["trigrams"]))
            if self.config["trigrams"]:  # (batch, seq, 2, width): the pair's row plus the triple's
                rows = rows.sum(dim=2)
            x = x + (rows if self.bigram_projection is None else self.bigram_projection(rows))
        value_embeds = self.value_embeddings(token_ids) if self.value_embeddings is not None else None
        skips, n = [], len(self.layers)
        for i, layer in enumerate(self.layers):
            if self.skip_weights is not None and i >= n - len(self.skip_weights):
                x = x + self.skip_weights[n - 1 - i] * skips.pop()
            x = layer(x, None, kv_cache, i, value_embeds)
            if self.skip_weights is not None and i < len(self.skip_weights):
                skips.append(x)
        if kv_cache is not None:
            kv_cache.advance(seq)
        if self.ln_final is not None:
            x = self.ln_final(x)
        return x if return_hidden else softcap(self.lm_head(x), self.logit_softcap)

    def new_kv_cache(self) -> KVCache:
        """An empty cache for incremental decoding: ``logits = model(ids, kv_cache=cache)``."""
        return KVCache(len(self.layers), self.context_length)

    def num_parameters(self, include_embeddings: bool = True) -> int:
        """Number of distinct parameters (a tied matrix counts once)."""
        params = {id(p): p for p in self.parameters()}
        n = sum(p.numel() for p in params.values())
        if not include_embeddings and not self.config["tie_embeddings"]:
            n -= self.token_embeddings.weight.numel()
        for table in (self.value_embeddings, self.bigram_embeddings):
            if not include_embeddings and table is not None:
                n -= table.weight.numel()
        return n


def bigram_buckets_of(token_ids: torch.Tensor, buckets: int, kv_cache: KVCache | None = None, *,
                      trigrams: bool = False) -> torch.Tensor:
    """The bigram_buckets switch's row for each position: a hash of (previous token, token) mod ``buckets``.

    token_ids (batch, seq) -> (batch, seq) in [0, buckets); with ``trigrams``, (batch, seq, 2): the
    pair's row, then the row of (token two back, previous token, token). Positions before the first
    are the last ones a KV cache has seen (kept in ``kv_cache.recent``), else none (hashed as -1), so
    decoding one token at a time gives the rows a full forward does. The multipliers are odd 32-bit
    constants (Knuth's multiplicative hashing); products stay far inside int64. The token two back
    enters as +2, never 0, so that a triple never hashes like the pair inside it.

        >>> bigram_buckets_of(torch.tensor([[5, 7, 5, 7]]), 1000)   # the pair (5, 7) gets one row twice
        tensor([[595, 631, 603, 631]])
    """
    history = 2 if trigrams else 1
    padded = with_history(token_ids, history, kv_cache, "bigram", fill=-1).long()
    seq = token_ids.shape[1]
    previous = padded[:, history - 1 : history - 1 + seq]
    pairs = (previous + 1) * 2654435761 ^ token_ids.long() * 2246822519
    if not trigrams:
        return pairs % buckets
    triples = (padded[:, :seq] + 2) * 3266489917 ^ pairs
    return torch.stack([pairs, triples], dim=-1) % buckets


def softcap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(logits / cap): about ``logits`` where small, never beyond ±cap; cap 0: unchanged.

    Half-precision logits are capped in float32 and stay float32 (the loss upcasts them anyway).

    >>> softcap(torch.tensor([0.0, 1.0, 1000.0]), 30.0)
    tensor([ 0.0000,  0.9996, 30.0000])
    """
    return logits if not cap else cap * torch.tanh(logits.to(torch.promote_types(logits.dtype, torch.float32)) / cap)

# %% [markdown]
# Check the whole model against an oracle built from `torch.nn.functional` (the block's oracle,
# layer after layer) on the same weights, then causality: changing a later token never changes an
# earlier logit. (`tests/test_model.py` checks it once more with oracles that read the state dict.)

# %%
from cs336_basics.model import TransformerLM

def lm_oracle(model, ids):
    x = F.embedding(ids, model.token_embeddings.weight)
    for block in model.layers:
        x = block_oracle(x, block)
    return F.linear(F.rms_norm(x, (x.shape[-1],), model.ln_final.weight, eps=1e-5), model.lm_head.weight)

model = TransformerLM(vocab_size=100, context_length=32, d_model=64, num_layers=2, num_heads=4)
ids = torch.randint(0, 100, (3, 20))
with torch.no_grad():
    logits = model(ids)
    assert torch.allclose(logits, lm_oracle(model, ids), atol=1e-4)
    changed = ids.clone()
    changed[:, 12] = (changed[:, 12] + 1) % 100
    diff = (model(changed) - logits).abs().amax(dim=(0, 2))
print("max |Δlogit| per position after changing token 12:", [round(v, 3) for v in diff.tolist()])
assert (diff[:12] == 0).all() and diff[12:].min() > 0
print(model.config)
print(f"{model.num_parameters():,} parameters")

# %% [markdown]
# The errors a user is likely to hit say what is wrong and how to fix it:

# %%
for make in (
    lambda: TransformerLM(100, 32, d_model=64, num_layers=1, num_heads=5),
    lambda: TransformerLM(100, 32, d_model=60, num_layers=1, num_heads=20),  # d_k = 3: odd, no RoPE
    lambda: model(torch.randint(0, 100, (1, 33))),
    lambda: model(torch.tensor([[1, 2, 100]])),
):
    try:
        make()
    except ValueError as e:
        print("ValueError:", e)

# %% [markdown]
# ## What the next notebooks need
#
# * **02b · Making it fast** writes the faster five functions that the package runs (`kernels.py`),
#   each checked equal to the plain one above, shows bf16 autocast and `torch.compile`, checks
#   decoding with the KV cache, and explains and checks the leaderboard recipe's switches.
# * **03 · FLOPs** counts parameters and matmul FLOPs from `model.config`: per layer the fused QKV
#   projection, $QK^\top$ and attention·V per head, the output projection, the FFN's w1, w3 (SwiGLU
#   only) and w2; then the LM head. It counts dense attention, the usual convention for MFU.
# * **04 · Training** trains `TransformerLM(**config)` on `(batch, context_length)` token batches and
#   stores `model.config` in checkpoints. **05 · Sampling** decodes with `model.new_kv_cache()`.
