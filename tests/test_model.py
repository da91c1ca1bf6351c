"""The Transformer LM and its parts against torch.nn.functional oracles (random weights, tiny sizes).

The oracles live here only: F.linear, F.embedding, F.rms_norm, F.silu, F.scaled_dot_product_attention,
a complex-number RoPE, and an LM assembled from them that loads the same state dict.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from cs336_basics.model import KVCache, TransformerLM
from cs336_basics.nn import (
    CausalMultiHeadSelfAttention,
    Embedding,
    Linear,
    RMSNorm,
    RotaryPositionalEmbedding,
    SwiGLU,
    TransformerBlock,
    default_d_ff,
    scaled_dot_product_attention,
    silu,
    silu_gate,
    softmax,
)
from cs336_basics.kernels import rms_norm


def _rms(x, w):
    return rms_norm(x, w, 1e-5)

from tests import adapters


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- oracles


def rope_oracle(x, positions, theta):
    """Rotate each adjacent pair (x[2k], x[2k+1]) by angle position * theta^(-2k/d), in real arithmetic."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions[..., None].double() * freqs
    cos, sin = angles.cos(), angles.sin()
    even, odd = x.double()[..., 0::2], x.double()[..., 1::2]
    out = torch.empty(torch.broadcast_shapes(x.shape, (*angles.shape[:-1], d)), dtype=torch.float64)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out.to(x.dtype)


def mha_oracle(x, w, num_heads, positions=None, theta=10000.0, prefix="attn."):
    *lead, s, d = x.shape
    split = lambda t: t.reshape(*lead, s, num_heads, d // num_heads).transpose(-3, -2)
    q, k, v = (split(F.linear(x, w[f"{prefix}{n}_proj.weight"])) for n in "qkv")
    if positions is not None:
        q, k = rope_oracle(q, positions, theta), rope_oracle(k, positions, theta)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(out.transpose(-3, -2).reshape(*lead, s, d), w[f"{prefix}output_proj.weight"])


def block_oracle(x, w, num_heads, theta=10000.0, prefix="", norm="pre", positional="rope", ffn="swiglu"):
    d = x.shape[-1]
    pos = torch.arange(x.shape[-2]) if positional == "rope" else None
    rms = lambda t, name: F.rms_norm(t, (d,), w[f"{prefix}{name}.weight"], eps=1e-5)
    attn = lambda t: mha_oracle(t, w, num_heads, pos, theta, prefix=f"{prefix}attn.")

    def feed_forward(t):
        hidden = F.silu(F.linear(t, w[f"{prefix}ffn.w1.weight"]))
        if ffn == "swiglu":
            hidden = hidden * F.linear(t, w[f"{prefix}ffn.w3.weight"])
        return F.linear(hidden, w[f"{prefix}ffn.w2.weight"])

    if norm == "pre":
        x = x + attn(rms(x, "ln1"))
        return x + feed_forward(rms(x, "ln2"))
    if norm == "post":
        x = rms(x + attn(x), "ln1")
        return rms(x + feed_forward(x), "ln2")
    x = x + attn(x)
    return x + feed_forward(x)


def lm_oracle(w, ids, num_layers, num_heads, theta=10000.0, norm="pre", positional="rope", ffn="swiglu"):
    x = F.embedding(ids, w["token_embeddings.weight"])
    for i in range(num_layers):
        x = block_oracle(x, w, num_heads, theta, f"layers.{i}.", norm, positional, ffn)
    if norm == "pre":
        x = F.rms_norm(x, (x.shape[-1],), w["ln_final.weight"], eps=1e-5)
    return F.linear(x, w["lm_head.weight"])


def randomize_norms(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_final.weight")) or isinstance(module, RMSNorm):
                p.uniform_(0.5, 1.5)
    return module


def tiny_lm(**kw):
    args = dict(vocab_size=64, context_length=24, d_model=32, num_layers=2, num_heads=4)
    args.update(kw)
    return randomize_norms(TransformerLM(**args))


# ---------------------------------------------------------------- components


@pytest.mark.parametrize("shape", [(7, 16), (2, 5, 16), (2, 3, 5, 16)])
def test_linear_matches_f_linear(shape):
    layer = Linear(16, 24)
    x = torch.randn(shape)
    assert layer.weight.shape == (24, 16)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight))
    torch.testing.assert_close(adapters.run_linear(16, 24, layer.weight.data, x), F.linear(x, layer.weight))


