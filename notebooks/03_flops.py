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
# A config is `TransformerLM`'s constructor keywords (or a `model.ModelConfig`, which holds the
# same settings). The ablation switches have the model's defaults and choices, read from
# `ModelConfig`; `d_ff=None` means the model's default width (`nn.default_d_ff`: about 8/3 · d_model
# rounded to a multiple of 64 for SwiGLU, 4 · d_model for the ungated SiLU FFN). `norm="pre"`
# has a final RMSNorm before the LM head, `"post"` and `"none"` do not.
#
# Values need only support `+ * /`, so besides ints they may be `sympy` symbols: then every
# function below returns a formula instead of a number. We use that to answer the handout's
# "give an algebraic expression" questions with the very code that produces the numbers.

# %%
#| export
"""Parameter, FLOP and memory accounting for the Transformer LM, as pure functions of its config.

A config is the dict of ``TransformerLM`` keyword arguments (``model.config``), or a ``ModelConfig``::

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

import dataclasses

from cs336_basics.model import ModelConfig  # the model's defaults and choices, defined once
from cs336_basics.nn import CANON_WIDTH, default_d_ff

_REQUIRED = ModelConfig.SIZES
_CHOICES = ModelConfig.choices()
# TransformerLM's keyword defaults: ModelConfig's, with d_ff=None for "the model's default width"
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.name not in _REQUIRED} | {"d_ff": None}


def resolve_config(config: dict | ModelConfig) -> dict:
    """Fill in the model's defaults and check the config; returns a new dict.

    >>> resolve_config(dict(vocab_size=10, context_length=8, d_model=64, num_layers=1, num_heads=2))["d_ff"]
    192
    """
    if isinstance(config, ModelConfig):
        config = config.as_kwargs()
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
        cfg["d_ff"] = default_d_ff(cfg["d_model"], cfg["ffn"])  # the model's rule, defined once
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


def _seq(cfg: dict, seq_len, batch_size=1):
    """The sequence length to count (default context_length), after checking it and the batch size."""
    if isinstance(batch_size, int) and batch_size < 0:
        raise ValueError(f"batch_size={batch_size} must be a non-negative integer")
    if seq_len is None:
        return cfg["context_length"]
    context = cfg["context_length"]
    if isinstance(seq_len, int) and isinstance(context, int) and not 0 < seq_len <= context:
        raise ValueError(f"seq_len={seq_len} must be in 1..context_length={context}; the model cannot see more")
    return seq_len

# %% [markdown]
# ## Parameters
#
# Each `Linear` is a `(out, in)` matrix without bias, each `RMSNorm` a gain vector of size
# `d_model`. A block holds four `d_model × d_model` attention projections, the FFN's two or three
# `d_model × d_ff` matrices and two norms (with `qk_norm`, two more gains of size `d_k` for the
# queries and keys); around the blocks sit the token embedding, the final norm and the LM head
# (shared with the embedding when `tie_embeddings=True`).

# %%
#| export
def parameter_counts(config: dict) -> dict:
    """Trainable parameters per component, for one layer and in total.

    Keys: ``embedding``, ``attn_q``/``attn_k``/``attn_v``/``attn_o``, ``ffn_w1``/``ffn_w2``/``ffn_w3``,
    ``norms`` (ln1 + ln2, + the q/k gains with ``qk_norm``), ``value_scale`` (1 with ``value_embedding``),
    ``canon`` (canon_attn + canon_ffn, or 0) — these per layer —, ``final_norm``, ``lm_head`` (0 when
    tied), ``value_embedding`` (its table, or 0), ``skip_weights`` (num_layers // 2 with ``unet_skips``),
    ``shift_gate`` (d_model with ``token_shift``), ``bigram_embedding`` (its table, bigram_buckets x
    d_model or x bigram_dim, or 0), ``bigram_projection`` (d_model x bigram_dim), ``per_layer`` and ``total``.

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
        "norms": (2 * d if has_norm else 0) + (2 * d // cfg["num_heads"] if cfg["qk_norm"] else 0),
        "value_scale": 1 if cfg["value_embedding"] else 0,
        "canon": 2 * CANON_WIDTH * d if cfg["canon"] else 0,
    }
    # pre-norm ends with a final RMSNorm; post-norm blocks already end normalized, so it has none
    counts = {"embedding": v * d, **layer, "final_norm": d if cfg["norm"] == "pre" else 0,
              "lm_head": 0 if cfg["tie_embeddings"] else v * d, "value_embedding": v * d if cfg["value_embedding"] else 0,
              "skip_weights": cfg["num_layers"] // 2 if cfg["unet_skips"] else 0,
              "shift_gate": d if cfg["token_shift"] else 0,
              "bigram_embedding": cfg["bigram_buckets"] * (cfg["bigram_dim"] or d),
              "bigram_projection": d * cfg["bigram_dim"]}
    counts["per_layer"] = sum(layer.values())
    counts["total"] = counts["embedding"] + cfg["num_layers"] * counts["per_layer"] + counts["final_norm"] \
        + counts["lm_head"] + counts["value_embedding"] + counts["skip_weights"] + counts["shift_gate"] \
        + counts["bigram_embedding"] + counts["bigram_projection"]
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
# The handout counts the full `T × T` score matrix, masked afterwards; that is the convention for
# the answers and for MFU below. Our model can do a little less: it splits the queries into
# blocks of `query_block` (64) and skips the keys that the causal mask hides from a whole block,
# so for sequences longer than one block its QKᵀ and attention·V shrink towards half.
# `forward_flops(..., query_block=64)` counts exactly that. The embedding is a lookup (no FLOPs).

# %%
#| export
def _attended_pairs(seq, query_block):
    """(query, key) score entries computed per head: seq² for dense attention; with causal query
    blocks, block [i0, i1) scores keys 0 .. i1 only (the later keys are masked for all of it)."""
    if query_block is None or query_block >= seq:
        return seq * seq
    return sum((min(i0 + query_block, seq) - i0) * min(i0 + query_block, seq) for i0 in range(0, seq, query_block))


def forward_flops(config: dict, batch_size: int = 1, seq_len: int | None = None, *,
                  query_block: int | None = None) -> dict:
    """Matmul FLOPs of one forward pass over ``batch_size`` sequences of ``seq_len`` tokens
    (default ``context_length``).

    ``query_block=None`` counts dense attention (every query scores every key: the handout's and
    MFU's convention); an int counts the model's causal query blocks, which skip keys that the
    mask hides from a whole block (the model's ``attn.query_block``).

    Keys (summed over layers): ``attn_qkv`` (Q, K, V projections), ``attn_scores`` (QKᵀ),
    ``attn_values`` (attention·V), ``attn_out`` (output projection), ``ffn_w1``, ``ffn_w2``,
    ``ffn_w3`` (0 for the SiLU FFN), ``lm_head``, ``bigram_projection`` (0 unless ``bigram_dim``), and
    the groups ``attention`` (the four above), ``ffn`` and ``total``.

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> f = forward_flops(cfg, batch_size=1); f["attn_scores"], f["lm_head"], f["total"]
    (32768, 102400, 823296)
    >>> forward_flops(cfg, batch_size=1, query_block=8)["attn_scores"]   # keys 0..8, then 0..16: 3/4
    24576
    """
    cfg = resolve_config(config)
    seq = _seq(cfg, seq_len, batch_size)
    tokens = batch_size * seq
    d, f, v, n = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"], cfg["num_layers"]
    flops = {
        "attn_qkv": n * 3 * 2 * tokens * d * d,
        # per head 2·T·T·d_k (dense), times h heads; d = h·d_k
        "attn_scores": n * 2 * batch_size * _attended_pairs(seq, query_block) * d,
        "attn_values": n * 2 * batch_size * _attended_pairs(seq, query_block) * d,
        "attn_out": n * 2 * tokens * d * d,
        "ffn_w1": n * 2 * tokens * d * f,
        "ffn_w2": n * 2 * tokens * f * d,
        "ffn_w3": n * 2 * tokens * d * f if cfg["ffn"] == "swiglu" else 0,
        "lm_head": 2 * tokens * d * v,
        "bigram_projection": 2 * tokens * cfg["bigram_dim"] * d,
    }
    flops["attention"] = flops["attn_qkv"] + flops["attn_scores"] + flops["attn_values"] + flops["attn_out"]
    flops["ffn"] = flops["ffn_w1"] + flops["ffn_w2"] + flops["ffn_w3"]
    flops["total"] = flops["attention"] + flops["ffn"] + flops["lm_head"] + flops["bigram_projection"]
    return flops

# %% [markdown]
# The tiny model's forward pass, component by component:

# %%
from cs336_basics.accounting import forward_flops

f = forward_flops(tiny, batch_size=1)
assert f["total"] == sum(v for k, v in f.items() if k not in ("attention", "ffn", "total"))
f

# %% [markdown]
# Is that what the real model computes? torch's `FlopCounterMode` intercepts every matmul-like op
# (`mm`, `bmm`, `baddbmm`, ...) and adds up 2·m·n·k; it ignores elementwise ops, as we do.
# `tests/test_accounting.py` repeats this for the ablations and per component.

# %%
import torch
from torch.utils.flop_counter import FlopCounterMode

from cs336_basics.model import TransformerLM

torch.manual_seed(0)
tiny_lm = TransformerLM(**tiny)
tiny_ids = torch.randint(0, tiny["vocab_size"], (1, tiny["context_length"]))
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    tiny_lm(tiny_ids)
print(f"FlopCounterMode: {counter.get_total_flops():,}   accountant: {f['total']:,}")
assert counter.get_total_flops() == f["total"]

# %% [markdown]
# ## Training FLOPs
#
# Backpropagating through `Y = X @ W` needs `dX = dY @ Wᵀ` and `dW = Xᵀ @ dY`: two matmuls of the
# same size as the forward one. Every matmul in the model has inputs that need gradients (even
# the first one: its input comes from the trainable embedding), so **a training step's matmul
# FLOPs are exactly 3× the forward's**. Elementwise work (norms, softmax, the optimizer) comes on top and is small.

# %%
#| export
def training_flops(config: dict, batch_size: int = 1, seq_len: int | None = None, *,
                   query_block: int | None = None) -> float:
    """Matmul FLOPs of one forward + backward pass: 3 × forward (backward = 2 × forward).

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> training_flops(cfg, batch_size=2)
    4939776
    """
    return 3 * forward_flops(config, batch_size, seq_len, query_block=query_block)["total"]


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
    Model FLOPs are ``training_flops_per_token`` with dense attention, the usual convention: work
    an implementation skips (causal blocks) makes it faster, not less utilized.

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
# The 3× rule, checked on the tiny model's forward and backward:

# %%
from cs336_basics.accounting import training_flops

with FlopCounterMode(display=False) as counter:
    tiny_lm(tiny_ids).logsumexp(-1).mean().backward()
assert counter.get_total_flops() == training_flops(tiny, batch_size=1) == 3 * f["total"]
counter.get_total_flops()

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

    Per layer: ``norms`` (2 RMSNorm outputs, 0 without norms; + the normalised q, k with ``qk_norm``),
    ``qkv`` (3), ``scores`` (QKᵀ), ``softmax``, ``attn_values`` (weighted sum), ``attn_out``,
    ``ffn_inner`` (W1 and SiLU outputs, + W3 output and gated product for SwiGLU), ``ffn_out`` (W2);
    then ``final_norm``, ``logits`` (twice with a softcap), ``cross_entropy`` (softmax over the
    logits); ``per_layer`` and ``total``.

    >>> cfg = dict(vocab_size=100, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    >>> a = activation_counts(cfg); a["scores"], a["per_layer"], a["total"]
    (1024, 10240, 24192)
    """
    cfg = resolve_config(config)
    seq = _seq(cfg, seq_len, batch_size)
    bt = batch_size * seq
    d, f, h, v = cfg["d_model"], cfg["d_ff"], cfg["num_heads"], cfg["vocab_size"]
    has_norm = cfg["norm"] != "none"
    layer = {
        "norms": (2 * bt * d if has_norm else 0) + (2 * bt * d if cfg["qk_norm"] else 0),
        "qkv": 3 * bt * d,
        "scores": batch_size * h * seq * seq,
        "softmax": batch_size * h * seq * seq,
        "attn_values": bt * d,
        "attn_out": bt * d,
        "ffn_inner": (4 if cfg["ffn"] == "swiglu" else 2) * bt * f,
        "ffn_out": bt * d,
    }
    counts = {**layer, "final_norm": bt * d if cfg["norm"] == "pre" else 0,
              "logits": bt * v * (2 if cfg["logit_softcap"] else 1),  # a softcap keeps both (tanh's backward)
              "cross_entropy": bt * v}
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
# How good is that list? Autograd can tell us what it really keeps: a `saved_tensors_hooks` pack
# hook sees every tensor saved for backward. We add up the distinct ones (parameters aside) for a
# small model and compare with the estimate.

# %%
from cs336_basics.accounting import activation_memory

saved_cfg = dict(vocab_size=1000, context_length=64 if SMOKE else 128, d_model=128 if SMOKE else 256,
                 num_layers=2 if SMOKE else 4, num_heads=8, d_ff=None)
torch.manual_seed(0)
probe = TransformerLM(**saved_cfg)
probe_ids = torch.randint(0, saved_cfg["vocab_size"], (4, saved_cfg["context_length"]))
param_ptrs = {p.data_ptr() for p in probe.parameters()}
saved = {}


def record(t):
    if t.data_ptr() not in param_ptrs:
        saved[t.data_ptr()] = t.untyped_storage().nbytes()
    return t


with torch.autograd.graph.saved_tensors_hooks(record, lambda t: t):
    logits = probe(probe_ids)
    # cross-entropy: log-sum-exp minus the target logit (notebook 04 has the real one)
    loss = (logits.logsumexp(-1) - logits.gather(-1, probe_ids[..., None]).squeeze(-1)).mean()
estimate = activation_memory(saved_cfg, batch_size=4)
print(f"autograd saves {sum(saved.values()) / 1e6:.1f} MB; the handout-style estimate is {estimate / 1e6:.1f} MB")
assert 0.75 < estimate / sum(saved.values()) < 1.25

# %% [markdown]
# Close. The list misses a few things our implementation keeps (each RMSNorm's input and
# per-token scale, the concatenated copy of the Q, K, V weights, the RoPE tables and the causal
# mask) and counts one it does not (only the softmax output is kept, not the raw scores), but the
# big terms — the `h·T²` attention matrices, the FFN's `d_ff`-wide tensors and the `vocab`-wide
# logits — are all there.

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

# %% [markdown]
# Because the accountant only adds and multiplies, feeding it `sympy` symbols prints the formulas
# it implements (here for a SwiGLU model and a batch of `B` sequences of `T` tokens):

# %%
import sympy

V, T, d, L, h, f, B = sympy.symbols("V T d L h d_ff B", positive=True, integer=True)
symbolic = dict(vocab_size=V, context_length=T, d_model=d, num_layers=L, num_heads=h, d_ff=f)
print("parameters   =", sympy.factor_terms(parameter_counts(symbolic)["total"]))
print("forward FLOPs =", sympy.collect(sympy.expand(forward_flops(symbolic, B)["total"]), L))

# %% [markdown]
# # Problem (transformer_accounting)
#
# ## (a) GPT-2 XL: parameters and memory
#
# The handout's GPT-2 XL shape (vocab 50,257, context 1,024, 48 layers, d_model 1,600, 25 heads,
# d_ff 6,400) built with our architecture (SwiGLU FFN, untied LM head):


# %%
import tempfile

from IPython.display import Markdown

from cs336_basics.accounting import (GPT2_SHAPES, activation_counts, adamw_flops_per_step, adamw_memory,
                                     gpt2_config, max_batch_size, parameter_memory, training_flops_per_token,
                                     training_time_seconds)

FIG_DIR = Path(tempfile.mkdtemp()) if SMOKE else FIGURES
FIG_DIR.mkdir(parents=True, exist_ok=True)


def table(headers, rows):
    """A markdown table for the reader (numbers formatted by the caller)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


xl = gpt2_config("xl")
xl_params = parameter_counts(xl)
L_xl = xl["num_layers"]
assert xl_params["total"] == 2_127_057_600
table(["component", "parameters", "share"], [
    ["token embedding (V·d)", f"{xl_params['embedding']:,}", f"{xl_params['embedding'] / xl_params['total']:.1%}"],
    [f"attention q, k, v, o ({L_xl} layers × 4d²)", f"{L_xl * 4 * xl_params['attn_q']:,}",
     f"{L_xl * 4 * xl_params['attn_q'] / xl_params['total']:.1%}"],
    [f"SwiGLU w1, w2, w3 ({L_xl} × 3·d·d_ff)", f"{L_xl * 3 * xl_params['ffn_w1']:,}",
     f"{L_xl * 3 * xl_params['ffn_w1'] / xl_params['total']:.1%}"],
    [f"RMSNorm gains ({L_xl} × 2d + d)", f"{L_xl * xl_params['norms'] + xl_params['final_norm']:,}", "0.0%"],
    ["LM head (d·V)", f"{xl_params['lm_head']:,}", f"{xl_params['lm_head'] / xl_params['total']:.1%}"],
    ["**total**", f"**{xl_params['total']:,}**", "100%"],
])

# %%
print(f"float32 parameters: {parameter_memory(xl) / 1e9:.2f} GB ({parameter_memory(xl) / 2**30:.2f} GiB)")

# %% [markdown]
# **Answer (a).** Our GPT-2 XL-shaped model has **2,127,057,600 ≈ 2.13 B** trainable parameters
# (1.97 B in the 48 blocks, 2 × 80.4 M in the untied embedding and LM head); in float32 (4 bytes
# each) just loading it takes **8.51 GB (7.92 GiB)**. Tying the embeddings would save 80.4 M.
#
# ## (b) The matmuls of one forward pass
#
# One sequence of `context_length = 1024` tokens (`B = 1`, `T = 1024`, `d = 1600`, `d_ff = 6400`,
# `h = 25`, `d_k = 64`, `V = 50257`):

# %%
fw_xl = forward_flops(xl, batch_size=1)
T_xl, d_xl, f_xl, V_xl = xl["context_length"], xl["d_model"], xl["d_ff"], xl["vocab_size"]
matmuls = [
    ("Q, K, V projections", f"3 × ({T_xl}×{d_xl}) @ ({d_xl}×{d_xl})", "attn_qkv", L_xl),
    ("QKᵀ scores", f"{xl['num_heads']} heads × ({T_xl}×64) @ (64×{T_xl})", "attn_scores", L_xl),
    ("attention · V", f"{xl['num_heads']} heads × ({T_xl}×{T_xl}) @ ({T_xl}×64)", "attn_values", L_xl),
    ("output projection", f"({T_xl}×{d_xl}) @ ({d_xl}×{d_xl})", "attn_out", L_xl),
    ("FFN W1 (gate)", f"({T_xl}×{d_xl}) @ ({d_xl}×{f_xl})", "ffn_w1", L_xl),
    ("FFN W3 (up)", f"({T_xl}×{d_xl}) @ ({d_xl}×{f_xl})", "ffn_w3", L_xl),
    ("FFN W2 (down)", f"({T_xl}×{f_xl}) @ ({f_xl}×{d_xl})", "ffn_w2", L_xl),
    ("LM head", f"({T_xl}×{d_xl}) @ ({d_xl}×{V_xl})", "lm_head", 1),
]
table(["matmul", "shapes (per layer)", "× count", "FLOPs per layer", "total FLOPs", "share"],
      [[name, shapes, n, f"{fw_xl[key] / n:.4g}", f"{fw_xl[key]:.4g}", f"{fw_xl[key] / fw_xl['total']:.1%}"]
       for name, shapes, key, n in matmuls]
      + [["**total**", "", "", "", f"**{fw_xl['total']:.4g}**", "100%"]])

# %% [markdown]
# **Answer (b).** Per layer: the Q, K, V projections (3 × 2·T·d² = 15.7 GFLOPs), QKᵀ
# (2·T²·d = 3.36 GFLOPs over all heads), attention·V (3.36 GFLOPs), the output projection
# (2·T·d² = 5.24 GFLOPs) and the SwiGLU's W1, W3, W2 (3 × 2·T·d·d_ff = 62.9 GFLOPs); once, the LM
# head (2·T·d·V = 165 GFLOPs). In total one 1,024-token forward pass of GPT-2 XL takes
# **4.51 × 10¹² FLOPs (4.51 TFLOPs)**.
#
# **Answer (c).** The feed-forward networks dominate: **67%** of the FLOPs (3.02 TFLOPs), then the
# attention projections (Q, K, V, O: 22%); the T²-terms QKᵀ and attention·V are 7% together and the
# LM head 3.6%.
#
# ## (d) Across the GPT-2 family
#
# Same vocabulary and context 1,024, `d_ff = 4 · d_model`:

# %%
groups = {"attn Q,K,V,O proj": ("attn_qkv", "attn_out"), "attn QKᵀ + ·V": ("attn_scores", "attn_values"),
          "FFN": ("ffn",), "LM head": ("lm_head",)}
shares = {}
for name in GPT2_SHAPES:
    fw = forward_flops(gpt2_config(name), batch_size=1)
    shares[name] = {g: sum(fw[k] for k in keys) / fw["total"] for g, keys in groups.items()}
    shares[name]["total"] = fw["total"]
table(["model", "params", "forward TFLOPs", *groups],
      [[name, f"{parameter_counts(gpt2_config(name))['total'] / 1e6:,.0f} M", f"{s['total'] / 1e12:.3f}",
        *(f"{s[g]:.1%}" for g in groups)] for name, s in shares.items()])

# %%
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6.5, 3.5))
bottom = [0.0] * len(shares)
for g in groups:
    values = [s[g] for s in shares.values()]
    ax.bar(list(shares), values, bottom=bottom, label=g)
    bottom = [b + v for b, v in zip(bottom, values)]
