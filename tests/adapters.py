"""Glue between the assignment's test suite and ``cs336_basics``.

The function names and keyword arguments are the assignment's (``tests/adapters.py`` of CS336
Spring 2025 Assignment 1), so its test files can be dropped next to this one. Glue only: every
function builds our objects, loads the given weights and calls them; no logic lives here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO, Any, BinaryIO

import numpy.typing as npt
import torch
from torch import Tensor


def run_linear(d_in: int, d_out: int, weights: Tensor, in_features: Tensor) -> Tensor:
    from cs336_basics.nn import Linear

    layer = Linear(d_in, d_out, device=weights.device, dtype=weights.dtype)
    layer.load_state_dict({"weight": weights})
    return layer(in_features)


def run_embedding(vocab_size: int, d_model: int, weights: Tensor, token_ids: Tensor) -> Tensor:
    from cs336_basics.nn import Embedding

    layer = Embedding(vocab_size, d_model, device=weights.device, dtype=weights.dtype)
    layer.load_state_dict({"weight": weights})
    return layer(token_ids)


def run_swiglu(
    d_model: int, d_ff: int, w1_weight: Tensor, w2_weight: Tensor, w3_weight: Tensor, in_features: Tensor
) -> Tensor:
    from cs336_basics.nn import SwiGLU

    ffn = SwiGLU(d_model, d_ff, device=w1_weight.device, dtype=w1_weight.dtype)
    ffn.load_state_dict({"w1.weight": w1_weight, "w2.weight": w2_weight, "w3.weight": w3_weight})
    return ffn(in_features)


def run_scaled_dot_product_attention(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None) -> Tensor:
    from cs336_basics.nn import scaled_dot_product_attention

    return scaled_dot_product_attention(Q, K, V, mask)


def run_multihead_self_attention(
    d_model: int,
    num_heads: int,
    q_proj_weight: Tensor,
    k_proj_weight: Tensor,
    v_proj_weight: Tensor,
    o_proj_weight: Tensor,
    in_features: Tensor,
) -> Tensor:
    from cs336_basics.nn import CausalMultiHeadSelfAttention

    attn = CausalMultiHeadSelfAttention(
        d_model, num_heads, positional="none", device=q_proj_weight.device, dtype=q_proj_weight.dtype
    )
    attn.load_state_dict({"q_proj.weight": q_proj_weight, "k_proj.weight": k_proj_weight,
                          "v_proj.weight": v_proj_weight, "output_proj.weight": o_proj_weight})
    return attn(in_features)


def run_multihead_self_attention_with_rope(
    d_model: int,
    num_heads: int,
    max_seq_len: int,
    theta: float,
    q_proj_weight: Tensor,
    k_proj_weight: Tensor,
    v_proj_weight: Tensor,
    o_proj_weight: Tensor,
    in_features: Tensor,
    token_positions: Tensor | None = None,
) -> Tensor:
    from cs336_basics.nn import CausalMultiHeadSelfAttention

    attn = CausalMultiHeadSelfAttention(
        d_model, num_heads, max_seq_len, theta, device=q_proj_weight.device, dtype=q_proj_weight.dtype
    )
    attn.load_state_dict({"q_proj.weight": q_proj_weight, "k_proj.weight": k_proj_weight,
                          "v_proj.weight": v_proj_weight, "output_proj.weight": o_proj_weight})
    return attn(in_features, token_positions)


def run_rope(d_k: int, theta: float, max_seq_len: int, in_query_or_key: Tensor, token_positions: Tensor) -> Tensor:
    from cs336_basics.nn import RotaryPositionalEmbedding

    rope = RotaryPositionalEmbedding(theta, d_k, max_seq_len, device=in_query_or_key.device)
    return rope(in_query_or_key, token_positions)


def run_transformer_block(
    d_model: int,
    num_heads: int,
    d_ff: int,
    max_seq_len: int,
    theta: float,
    weights: dict[str, Tensor],
    in_features: Tensor,
) -> Tensor:
    from cs336_basics.nn import TransformerBlock

    block = TransformerBlock(d_model, num_heads, d_ff, max_seq_len, theta, device=in_features.device)
    block.load_state_dict(weights)
    return block(in_features)


def run_transformer_lm(
    vocab_size: int,
    context_length: int,
    d_model: int,
    num_layers: int,
    num_heads: int,
    d_ff: int,
    rope_theta: float,
    weights: dict[str, Tensor],
    in_indices: Tensor,
) -> Tensor:
    from cs336_basics.model import TransformerLM

    model = TransformerLM(vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta,
                          device=in_indices.device)
    model.load_state_dict(weights)
    return model(in_indices)


def run_rmsnorm(d_model: int, eps: float, weights: Tensor, in_features: Tensor) -> Tensor:
    from cs336_basics.nn import RMSNorm

    norm = RMSNorm(d_model, eps, device=weights.device, dtype=weights.dtype)
    norm.load_state_dict({"weight": weights})
    return norm(in_features)


def run_silu(in_features: Tensor) -> Tensor:
    from cs336_basics.nn import silu

    return silu(in_features)


def run_get_batch(
    dataset: npt.NDArray, batch_size: int, context_length: int, device: str
) -> tuple[Tensor, Tensor]:
    from cs336_basics.data import get_batch

    return get_batch(dataset, batch_size, context_length, device)


def run_softmax(in_features: Tensor, dim: int) -> Tensor:
    from cs336_basics.nn import softmax

    return softmax(in_features, dim)


def run_cross_entropy(inputs: Tensor, targets: Tensor) -> Tensor:
    from cs336_basics.nn_utils import cross_entropy

    return cross_entropy(inputs, targets)


def run_gradient_clipping(parameters: Iterable[torch.nn.Parameter], max_l2_norm: float) -> None:
    from cs336_basics.nn_utils import clip_gradients

    clip_gradients(parameters, max_l2_norm)


def get_adamw_cls() -> Any:
    from cs336_basics.optimizer import AdamW

    return AdamW


def run_get_lr_cosine_schedule(
    it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    from cs336_basics.optimizer import cosine_lr

    return cosine_lr(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters)


def run_save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | BinaryIO | IO[bytes],
) -> None:
    from cs336_basics.serialization import save_checkpoint

    save_checkpoint(model, optimizer, iteration, out)


def run_load_checkpoint(
    src: str | os.PathLike | BinaryIO | IO[bytes], model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> int:
    from cs336_basics.serialization import load_checkpoint

    return load_checkpoint(src, model, optimizer)


def get_tokenizer(
    vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str] | None = None
) -> Any:
    from cs336_basics.tokenizer import Tokenizer

    return Tokenizer(vocab, merges, special_tokens)


def run_train_bpe(
    input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str], **kwargs
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    from cs336_basics.bpe import train_bpe

    return train_bpe(input_path, vocab_size, special_tokens, **kwargs)