def test_linear_and_embedding_init():
    w = Linear(300, 500).weight
    std = math.sqrt(2 / 800)
    assert abs(w.std().item() / std - 1) < 0.05 and w.abs().max() <= 3 * std
    e = Embedding(400, 300).weight
    assert abs(e.std().item() - 1) < 0.05 and e.abs().max() <= 3


def test_device_and_dtype_arguments():
    model = TransformerLM(32, 8, 16, 1, 2, device="cpu", dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model(torch.randint(0, 32, (1, 8))).dtype == torch.float64
    assert model.layers[0].attn.rope.cos.device.type == "cpu"


@pytest.mark.parametrize("shape", [(9,), (2, 5), (2, 3, 4)])
def test_embedding_matches_f_embedding(shape):
    emb = Embedding(50, 8)
    ids = torch.randint(0, 50, shape)
    torch.testing.assert_close(emb(ids), F.embedding(ids, emb.weight))
    torch.testing.assert_close(adapters.run_embedding(50, 8, emb.weight.data, ids), F.embedding(ids, emb.weight))
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.uint16):
        torch.testing.assert_close(emb(ids.to(dtype)), F.embedding(ids, emb.weight))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rmsnorm_matches_f_rms_norm(dtype):
    norm = randomize_norms(RMSNorm(16))
    x = (torch.randn(2, 3, 5, 16) * 30).to(dtype)
    out = norm(x)
    assert out.dtype == dtype
    expected = F.rms_norm(x.float(), (16,), norm.weight, eps=1e-5).to(dtype)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(adapters.run_rmsnorm(16, 1e-5, norm.weight.data, x), expected)


def test_rmsnorm_computes_in_float32_for_bf16_weights():
    norm = RMSNorm(8, dtype=torch.bfloat16)
    x = torch.full((1, 8), 300.0, dtype=torch.bfloat16)  # 300^2 * 8 is fine in fp32, and the answer is 1
    assert norm(x).dtype == torch.bfloat16
    torch.testing.assert_close(norm(x).float(), torch.ones(1, 8))


def test_silu_and_swiglu_match_functional():
    x = torch.randn(3, 4, 16) * 4
    torch.testing.assert_close(silu(x), F.silu(x))
    torch.testing.assert_close(adapters.run_silu(x), F.silu(x))
    ffn = SwiGLU(16, 48)
    ref = F.linear(F.silu(F.linear(x, ffn.w1.weight)) * F.linear(x, ffn.w3.weight), ffn.w2.weight)
    torch.testing.assert_close(ffn(x), ref)
    w = {k: v.data for k, v in ffn.state_dict().items()}
    torch.testing.assert_close(adapters.run_swiglu(16, 48, w["w1.weight"], w["w2.weight"], w["w3.weight"], x), ref)


def test_default_d_ff():
    for d_model in (64, 128, 256, 512, 768, 1024, 1600):
        d_ff = default_d_ff(d_model)
        assert d_ff % 64 == 0 and abs(d_ff - 8 * d_model / 3) <= 32
    assert SwiGLU(96).w1.out_features == default_d_ff(96) == 256
    assert TransformerLM(16, 8, 64, 1, 4, ffn="silu").config["d_ff"] == 256