ax.set_ylabel("share of forward FLOPs")
ax.set_title("GPT-2 shapes, context 1,024: where the FLOPs go")
ax.legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)
fig.tight_layout()
fig.savefig(FIG_DIR / "flops_share_gpt2.png", dpi=120)
plt.show()

# %% [markdown]
# **Answer (d).** FLOPs share by component (forward pass, 1,024 tokens):
#
# | model | forward | attn Q,K,V,O | QKᵀ + attn·V | FFN | LM head |
# |---|---|---|---|---|---|
# | small (190 M) | 0.35 TFLOPs | 16.6% | 11.1% | 49.8% | 22.6% |
# | medium (506 M) | 1.03 TFLOPs | 20.0% | 10.0% | 59.9% | 10.2% |
# | large (1.07 B) | 2.26 TFLOPs | 21.4% | 8.6% | 64.2% | 5.8% |
# | XL (2.13 B) | 4.51 TFLOPs | 22.3% | 7.1% | 66.9% | 3.6% |
#
# (Parameter counts are for our architecture: untied LM head and a three-matrix SwiGLU at
# d_ff = 4d, so GPT-2 small has 190 M here against the original's 124 M.)
#
# As the model grows, the parts that scale with d² per layer (FFN and the attention projections)
# take a growing share, while the LM head (linear in d, paid once) and the attention-score
# matmuls (T²·d per layer, linear in d) shrink: the LM head goes from 23% to 4% of the FLOPs.
#
# ## (e) GPT-2 XL at context 16,384

