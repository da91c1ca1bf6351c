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
# # 03 · Parameters, FLOPs and memory
#
# Notebook 02 built the Transformer LM. Before training it we ask what it costs: how many
# parameters each part holds, how many floating-point operations (FLOPs) a forward pass does,
# how much memory training with AdamW needs, and how close to the hardware's peak we run
# (model FLOPs utilization, MFU).
#
# Everything here is exported to `cs336_basics/accounting.py` as **pure functions of a model
# config**: the same dict of keyword arguments that `TransformerLM(**config)` takes. They do
# arithmetic only, so they are instant for GPT-2 XL, and a test checks them against
# `torch.utils.flop_counter.FlopCounterMode` running the real model.

# %%
import os
from pathlib import Path

SMOKE = os.environ.get("CS336_SMOKE") == "1"
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
FIGURES = ROOT / "figures"  # written only outside smoke mode

# %%
#| default_exp accounting

# %% [markdown]
# ## The config
#
# A config is `TransformerLM`'s constructor keywords. The ablation switches have the model's
# defaults; `d_ff=None` means the model's default width (about 8/3 · d_model rounded up to a
# multiple of 64 for SwiGLU, 4 · d_model for the ungated SiLU FFN).
#
# Values need only support `+ * /`, so besides ints they may be `sympy` symbols: then every
# function below returns a formula instead of a number. We use that to answer the handout's
# "give an algebraic expression" questions with the very code that produces the numbers.

# %%
#| export
"""Parameter, FLOP and memory accounting for the Transformer LM, as pure functions of its config.

A config is the dict of ``TransformerLM`` keyword arguments (``model.config``)::

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> parameter_counts(cfg)["total"]
    27040
    >>> forward_flops(cfg, batch_size=1)["total"]     # matmul FLOPs of one forward pass
    823296

Every function only adds and multiplies, so the sizes may also be ``sympy`` symbols, which turns
the result into a formula. FLOPs count matrix multiplies only (2·m·n·p for an (m, n) @ (n, p)
product), as ``torch.utils.flop_counter.FlopCounterMode`` does; norms, softmax, SiLU and RoPE are
elementwise and cheap next to them.
"""

from __future__ import annotations

import math

_REQUIRED = ("vocab_size", "context_length", "d_model", "num_layers", "num_heads")
_CHOICES = {"norm": ("pre", "post", "none"), "positional": ("rope", "none"), "ffn": ("swiglu", "silu")}
_DEFAULTS = {"d_ff": None, "rope_theta": 10000.0, "norm": "pre", "positional": "rope", "ffn": "swiglu",
             "tie_embeddings": False}


def default_d_ff(d_model: int, ffn: str = "swiglu") -> int:
    """The FFN width used when ``d_ff`` is None: 8/3·d_model rounded up to a multiple of 64 for
    SwiGLU (three matrices), 4·d_model for the ungated SiLU FFN (two matrices, same parameter count).

    >>> default_d_ff(768), default_d_ff(768, "silu")
    (2048, 3072)
    """
    if ffn == "silu":
        return 4 * d_model
    return 64 * math.ceil(8 * d_model / 3 / 64)