@pytest.mark.parametrize("lead", [(), (3,), (2, 4)])
def test_rope_matches_complex_oracle(lead):
    rope = RotaryPositionalEmbedding(10000.0, 16, max_seq_len=40)
    x = torch.randn(*lead, 12, 16)
    pos = torch.randint(0, 40, (*lead, 12))
    torch.testing.assert_close(rope(x, pos), rope_oracle(x, pos, 10000.0))
    torch.testing.assert_close(adapters.run_rope(16, 10000.0, 40, x, pos), rope_oracle(x, pos, 10000.0))
    # positions of shape (seq,) broadcast over every leading dim
    torch.testing.assert_close(rope(x, torch.arange(12)), rope_oracle(x, torch.arange(12), 10000.0))


def test_rope_real_and_complex_forms_agree():
    from cs336_basics.nn import rotate_pairs_real

    rope = RotaryPositionalEmbedding(10000.0, 8, 16)
    x = torch.randn(2, 3, 16, 8)
    cos, sin = rope.cos, rope.sin
    torch.testing.assert_close(rope.rotate(x, cos, sin), rotate_pairs_real(x, cos, sin))
    torch.testing.assert_close(rope.rotate(x, cos, sin), rope_oracle(x, torch.arange(16), 10000.0))
    # a non-contiguous view whose pairs are not adjacent in memory still works
    xt = torch.randn(2, 8, 16).transpose(-1, -2)
    torch.testing.assert_close(rope.rotate(xt, cos, sin), rotate_pairs_real(xt, cos, sin))
    xb = x.bfloat16()
    assert rope.rotate(xb, cos, sin).dtype == torch.bfloat16


def test_rope_buffers_are_not_saved_and_follow_the_module():
    rope = RotaryPositionalEmbedding(500.0, 8, 10)
    assert rope.state_dict() == {} and rope.cos.shape == (10, 4)
    assert rope.to(torch.float64).cos.dtype == torch.float64  # buffers move with the module


def test_rope_is_relative():
    rope = RotaryPositionalEmbedding(10000.0, 32, 100)
    q, k = torch.randn(1, 32), torch.randn(1, 32)
    dot = lambda i, j: (rope(q, torch.tensor([i])) @ rope(k, torch.tensor([j])).T).item()
    assert dot(10, 3) == pytest.approx(dot(50, 43), abs=1e-4)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_matches_torch_values_and_gradients(dim):
    x = (torch.randn(4, 5, 6) * 10).requires_grad_()
    g = torch.randn(4, 5, 6)
    torch.testing.assert_close(softmax(x, dim), torch.softmax(x, dim))
    torch.testing.assert_close(adapters.run_softmax(x, dim), torch.softmax(x, dim))
    (ours,) = torch.autograd.grad(softmax(x, dim), x, g)
    (ref,) = torch.autograd.grad(torch.softmax(x, dim), x, g)
    torch.testing.assert_close(ours, ref)
    xd = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: softmax(t, dim), (xd,))


def test_softmax_leaves_its_input_alone_and_handles_bf16():
    x = torch.randn(4, 9)
    before = x.clone()
    softmax(x, -1)
    assert torch.equal(x, before)
    xb = (torch.randn(3, 50) * 5).bfloat16().requires_grad_()
    out = softmax(xb, -1)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, torch.softmax(xb.detach().float(), -1).bfloat16())  # computed in fp32
    (grad,) = torch.autograd.grad(out, xb, torch.ones_like(out))
    assert grad.dtype == torch.bfloat16