# %%
contexts = [1024, 2048, 4096, 8192, 16384]
ctx_shares = []
for T_ctx in contexts:
    fw = forward_flops(gpt2_config("xl", context_length=T_ctx), batch_size=1)
    ctx_shares.append({g: sum(fw[k] for k in keys) / fw["total"] for g, keys in groups.items()} | {"total": fw["total"]})
table(["context", "forward TFLOPs", "× 1,024's", *groups],
      [[f"{T_ctx:,}", f"{s['total'] / 1e12:.1f}", f"{s['total'] / ctx_shares[0]['total']:.1f}",
        *(f"{s[g]:.1%}" for g in groups)] for T_ctx, s in zip(contexts, ctx_shares)])

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.5))
for g in groups:
    ax.plot(contexts, [s[g] for s in ctx_shares], marker="o", label=g)
ax.set_xscale("log", base=2)
ax.set_xticks(contexts, [f"{c:,}" for c in contexts])
ax.set_xlabel("context length (tokens)")
ax.set_ylabel("share of forward FLOPs")
ax.set_title("GPT-2 XL: FLOPs share as the context grows")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG_DIR / "flops_share_context.png", dpi=120)
plt.show()

# %% [markdown]
# **Answer (e).** At context 16,384 one forward pass of GPT-2 XL takes **149.5 TFLOPs, 33× the
# 4.51 TFLOPs at 1,024** (16× the tokens, and the per-token cost of attention grows with T). The
# QKᵀ and attention·V matmuls go from 7% to **55%** of the FLOPs and become the largest part; the
# FFN falls from 67% to 32%, the Q, K, V, O projections from 22% to 11% and the LM head from 3.6% to
# 1.8%.
#
# # Problem (adamwAccounting)
#
# ## (a) Peak memory of training with AdamW
#
# Everything float32 (4 bytes). With `P` parameters: parameters `4P` bytes, gradients `4P`, AdamW's
# state (first and second moments) `8P`. Activations as listed in the section above. Our FFN is
# SwiGLU, so besides the handout's W1 output, SiLU output and W2 output it also saves the W3 output
# and the gated product; the handout's literal list (ungated `W2·SiLU(W1 x)`) is `ffn="silu"`.
# Asking the accountant with symbols (`B` = batch_size, `T` = context_length, `d_ff = 4d`):