def resolve_config(config: dict) -> dict:
    """Fill in the model's defaults and check the config; returns a new dict.

    >>> resolve_config(dict(vocab_size=10, context_length=8, d_model=64, num_layers=1, num_heads=2))["d_ff"]
    192
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict of TransformerLM keyword arguments, got {type(config).__name__}")
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise ValueError(f"config is missing {missing}; pass the TransformerLM keyword arguments, e.g. model.config")
    unknown = sorted(set(config) - set(_REQUIRED) - set(_DEFAULTS) - {"device", "dtype"})
    if unknown:
        raise ValueError(f"config has unknown keys {unknown}; allowed: {sorted(_REQUIRED + tuple(_DEFAULTS))}")
    cfg = {**_DEFAULTS, **config}
    for key, allowed in _CHOICES.items():
        if cfg[key] not in allowed:
            raise ValueError(f"config[{key!r}] = {cfg[key]!r}; choose one of {allowed}")
    if cfg["d_ff"] is None:
        cfg["d_ff"] = default_d_ff(cfg["d_model"], cfg["ffn"])
    for key in (*_REQUIRED, "d_ff"):
        value = cfg[key]
        if isinstance(value, bool) or isinstance(value, (float, str)):
            raise ValueError(f"config[{key!r}] = {value!r}; it must be a positive integer")
        if isinstance(value, int) and value <= 0:
            raise ValueError(f"config[{key!r}] = {value}; it must be a positive integer")
    d_model, heads = cfg["d_model"], cfg["num_heads"]
    if isinstance(d_model, int) and isinstance(heads, int) and d_model % heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={heads}; pick num_heads dividing d_model")
    return cfg


def _seq(cfg: dict, seq_len):
    if seq_len is None:
        return cfg["context_length"]
    if isinstance(seq_len, int) and not 0 < seq_len <= cfg["context_length"]:
        raise ValueError(f"seq_len={seq_len} must be in 1..context_length={cfg['context_length']}")
    return seq_len

# %% [markdown]
# ## Parameters
#
# Each `Linear` is a `(out, in)` matrix without bias, each `RMSNorm` a gain vector of size
# `d_model`. A block holds four `d_model × d_model` attention projections, the FFN's two or three
# `d_model × d_ff` matrices and two norms; around the blocks sit the token embedding, the final
# norm and the LM head (shared with the embedding when `tie_embeddings=True`).

# %%
#| export
def parameter_counts(config: dict) -> dict:
    """Trainable parameters per component, for one layer and in total.

    Keys: ``embedding``, ``attn_q``/``attn_k``/``attn_v``/``attn_o``, ``ffn_w1``/``ffn_w2``/``ffn_w3``,
    ``norms`` (ln1 + ln2) — these per layer —, ``final_norm``, ``lm_head`` (0 when tied),
    ``per_layer`` and ``total``.

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> c = parameter_counts(cfg); c["per_layer"], c["total"]
    (10304, 27040)
    >>> parameter_counts({**cfg, "tie_embeddings": True})["total"]
    23840
    """
    cfg = resolve_config(config)
    d, f, v = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"]
    has_norm = cfg["norm"] != "none"
    layer = {
        "attn_q": d * d, "attn_k": d * d, "attn_v": d * d, "attn_o": d * d,
        "ffn_w1": d * f, "ffn_w2": f * d, "ffn_w3": d * f if cfg["ffn"] == "swiglu" else 0,
        "norms": 2 * d if has_norm else 0,
    }
    counts = {"embedding": v * d, **layer, "final_norm": d if has_norm else 0,
              "lm_head": 0 if cfg["tie_embeddings"] else v * d}
    counts["per_layer"] = sum(layer.values())
    counts["total"] = counts["embedding"] + cfg["num_layers"] * counts["per_layer"] + counts["final_norm"] \
        + counts["lm_head"]
    return counts


def parameter_memory(config: dict, bytes_per_param: int = 4) -> int:
    """Bytes to hold the parameters (4 per float32 parameter, 2 for bf16).

    >>> parameter_memory(dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64))
    108160
    """
    return parameter_counts(config)["total"] * bytes_per_param

# %% [markdown]
# A quick look at a small model, and the tied variant (one `vocab × d_model` matrix fewer).

# %%
from cs336_basics.accounting import parameter_counts, resolve_config

tiny = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
counts = parameter_counts(tiny)
assert counts["total"] == 100 * 32 * 2 + 2 * (4 * 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32
assert parameter_counts({**tiny, "tie_embeddings": True})["total"] == counts["total"] - 100 * 32
counts

# %% [markdown]
# ## Forward FLOPs, matmul by matmul
#
# For `x` of shape `(batch, seq, d_model)`, with `B·T` tokens, the forward pass runs these
# matrix multiplies (2·m·n·p FLOPs for `(m, n) @ (n, p)`):
#
# | matmul | shapes | FLOPs |
# |---|---|---|
# | Q, K, V projections (each) | `(BT, d) @ (d, d)` | 2·BT·d² |
# | QKᵀ scores, all heads | `h × (T, d_k) @ (d_k, T)` | 2·B·T²·d |
# | attention · V, all heads | `h × (T, T) @ (T, d_k)` | 2·B·T²·d |
# | output projection | `(BT, d) @ (d, d)` | 2·BT·d² |
# | FFN W1, W3 (SwiGLU), W2 | `(BT, d) @ (d, d_ff)`, `(BT, d_ff) @ (d_ff, d)` | 2·BT·d·d_ff each |
# | LM head | `(BT, d) @ (d, V)` | 2·BT·d·V |
#
# The causal mask does not save FLOPs: the full `T × T` score matrix is computed and then masked.
# The embedding is a lookup (no FLOPs).

# %%
#| export
def forward_flops(config: dict, batch_size: int = 1, seq_len: int | None = None) -> dict:
    """Matmul FLOPs of one forward pass over ``batch_size`` sequences of ``seq_len`` tokens
    (default ``context_length``).

    Keys (summed over layers): ``attn_qkv`` (Q, K, V projections), ``attn_scores`` (QKᵀ),
    ``attn_values`` (attention·V), ``attn_out`` (output projection), ``ffn_w1``, ``ffn_w2``,
    ``ffn_w3`` (0 for the SiLU FFN), ``lm_head``, and the groups ``attention`` (the four above),
    ``ffn`` and ``total``.

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> f = forward_flops(cfg, batch_size=1); f["attn_scores"], f["lm_head"], f["total"]
    (32768, 102400, 823296)
    """
    cfg = resolve_config(config)
    tokens = batch_size * _seq(cfg, seq_len)
    seq = _seq(cfg, seq_len)
    d, f, v, n = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"], cfg["num_layers"]
    flops = {
        "attn_qkv": n * 3 * 2 * tokens * d * d,
        "attn_scores": n * 2 * tokens * seq * d,  # per head 2·T·T·d_k, times h heads; d = h·d_k
        "attn_values": n * 2 * tokens * seq * d,
        "attn_out": n * 2 * tokens * d * d,
        "ffn_w1": n * 2 * tokens * d * f,
        "ffn_w2": n * 2 * tokens * f * d,
        "ffn_w3": n * 2 * tokens * d * f if cfg["ffn"] == "swiglu" else 0,
        "lm_head": 2 * tokens * d * v,
    }
    flops["attention"] = flops["attn_qkv"] + flops["attn_scores"] + flops["attn_values"] + flops["attn_out"]
    flops["ffn"] = flops["ffn_w1"] + flops["ffn_w2"] + flops["ffn_w3"]
    flops["total"] = flops["attention"] + flops["ffn"] + flops["lm_head"]
    return flops

# %% [markdown]
# The tiny model's forward pass, component by component:

# %%
from cs336_basics.accounting import forward_flops

f = forward_flops(tiny, batch_size=1)
assert f["total"] == sum(v for k, v in f.items() if k not in ("attention", "ffn", "total"))
f

# %% [markdown]
# ## Training FLOPs
#
# Backpropagating through `Y = X @ W` needs `dX = dY @ Wᵀ` and `dW = Xᵀ @ dY`: two matmuls of the
# same size as the forward one. Every matmul in the model has inputs that need gradients (even
# the first one: its input comes from the trainable embedding), so **a training step's matmul
# FLOPs are exactly 3× the forward's** (the test checks this with FlopCounterMode on backward
# too). Elementwise work (norms, softmax, the optimizer) comes on top and is small.

# %%
#| export
def training_flops(config: dict, batch_size: int = 1, seq_len: int | None = None) -> float:
    """Matmul FLOPs of one forward + backward pass: 3 × forward (backward = 2 × forward).

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> training_flops(cfg, batch_size=2)
    4939776
    """
    return 3 * forward_flops(config, batch_size, seq_len)["total"]


def training_flops_per_token(config: dict, seq_len: int | None = None) -> float:
    """Training FLOPs per token at ``seq_len`` (default ``context_length``): the "6N + attention" number.

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> training_flops_per_token(cfg)
    154368.0
    """
    cfg = resolve_config(config)
    seq = _seq(cfg, seq_len)
    return training_flops(cfg, 1, seq) / seq


def mfu(tokens_per_s: float, config: dict, peak_flops: float, seq_len: int | None = None) -> float:
    """Model FLOPs utilization: model FLOPs per second achieved / the hardware's peak FLOP/s.

    ``tokens_per_s`` is the measured training throughput (tokens of forward + backward per second).

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> round(mfu(1000.0, cfg, peak_flops=1e9), 4)    # 1000 tok/s × 154368 FLOP/tok on a 1 GFLOP/s chip
    0.1544
    """
    if not peak_flops > 0:
        raise ValueError(f"peak_flops={peak_flops!r} must be positive (FLOP/s of the hardware)")
    if tokens_per_s < 0:
        raise ValueError(f"tokens_per_s={tokens_per_s!r} must be non-negative")
    return tokens_per_s * training_flops_per_token(config, seq_len) / peak_flops

# %% [markdown]
# ## Memory: activations, and training with AdamW
#
# Backward needs the activations saved by forward. We count, per the handout's list, one
# `(batch, seq, ·)` tensor for each of: per block the two RMSNorm outputs, the Q, K, V projections,
# the QKᵀ scores and the softmax probabilities (`batch · heads · seq²` each), the weighted sum of
# values, the output projection, and the FFN's inner tensors (W1 output and SiLU output, plus the
# W3 output and the gated product in SwiGLU) and W2 output; then the final RMSNorm, the logits and
# cross-entropy's softmax over them (`batch · seq · vocab` each).
#
# Training with AdamW keeps, next to the activations, the parameters, one gradient per parameter
# and AdamW's two moments per parameter (m and v): 4 floats per parameter in all.

# %%
#| export
def activation_counts(config: dict, batch_size: int = 1, seq_len: int | None = None) -> dict:
    """Number of activation values saved for backward (the handout's list), by component.

    Per layer: ``norms`` (2 RMSNorm outputs, 0 without norms), ``qkv`` (3), ``scores`` (QKᵀ),
    ``softmax``, ``attn_values`` (weighted sum), ``attn_out``, ``ffn_inner`` (W1 and SiLU outputs,
    + W3 output and gated product for SwiGLU), ``ffn_out`` (W2); then ``final_norm``, ``logits``,
    ``cross_entropy`` (softmax over the logits); ``per_layer`` and ``total``.

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> a = activation_counts(cfg); a["scores"], a["per_layer"], a["total"]
    (1024, 10240, 24192)
    """
    cfg = resolve_config(config)
    seq = _seq(cfg, seq_len)
    bt = batch_size * seq
    d, f, h, v = cfg["d_model"], cfg["d_ff"], cfg["num_heads"], cfg["vocab_size"]
    has_norm = cfg["norm"] != "none"
    layer = {
        "norms": 2 * bt * d if has_norm else 0,
        "qkv": 3 * bt * d,
        "scores": batch_size * h * seq * seq,
        "softmax": batch_size * h * seq * seq,
        "attn_values": bt * d,
        "attn_out": bt * d,
        "ffn_inner": (4 if cfg["ffn"] == "swiglu" else 2) * bt * f,
        "ffn_out": bt * d,
    }
    counts = {**layer, "final_norm": bt * d if has_norm else 0, "logits": bt * v, "cross_entropy": bt * v}
    counts["per_layer"] = sum(layer.values())
    counts["total"] = cfg["num_layers"] * counts["per_layer"] + counts["final_norm"] + counts["logits"] \
        + counts["cross_entropy"]
    return counts


def activation_memory(config: dict, batch_size: int = 1, seq_len: int | None = None,
                      bytes_per_value: int = 4) -> int:
    """Bytes of saved activations (see ``activation_counts``), 4 per float32 value.

    >>> activation_memory(dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64))
    96768
    """
    return activation_counts(config, batch_size, seq_len)["total"] * bytes_per_value


def adamw_memory(config: dict, batch_size: int = 1, seq_len: int | None = None,
                 bytes_per_value: int = 4) -> dict:
    """Peak training memory with AdamW in bytes: ``parameters``, ``gradients`` (one per parameter),
    ``optimizer_state`` (AdamW's m and v: two per parameter), ``activations`` and ``total``.

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> m = adamw_memory(cfg, batch_size=1); m["optimizer_state"], m["total"]
    (216320, 529408)
    """
    params = parameter_counts(config)["total"]
    memory = {
        "parameters": params * bytes_per_value,
        "gradients": params * bytes_per_value,
        "optimizer_state": 2 * params * bytes_per_value,
        "activations": activation_memory(config, batch_size, seq_len, bytes_per_value),
    }
    memory["total"] = sum(memory.values())
    return memory


def max_batch_size(config: dict, memory_bytes: float, seq_len: int | None = None,
                   bytes_per_value: int = 4) -> int:
    """Largest batch size whose ``adamw_memory`` total fits in ``memory_bytes`` (0 if none does).

    Memory is ``a · batch_size + b`` (activations scale with the batch, the rest does not).

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> max_batch_size(cfg, 1_000_000)
    5
    """
    fixed = adamw_memory(config, 0, seq_len, bytes_per_value)["total"]
    per_sequence = adamw_memory(config, 1, seq_len, bytes_per_value)["total"] - fixed
    return max(0, int((memory_bytes - fixed) // per_sequence))

# %% [markdown]
# ## AdamW's FLOPs
#
# Per parameter and step, with the scalars (`1 - β`, the bias-corrected step size `α_t`, `α·λ`)
# computed once per step:
#
# | update | FLOPs |
# |---|---|
# | `m ← β₁·m + (1−β₁)·g` | 3 (2 mul, 1 add) |
# | `v ← β₂·v + (1−β₂)·g²` | 4 (square, 2 mul, 1 add) |
# | `θ ← θ − α_t · m / (√v + ε)` | 5 (sqrt, add, div, mul, sub) |
# | `θ ← θ − α·λ·θ` | 2 (mul, sub) |
#
# 14 FLOPs per parameter: a rounding error next to the model's 6 FLOPs per parameter *per token*.

# %%
#| export
ADAMW_FLOPS_PER_PARAM = 14  # m: 3, v: 4, update: 5, weight decay: 2 (see notebook 03)


def adamw_flops_per_step(config: dict) -> int:
    """Elementwise FLOPs of one AdamW step: ``ADAMW_FLOPS_PER_PARAM`` per parameter.

    >>> adamw_flops_per_step(dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64))
    378560
    """
    return ADAMW_FLOPS_PER_PARAM * parameter_counts(config)["total"]


def training_step_flops(config: dict, batch_size: int, seq_len: int | None = None) -> float:
    """FLOPs of one full training step: forward + backward (3 × forward matmuls) + the AdamW update.

    >>> training_step_flops(dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64), 2)
    5318336
    """
    return training_flops(config, batch_size, seq_len) + adamw_flops_per_step(config)


def training_time_seconds(config: dict, steps: int, batch_size: int, peak_flops: float, mfu: float = 0.5,
                          seq_len: int | None = None) -> float:
    """Wall-clock seconds to run ``steps`` training steps at the given MFU of a ``peak_flops`` chip.

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> training_time_seconds(cfg, steps=1000, batch_size=2, peak_flops=1e9, mfu=0.5)
    10.636672
    """
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu={mfu!r} must be in (0, 1]")
    return steps * training_step_flops(config, batch_size, seq_len) / (mfu * peak_flops)

# %% [markdown]
# ## The GPT-2 family
#
# The handout's shapes: vocabulary 50,257, context 1,024, `d_ff = 4 · d_model`.

# %%
#| export
GPT2_SHAPES = {  # name: (num_layers, d_model, num_heads)
    "small": (12, 768, 12), "medium": (24, 1024, 16), "large": (36, 1280, 20), "xl": (48, 1600, 25),
}


def gpt2_config(name: str, context_length: int = 1024, **overrides) -> dict:
    """A GPT-2-shaped config (vocab 50,257, d_ff = 4·d_model) with our architecture.

    >>> gpt2_config("xl")["d_ff"]
    6400
    """
    if name not in GPT2_SHAPES:
        raise ValueError(f"unknown GPT-2 size {name!r}; choose one of {list(GPT2_SHAPES)}")
    layers, d_model, heads = GPT2_SHAPES[name]
    return {"vocab_size": 50257, "context_length": context_length, "d_model": d_model, "num_layers": layers,
            "num_heads": heads, "d_ff": 4 * d_model, **overrides}