def test_softmax_is_stable_and_safe():
    torch.testing.assert_close(softmax(torch.tensor([1000.0, 999.0]), 0), torch.softmax(torch.tensor([1.0, 0.0]), 0))
    out = softmax(torch.tensor([[-math.inf, -math.inf], [0.0, -math.inf]]), -1)
    assert torch.equal(out, torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    x = torch.full((2, 3), -math.inf, requires_grad=True)
    softmax(x, -1).sum().backward()
    assert not torch.isnan(x.grad).any()


@pytest.mark.parametrize("lead", [(2,), (2, 3)])  # 3-D and 4-D inputs
@pytest.mark.parametrize("with_mask", [False, True])
def test_attention_matches_f_sdpa(lead, with_mask):
    Q, K, V = torch.randn(*lead, 5, 8), torch.randn(*lead, 7, 8), torch.randn(*lead, 7, 6)
    mask = None
    if with_mask:
        mask = torch.rand(5, 7) > 0.4
        mask[:, 2] = True
    expected = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
    torch.testing.assert_close(scaled_dot_product_attention(Q, K, V, mask), expected)
    torch.testing.assert_close(adapters.run_scaled_dot_product_attention(Q, K, V, mask), expected)


def test_attention_batched_mask_and_gradients():
    Q, K, V = (torch.randn(2, 3, 6, 4, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 1, 6, 6) > 0.5
    mask[..., 0] = True
    ours = scaled_dot_product_attention(Q, K, V, mask)
    ref = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ours)
    torch.testing.assert_close(torch.autograd.grad(ours, (Q, K, V), g), torch.autograd.grad(ref, (Q, K, V), g))
    # a mask bigger than the scores (extra leading dims) broadcasts the other way
    wide = torch.ones(4, 2, 3, 6, 6, dtype=torch.bool).tril()
    assert scaled_dot_product_attention(Q, K, V, wide).shape == (4, 2, 3, 6, 4)


def test_attention_fully_masked_row_gives_zeros_not_nan():
    Q, K, V = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5, 2)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    out = scaled_dot_product_attention(Q, K, V, mask)
    assert not torch.isnan(out).any() and torch.equal(out[1], torch.zeros(2))


def test_attention_bf16():
    Q, K, V = (torch.randn(2, 4, 9, 16, dtype=torch.bfloat16) for _ in range(3))
    mask = torch.ones(9, 9, dtype=torch.bool).tril()
    out = scaled_dot_product_attention(Q, K, V, mask)
    assert out.dtype == torch.bfloat16
    ref = F.scaled_dot_product_attention(Q.float(), K.float(), V.float(), attn_mask=mask)
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("rope", [False, True])
@pytest.mark.parametrize("lead", [(2,), (2, 3)])
def test_multihead_self_attention_matches_oracle(rope, lead):
    attn = CausalMultiHeadSelfAttention(32, 4, 16, 10000.0, positional="rope" if rope else "none")
    x = torch.randn(*lead, 10, 32)
    w = {k: v.data for k, v in attn.state_dict().items()}
    pos = torch.arange(10)
    expected = mha_oracle(x, w, 4, pos if rope else None, prefix="")
    torch.testing.assert_close(attn(x), expected)
    args = (w["q_proj.weight"], w["k_proj.weight"], w["v_proj.weight"], w["output_proj.weight"], x)
    if rope:
        positions = pos.expand(*lead, 10)
        torch.testing.assert_close(attn(x, positions), expected)
        torch.testing.assert_close(adapters.run_multihead_self_attention_with_rope(32, 4, 16, 10000.0, *args, positions), expected)
    else:
        torch.testing.assert_close(adapters.run_multihead_self_attention(32, 4, *args), expected)


@pytest.mark.parametrize(
    "kw", [{}, {"norm": "post"}, {"norm": "none"}, {"positional": "none"}, {"ffn": "silu"}], ids=str
)
def test_transformer_block_matches_oracle(kw):
    block = randomize_norms(TransformerBlock(32, 4, 64, 16, 10000.0, **kw))
    x = torch.randn(2, 10, 32)
    w = {k: v.data for k, v in block.state_dict().items()}
    torch.testing.assert_close(block(x), block_oracle(x, w, 4, **kw))
    if not kw:
        torch.testing.assert_close(adapters.run_transformer_block(32, 4, 64, 16, 10000.0, w, x), block_oracle(x, w, 4))