# %%
sym_4d = dict(symbolic, d_ff=4 * d)
for label, cfg in [("SwiGLU (our model)", sym_4d), ("SiLU FFN (handout's list)", dict(sym_4d, ffn="silu"))]:
    P = sympy.factor_terms(parameter_counts(cfg)["total"])
    mem = adamw_memory(cfg, B)
    acts = sympy.collect(sympy.expand(activation_counts(cfg, B)["total"]), L)
    print(f"{label}:\n  P = {P}\n  activations (floats) = {acts}")
    print(f"  bytes: parameters 4P, gradients 4P, optimizer state 8P, activations 4·(above)")
    total = sympy.expand(mem["total"] - 16 * parameter_counts(cfg)["total"] - 4 * activation_counts(cfg, B)["total"])
    assert total == 0

# %% [markdown]
# **Answer (a).** With `V` = vocab_size, `T` = context_length, `d` = d_model, `L` = num_layers,
# `h` = num_heads, `B` = batch_size and d_ff = 4d, in bytes (float32):
#
# - parameters: `4P` with `P = 2Vd + L(16d² + 2d) + d` (SwiGLU: 4d² attention + 3·d·4d FFN + 2 norms
#   per layer; embedding, LM head, final norm). For the ungated FFN `P = 2Vd + L(12d² + 2d) + d`.
# - gradients: `4P`.
# - optimizer state (m and v): `8P`.
# - activations: `4 · [L · (B·T·(2d + 3d + d + d + 16d + d) + 2·B·h·T²) + B·T·d + 2·B·T·V]`
#   `= 4 · [L·(24·B·T·d + 2·B·h·T²) + B·T·d + 2·B·T·V]`: per layer the two RMSNorm outputs (2d),
#   Q, K, V (3d), the weighted sum of values (d), the output projection (d), the FFN's W1 output,
#   W3 output, SiLU output and gated product (4 × 4d) and W2 output (d), plus the QKᵀ scores and
#   the softmax (h·T² each per sequence); then the final norm (d), the logits (V) and
#   cross-entropy's softmax (V) per token. With the handout's ungated FFN the `24` becomes `16`.
# - total: `16P + activations`.
#
# ## (b) GPT-2 XL on 80 GB

