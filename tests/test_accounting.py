"""The accountant is exact: its counts equal what the real TransformerLM holds and computes.

Oracles: ``sum(p.numel())`` over the model's parameters, and
``torch.utils.flop_counter.FlopCounterMode`` (which counts matmul-like ops as 2·m·n·k) on the
real forward and backward passes.
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cs336_basics import accounting
from cs336_basics.model import TransformerLM

BASE = dict(vocab_size=97, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
CONFIGS = {
    "base": BASE,
    "default_d_ff": {**BASE, "d_model": 48, "d_ff": None, "num_heads": 6},
    "silu_ffn": {**BASE, "ffn": "silu", "d_ff": None},
    "no_norm": {**BASE, "norm": "none"},
    "post_norm": {**BASE, "norm": "post", "num_layers": 3},
    "nope": {**BASE, "positional": "none"},
    "tied": {**BASE, "tie_embeddings": True},
    "qk_norm_relu2": {**BASE, "qk_norm": True, "ffn": "relu2", "d_ff": None},  # the leaderboard switches
    "softcap_zero_init": {**BASE, "logit_softcap": 30.0, "zero_init_proj": True},
    "value_embedding": {**BASE, "value_embedding": True},
    "unet_shift_canon": {**BASE, "num_layers": 5, "unet_skips": True, "token_shift": True, "canon": True},
    "bigram": {**BASE, "bigram_buckets": 50},
    "bigram_narrow": {**BASE, "bigram_buckets": 50, "bigram_dim": 8},
}


def _model(cfg):
    torch.manual_seed(0)
    return TransformerLM(**cfg)


MATRIX_OPS = {"mm", "addmm"}  # 2-D products: the projections
BATCHED_OPS = {"bmm", "baddbmm"}  # batched products: QK^T and attention @ V, all heads at once


def _module_flops(counter: FlopCounterMode, suffix: str, ops: set[str] | None = None) -> int:
    """FLOPs inside every module whose qualified name ends with ``suffix`` (summed over layers),
    of every op or only of the aten ops named in ``ops``."""
    total = 0
    for name, counts in counter.get_flop_counts().items():
        if name.endswith(suffix):
            total += sum(n for op, n in counts.items() if ops is None or op.__name__.split(".")[0] in ops)
    return total


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parameter_counts_match_the_model(name):
    cfg = CONFIGS[name]
    model = _model(cfg)
    counts = accounting.parameter_counts(cfg)
    assert counts["total"] == sum(p.numel() for p in model.parameters())

    params = dict(model.named_parameters())  # a tied weight appears once
    per_layer = {
        "attn_q": "attn.q_proj.weight", "attn_k": "attn.k_proj.weight", "attn_v": "attn.v_proj.weight",
        "attn_o": "attn.output_proj.weight", "ffn_w1": "ffn.w1.weight", "ffn_w2": "ffn.w2.weight",
        "ffn_w3": "ffn.w3.weight",
    }
    for key, suffix in per_layer.items():
        p = params.get(f"layers.0.{suffix}")
        assert counts[key] == (0 if p is None else p.numel()), key
    norms = sum(p.numel() for n, p in params.items()
                if n.startswith(("layers.0.ln", "layers.0.attn.q_norm", "layers.0.attn.k_norm")))
    assert counts["canon"] == sum(p.numel() for n, p in params.items() if n.startswith("layers.0.canon_"))
    assert counts["norms"] == norms
    value_scale, table = params.get("layers.0.attn.value_scale"), params.get("value_embeddings.weight")
    assert counts["value_scale"] == (0 if value_scale is None else value_scale.numel())
    assert counts["value_embedding"] == (0 if table is None else table.numel())
    bigram_table = params.get("bigram_embeddings.weight")
    assert counts["bigram_embedding"] == (0 if bigram_table is None else bigram_table.numel())
    projection = params.get("bigram_projection.weight")
    assert counts["bigram_projection"] == (0 if projection is None else projection.numel())
    for key in ("skip_weights", "shift_gate"):
        assert counts[key] == (params[key].numel() if key in params else 0), key
    assert counts["embedding"] == params["token_embeddings.weight"].numel()
    assert counts["lm_head"] == (params["lm_head.weight"].numel() if "lm_head.weight" in params else 0)


def test_model_config_round_trips_through_the_accountant():
    model = _model(CONFIGS["silu_ffn"])
    counts = accounting.parameter_counts(model.config)
    assert counts["total"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("batch_size,seq_len", [(2, 16), (3, 5)])
def test_forward_flops_match_flop_counter(name, batch_size, seq_len):
    cfg = CONFIGS[name]
    model = _model(cfg)
    x = torch.randint(0, cfg["vocab_size"], (batch_size, seq_len))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    ours = accounting.forward_flops(cfg, batch_size, seq_len)
    assert ours["total"] == counter.get_total_flops()

    # component by component, via the modules (and ops) FlopCounterMode attributes FLOPs to;
    # the model fuses q, k, v into one product, so projections and head-wise products are told
    # apart by op: 2-D products for the projections, batched ones for QK^T and attention @ V
    assert ours["attention"] == _module_flops(counter, ".attn")
    assert ours["attn_out"] == _module_flops(counter, ".attn.output_proj")
    assert ours["attn_qkv"] + ours["attn_out"] == _module_flops(counter, ".attn", MATRIX_OPS)
    assert ours["attn_scores"] + ours["attn_values"] == _module_flops(counter, ".attn", BATCHED_OPS)
    assert ours["ffn"] == _module_flops(counter, ".ffn")
    for w in ("w1", "w2", "w3"):
        assert ours[f"ffn_{w}"] == _module_flops(counter, f".ffn.{w}")
    assert ours["lm_head"] == _module_flops(counter, ".lm_head")
    assert ours["bigram_projection"] == _module_flops(counter, ".bigram_projection")


@pytest.mark.parametrize("seq_len", [64, 100, 150])
def test_causal_query_blocks_and_dense_attention(seq_len):
    # longer than the model's query block: it skips keys masked for a whole block of queries
    cfg = {**BASE, "context_length": 160, "num_layers": 1}
    model = _model(cfg)
    block = model.layers[0].attn.query_block
    assert block is not None and block < 150, "the model's causal query blocks changed: revisit this test"
    x = torch.randint(0, cfg["vocab_size"], (2, seq_len))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    blocked = accounting.forward_flops(cfg, 2, seq_len, query_block=block)
    assert blocked["total"] == counter.get_total_flops()
    assert blocked["attn_scores"] + blocked["attn_values"] == _module_flops(counter, ".attn", BATCHED_OPS)

    for layer in model.layers:
        layer.attn.query_block = None  # one dense (seq, seq) score matrix, as the handout counts
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert accounting.forward_flops(cfg, 2, seq_len)["total"] == counter.get_total_flops()


@pytest.mark.parametrize("name", ["base", "silu_ffn", "tied", "no_norm"])
def test_training_flops_are_three_times_forward(name):
    cfg = CONFIGS[name]
    model = _model(cfg)
    x = torch.randint(0, cfg["vocab_size"], (2, 12))
    with FlopCounterMode(display=False) as counter:
        model(x).logsumexp(-1).mean().backward()
    assert accounting.training_flops(cfg, 2, 12) == counter.get_total_flops()
    assert accounting.training_flops_per_token(cfg, 12) * 2 * 12 == counter.get_total_flops()


def test_gpt2_xl_parameter_count():
    # 2·V·d + L·(4d² + 3·d·d_ff + 2d) + d, with V=50257, d=1600, d_ff=6400, L=48
    assert accounting.parameter_counts(accounting.gpt2_config("xl"))["total"] == 2_127_057_600


def test_gpt2_small_on_meta_device_matches():
    cfg = accounting.gpt2_config("small")
    with torch.device("meta"):
        model = TransformerLM(**cfg)
    assert accounting.parameter_counts(cfg)["total"] == sum(p.numel() for p in model.parameters())


def test_formulas_with_symbols():
    sympy = pytest.importorskip("sympy")
    V, T, d, L, h, f, B = sympy.symbols("V T d L h f B", positive=True, integer=True)
    cfg = dict(vocab_size=V, context_length=T, d_model=d, num_layers=L, num_heads=h, d_ff=f)
    total = accounting.parameter_counts(cfg)["total"]
    assert sympy.expand(total - (2 * V * d + L * (4 * d**2 + 3 * d * f + 2 * d) + d)) == 0
    flops = accounting.forward_flops(cfg, B)["total"]
    expected = L * (8 * B * T * d**2 + 4 * B * T**2 * d + 6 * B * T * d * f) + 2 * B * T * d * V
    assert sympy.expand(flops - expected) == 0


def test_memory_and_mfu_relations():
    cfg = BASE
    m = accounting.adamw_memory(cfg, batch_size=4)
    params = accounting.parameter_counts(cfg)["total"]
    assert m["parameters"] == m["gradients"] == 4 * params and m["optimizer_state"] == 8 * params
    assert m["activations"] == accounting.activation_memory(cfg, 4)
    assert accounting.activation_memory(cfg, 4) == 4 * accounting.activation_memory(cfg, 1)
    b = accounting.max_batch_size(cfg, 10_000_000)
    assert accounting.adamw_memory(cfg, b)["total"] <= 10_000_000 < accounting.adamw_memory(cfg, b + 1)["total"]
    per_token = accounting.training_flops_per_token(cfg)
    assert accounting.mfu(1000.0, cfg, peak_flops=per_token * 2000) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"num_heads": 5}, "not divisible"),
        ({"ffn": "gelu"}, "choose one of"),
        ({"d_model": 0}, "positive integer"),
        ({"d_model": 32.0}, "positive integer"),
        ({"bogus": 1}, "unknown keys"),
    ],
)
def test_bad_configs_have_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        accounting.parameter_counts({**BASE, **change})


def test_missing_key_and_bad_seq_len():
    with pytest.raises(ValueError, match="missing"):
        accounting.forward_flops({"vocab_size": 10})
    with pytest.raises(ValueError, match="seq_len"):
        accounting.forward_flops(BASE, 1, seq_len=17)
    with pytest.raises(ValueError, match="batch_size"):
        accounting.activation_counts(BASE, -1)
    with pytest.raises(ValueError, match="peak_flops"):
        accounting.mfu(1.0, BASE, peak_flops=0)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(accounting, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0