@pytest.mark.parametrize("block", [1, 5, 7, None])
def test_causal_query_blocks_match_oracle(block):
    """Attention skips the keys after each query block; any block size gives the dense result."""
    model = tiny_lm()
    for layer in model.layers:
        layer.attn.query_block = block
    ids = torch.randint(0, 64, (2, 23))
    w = {k: v.data for k, v in model.state_dict().items()}
    x = torch.randn(2, 23, 32, requires_grad=True)
    attn = model.layers[0].attn
    out = attn(x)
    torch.testing.assert_close(out, mha_oracle(x, {k.removeprefix("layers.0."): v for k, v in w.items()}, 4, torch.arange(23)))
    g = torch.randn_like(out)
    dense = CausalMultiHeadSelfAttention(32, 4, 24)
    dense.load_state_dict(attn.state_dict())
    dense.query_block = None
    torch.testing.assert_close(torch.autograd.grad(out, x, g), torch.autograd.grad(dense(x), x, g))
    with torch.no_grad():
        full = model(ids)
        torch.testing.assert_close(full, lm_oracle(w, ids, 2, 4))
        cache = model.new_kv_cache()
        chunks = [model(ids[:, :9], kv_cache=cache), model(ids[:, 9:20], kv_cache=cache), model(ids[:, 20:], kv_cache=cache)]
        torch.testing.assert_close(torch.cat(chunks, 1), full)


def test_rmsnorm_and_gate_gradients_match_autograd_of_functional():
    norm = randomize_norms(RMSNorm(16))
    x = (torch.randn(3, 5, 16) * 4).requires_grad_()
    g = torch.randn(3, 5, 16)
    ours = torch.autograd.grad(norm(x), (x, norm.weight), g)
    ref = torch.autograd.grad(F.rms_norm(x, (16,), norm.weight, eps=1e-5), (x, norm.weight), g)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    xb = x.detach().bfloat16().requires_grad_()
    (gb,) = torch.autograd.grad(norm(xb), xb, g.bfloat16())
    assert gb.dtype == torch.bfloat16
    a, b = torch.randn(4, 7, requires_grad=True), torch.randn(4, 7, requires_grad=True)
    g = torch.randn(4, 7)
    ours = torch.autograd.grad(silu_gate(a, b), (a, b), g)
    torch.testing.assert_close(ours, torch.autograd.grad(F.silu(a) * b, (a, b), g))
    assert torch.autograd.gradcheck(silu_gate, (a.double().detach().requires_grad_(), b.double().detach().requires_grad_()))
    xd = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    wd = torch.rand(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: _rms(x, w), (xd, wd))


def test_ablation_state_dicts():
    keys = lambda **kw: set(tiny_lm(num_layers=1, **kw).state_dict())
    base = keys()
    assert keys(norm="post") == base - {"ln_final.weight"}
    assert keys(norm="none") == {k for k in base if ".ln" not in k and not k.startswith("ln_final")}
    assert keys(positional="none") == base
    assert keys(ffn="silu") == base - {"layers.0.ffn.w3.weight"}
    assert tiny_lm(ffn="silu").layers[0].ffn.w1.out_features == 4 * 32


# ---------------------------------------------------------------- the language model


def test_state_dict_keys_are_the_assignments():
    model = tiny_lm()
    expected = {"token_embeddings.weight", "ln_final.weight", "lm_head.weight"}
    for i in range(2):
        expected |= {f"layers.{i}.attn.{p}_proj.weight" for p in ("q", "k", "v", "output")}
        expected |= {f"layers.{i}.{n}.weight" for n in ("ln1", "ln2", "ffn.w1", "ffn.w2", "ffn.w3")}
    assert set(model.state_dict()) == expected