# %%
rows = []
for label, cfg in [("SwiGLU (our model)", xl), ("SiLU FFN (handout's list)", dict(xl, ffn="silu"))]:
    fixed = adamw_memory(cfg, 0)["total"]
    per_seq = adamw_memory(cfg, 1)["total"] - fixed
    rows.append([label, f"{per_seq / 1e9:.2f}", f"{fixed / 1e9:.2f}", max_batch_size(cfg, 80e9)])
table(["GPT-2 XL, float32", "a (GB per sequence)", "b (GB)", "max batch in 80 GB"], rows)

# %%
mem_xl = adamw_memory(xl, 1)
table(["part", "GB (batch 1)"], [[k, f"{v / 1e9:.2f}"] for k, v in mem_xl.items()])

# %% [markdown]
# **Answer (b).** For GPT-2 XL (SwiGLU, d_ff 6,400): memory ≈ **18.03 GB · batch_size + 34.03 GB**
# (b = 16 bytes × 2.127 B parameters; a is dominated by the 48 layers' attention scores and
# softmax, 2·25·1024² floats each per layer, and the FFN's inner tensors). The **maximum batch
# size in 80 GB is 2**. With the handout's ungated FFN (P = 1.64 B): 15.52 GB · batch_size +
# 26.17 GB, maximum batch size 3.
#
# ## (c) FLOPs of one AdamW step