@pytest.mark.parametrize(
    "kw", [{}, {"norm": "post"}, {"norm": "none"}, {"positional": "none"}, {"ffn": "silu"}], ids=str
)
def test_transformer_lm_matches_oracle(kw):
    model = tiny_lm(**kw)
    ids = torch.randint(0, 64, (3, 20))
    w = {k: v.data for k, v in model.state_dict().items()}
    with torch.no_grad():
        torch.testing.assert_close(model(ids), lm_oracle(w, ids, 2, 4, **kw))


def test_transformer_lm_adapter():
    model = tiny_lm(rope_theta=500.0, d_ff=96)
    ids = torch.randint(0, 64, (2, 24))
    w = {k: v.data for k, v in model.state_dict().items()}
    out = adapters.run_transformer_lm(64, 24, 32, 2, 4, 96, 500.0, w, ids)
    torch.testing.assert_close(out, lm_oracle(w, ids, 2, 4, theta=500.0))


@pytest.mark.parametrize("kw", [{}, {"positional": "none"}, {"norm": "post"}], ids=str)
def test_causality(kw):
    model = tiny_lm(**kw)
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        before = model(ids)
        for t in (3, 9, 15):
            changed = ids.clone()
            changed[:, t] = (changed[:, t] + 7) % 64
            after = model(changed)
            assert torch.equal(after[:, :t], before[:, :t])
            assert not torch.equal(after[:, t], before[:, t])


def test_logits_shape_and_gradients_reach_every_parameter():
    model = tiny_lm()
    logits = model(torch.randint(0, 64, (2, 5)))
    assert logits.shape == (2, 5, 64)
    F.cross_entropy(logits.flatten(0, 1), torch.randint(0, 64, (10,))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_tied_embeddings():
    model = tiny_lm(tie_embeddings=True)
    assert model.lm_head.weight is model.token_embeddings.weight
    assert model.num_parameters() == tiny_lm().num_parameters() - 64 * 32
    w = {k: v.data for k, v in model.state_dict().items()}
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), lm_oracle(w, ids, 2, 4))
    # initial logits stay O(1): the shared matrix has the Linear init, not std 1
    assert model(ids).std() < 3


def test_config_rebuilds_the_model_and_is_json():
    model = tiny_lm(norm="post", ffn="silu", positional="none", tie_embeddings=True, rope_theta=123.0)
    config = json.loads(json.dumps(model.config))
    twin = TransformerLM(**config)
    assert twin.config == model.config
    twin.load_state_dict(model.state_dict())
    ids = torch.randint(0, 64, (1, 6))
    torch.testing.assert_close(twin(ids), model(ids))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: TransformerLM(64, 16, 30, 1, 4), "divisible by num_heads"),
        (lambda: CausalMultiHeadSelfAttention(30, 4), "divisible by num_heads"),
        (lambda: TransformerLM(64, 16, 30, 1, 10), "even"),  # d_k = 3 with RoPE
        (lambda: RotaryPositionalEmbedding(10000.0, 5, 8), "even"),
        (lambda: TransformerLM(64, 16, 32, 1, 4, norm="sandwich"), "norm must be one of"),
        (lambda: TransformerLM(64, 16, 32, 1, 4, ffn="relu"), "ffn must be one of"),
        (lambda: TransformerLM(64, 16, 32, 1, 4, positional="alibi"), "positional must be one of"),
        (lambda: TransformerLM(0, 16, 32, 1, 4), "vocab_size must be a positive integer"),
        (lambda: TransformerLM(64, 16, 32, 1, 4, d_ff=0), "d_ff must be a positive integer"),
    ],
)
def test_construction_errors(make, words):
    with pytest.raises(ValueError, match=words):
        make()


def test_odd_d_k_is_fine_without_rope():
    model = TransformerLM(64, 16, 30, 1, 10, positional="none")
    assert model(torch.randint(0, 64, (1, 4))).shape == (1, 4, 64)


def test_input_errors():
    model = tiny_lm()
    with pytest.raises(ValueError, match="context_length=24"):
        model(torch.randint(0, 64, (1, 25)))
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        model(torch.tensor([[1, 64]]))
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\(batch, seq\)"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="boolean"):
        scaled_dot_product_attention(torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4), torch.ones(2, 2))
    with pytest.raises(ValueError, match="max_seq_len"):
        RotaryPositionalEmbedding(10000.0, 4, 8)(torch.randn(3, 4), torch.tensor([0, 1, 8]))


# ---------------------------------------------------------------- KV cache


@pytest.mark.parametrize("kw", [{}, {"positional": "none"}, {"norm": "post", "ffn": "silu"}], ids=str)
def test_kv_cache_matches_full_forward(kw):
    model = tiny_lm(**kw)
    ids = torch.randint(0, 64, (2, 24))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_kv_cache()
        assert isinstance(cache, KVCache) and cache.length == 0
        chunks = [model(ids[:, :5], kv_cache=cache)]
        assert cache.length == 5
        chunks.append(model(ids[:, 5:9], kv_cache=cache))  # a multi-token chunk after a prefix
        chunks += [model(ids[:, t : t + 1], kv_cache=cache) for t in range(9, 24)]
        assert cache.length == 24
        torch.testing.assert_close(torch.cat(chunks, dim=1), full)
        with pytest.raises(ValueError, match="context_length"):
            model(ids[:, :1], kv_cache=cache)
        cache.reset()
        torch.testing.assert_close(model(ids[:, :3], kv_cache=cache), full[:, :3])


def test_kv_cache_rejects_a_different_batch():
    model = tiny_lm()
    with torch.no_grad():
        cache = model.new_kv_cache()
        model(torch.randint(0, 64, (2, 3)), kv_cache=cache)
        with pytest.raises(ValueError, match="new_kv_cache"):
            model(torch.randint(0, 64, (3, 1)), kv_cache=cache)


# ---------------------------------------------------------------- autocast, compile


def test_bf16_autocast_forward_and_backward():
    model = tiny_lm()
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        reference = model(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), reference, atol=0.15, rtol=0.05)
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_bf16_parameters():
    model = tiny_lm(dtype=torch.bfloat16)
    ids = torch.randint(0, 64, (2, 12))
    w = {k: v.data.float() for k, v in model.state_dict().items()}
    with torch.no_grad():
        out = model(ids)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), lm_oracle(w, ids, 2, 4), atol=0.15, rtol=0.05)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    torch._dynamo.reset()
    model = tiny_lm(num_layers=1, context_length=8, d_model=16, num_heads=2)
    ids = torch.randint(0, 64, (2, 8))
    compiled = torch.compile(model)
    logits = compiled(ids)
    torch.testing.assert_close(logits, model(ids), atol=1e-5, rtol=1e-5)
    logits.sum().backward()
    assert model.lm_head.weight.grad is not None


@pytest.mark.slow
def test_model_and_loss_trace_as_one_graph():
    """A graph break (e.g. an in-place autograd.Function that dynamo cannot trace) splits the
    compiled step into pieces and costs most of torch.compile's speed-up on CPU."""
    from cs336_basics.nn_utils import cross_entropy

    torch._dynamo.reset()
    model = tiny_lm(num_layers=2, context_length=16, d_model=16, num_heads=2)
    ids = torch.randint(0, 64, (2, 16))
    explained = torch._dynamo.explain(lambda x, y: cross_entropy(model(x), y))(ids, ids)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]


def test_return_hidden_stops_before_the_output_layer():
    model = tiny_lm(num_layers=2, context_length=16, d_model=16, num_heads=2)
    ids = torch.randint(0, 64, (2, 16))
    hidden = model(ids, return_hidden=True)
    assert hidden.shape == (2, 16, 16)
    torch.testing.assert_close(model.lm_head(hidden), model(ids))