# %%
print(f"AdamW step, GPT-2 XL: {adamw_flops_per_step(xl) / 1e9:.1f} GFLOPs "
      f"(vs {3 * forward_flops(xl, 1)['total'] / 1e12:.1f} TFLOPs of forward+backward per 1,024-token sequence)")

# %% [markdown]
# **Answer (c).** AdamW is elementwise: per parameter, 3 FLOPs for `m ← β₁m + (1−β₁)g`, 4 for
# `v ← β₂v + (1−β₂)g²`, 5 for `θ ← θ − α_t·m/(√v + ε)` and 2 for the decoupled weight decay
# `θ ← θ − αλθ` (the bias-corrected step size `α_t` is one scalar per step). One step costs
# **14·P FLOPs** with `P = 2Vd + L(16d² + 2d) + d`: about 29.8 GFLOPs for GPT-2 XL, negligible next
# to the 13.5 TFLOPs of forward and backward for every single 1,024-token sequence of the batch.
#
# ## (d) Training GPT-2 XL on one A100

# %%
steps, batch = 400_000, 1024
for chip, peak in [("A100, float32 (handout: 19.5 TFLOP/s)", 19.5e12),
                   ("H100 SXM, float32 (67 TFLOP/s)", 67e12),
                   ("H100 SXM, bf16 tensor cores (989 TFLOP/s dense)", 989e12)]:
    seconds = training_time_seconds(xl, steps, batch, peak, mfu=0.5)
    print(f"{chip:50s} {seconds / 86400:8,.0f} days at 50% MFU")

# %% [markdown]
# **Answer (d).** One step processes 1,024 × 1,024 tokens; forward is 4.51 TFLOPs per sequence and
# backward twice that, so a step is 3 × 4.51 T × 1,024 = 1.39 × 10¹⁶ FLOPs (+ 30 GFLOPs for AdamW).
# 400 K steps are 5.55 × 10²¹ FLOPs; at 50% of the A100's 19.5 TFLOP/s (9.75 × 10¹² FLOP/s) that is
# 5.69 × 10⁸ s ≈ **6,584 days (about 18 years)**. The same at 50% of an H100's float32 peak
# (67 TFLOP/s) is about 1,916 days; only low precision on tensor cores (bf16, 989 TFLOP/s dense)
# brings it to about 130 days.

# %% [markdown]
# # Model FLOPs utilization on this machine
#
# MFU = (tokens per second × model FLOPs per token) / the hardware's peak FLOP/s. The model FLOPs
# are the accountant's: matmuls only, 3 × forward for a training step, whatever the implementation
# actually executes. For "peak" we do not trust a datasheet: we measure the best a large torch
# matmul reaches on this CPU. A quick version of both, here (the full measurement, with more
# sizes, bfloat16 and the AdamW step, is `benchmarks/bench_matmul_peak.py`):

# %%
import time

from cs336_basics.accounting import mfu


def best_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


n = 256 if SMOKE else 2048
a, b = torch.randn(n, n), torch.randn(n, n)
peak = 2 * n**3 / best_time(lambda: a @ b, 3 if SMOKE else 8)
print(f"float32 matmul {n}x{n}: {peak / 1e9:.1f} GFLOP/s (our 'peak')")

mfu_cfg = (dict(vocab_size=500, context_length=32, d_model=64, num_layers=2, num_heads=4, d_ff=192) if SMOKE else
           dict(vocab_size=10000, context_length=128, d_model=256, num_layers=4, num_heads=8, d_ff=704))
batch = 2 if SMOKE else 8
torch.manual_seed(0)
lm = TransformerLM(**mfu_cfg)
ids = torch.randint(0, mfu_cfg["vocab_size"], (batch, mfu_cfg["context_length"]))


def forward_backward():
    lm.zero_grad(set_to_none=True)
    logits = lm(ids)
    # cross-entropy against the next token: log-sum-exp minus the target logit (notebook 04 has the real one)
    loss = (logits[:, :-1].logsumexp(-1) - logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)).mean()
    loss.backward()


step_s = best_time(forward_backward, 2 if SMOKE else 5)
tokens_per_s = batch * mfu_cfg["context_length"] / step_s
print(f"forward+backward, batch {batch} x {mfu_cfg['context_length']}: {step_s * 1e3:.0f} ms, "
      f"{tokens_per_s:,.0f} tok/s, MFU {mfu(tokens_per_s, mfu_cfg, peak):.1%}")

# %% [markdown]
# Measured with `uv run python benchmarks/bench_matmul_peak.py --sizes 512 1024 2048 4096 --budget 3`
# (recorded in `benchmarks/RESULTS.md`) on a 2-core AMD EPYC with AVX-512 BF16 and no AMX, 2 threads,
# nothing else running:
#
# ```
# dtype          n  runs    best ms  GFLOP/s best  GFLOP/s median
# float32      512   500       1.29         208.2           204.0
# float32     1024   266      10.42         206.1           191.1
# float32     2048    31      90.62         189.6           181.4
# float32     4096     4     709.20         193.8           123.5
# bfloat16     512   500       0.62         431.8           426.2
# bfloat16    1024   500       4.98         431.3           425.4
# bfloat16    2048    71      41.34         415.6           406.2
# bfloat16    4096     9     339.93         404.3           371.8
#
# TransformerLM training step, float32: d_model 256, 4 layers, 8 heads, d_ff 704, context 128,
# vocab 10,000, batch 8 (8.33 M parameters)
#   model FLOPs per step: 37.07 GFLOP of matmuls (3 x forward; 36.20 MFLOP/token) + 117 MFLOP AdamW
#   step time best 304.3 ms, median 318.0 ms over 12 steps
#   throughput best 3,365 tok/s (median 3,220); achieved 121.8 GFLOP/s
#   MFU vs measured float32 peak 208.2 GFLOP/s: 58.5% best step, 56.0% median step
#   paired MFU (step vs 2048^2 matmuls timed around it): 63.9% best, 61.9% median
# ```
#
# How to read it. Every number is the best of many repeats, so that a moment when another process
# took a core does not count; the medians show how much that happened. The **float32 peak is 208
# GFLOP/s** and large matmuls sustain nearly as much (190–194). **bfloat16 runs at 432 GFLOP/s, 2.1x
# float32**: this CPU's AVX-512 BF16 instructions do two bf16 multiply-adds where float32 does one.
# That depends on the CPU: another machine of this project (an Intel Xeon with AMX tiles) ran bf16
# matmuls ~7x faster than float32, and an older one ran them at half speed.
#
# The training step's best run did 121.8 GFLOP/s of model FLOPs: **MFU 58.5%** against the float32
# peak. (Model FLOPs count dense attention, as usual; the model really multiplies 36.67 of the 37.07
# GFLOPs, its causal query blocks skipping masked keys.) Timing 2048² matmuls right before and after
# each step, so that both see the same contention, gives a paired ratio of 63.9%. The gap to the
# peak: apart from the LM head (42% of the FLOPs) the model's matmuls are small (`(1024 × 256) @
# (256 × 256)` projections, per-head `128 × 32` attention products), and the elementwise work
# (RMSNorm, RoPE, softmax, SiLU, cross-entropy, AdamW) and the backward's memory traffic cost time
# but count no model FLOPs. On a machine shared with other jobs these numbers fall by up to 10x:
# only a quiet moment shows the real ones.
#
# Next, notebook 04 builds the pieces of training and 04b the training loop; the loop's `mfu`
# metric comes from `accounting.training_flops_per_token`.
