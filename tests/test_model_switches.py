"""The leaderboard recipe's model switches: qk_norm, ffn="relu2", logit_softcap, zero_init_proj, value_embedding,
unet_skips, token_shift, canon, bigram_buckets.

Each is off by default, and off is today's model (same seed, same weights, same logits); each one on
matches an oracle built from torch.nn.functional, changes the computation, lets gradients through,
decodes with the KV cache, survives the chunked loss (softcap), counts right, and trains from the
command line. Checkpoints written before the switches existed still load and resume.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cs336_basics import cli
from cs336_basics.config import ConfigError, config_to_toml, load_config
from cs336_basics.model import ModelConfig, TransformerLM, bigram_buckets_of, softcap
from cs336_basics.nn import default_d_ff, dropout, mix_previous
from cs336_basics.nn_utils import cross_entropy, linear_cross_entropy
from cs336_basics.runs import load_model_from_run
from cs336_basics.serialization import read_checkpoint
from cs336_basics.train import train

from tests.test_model import lm_oracle, rope_oracle

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.toml"
SIZES = dict(vocab_size=64, context_length=24, d_model=32, num_layers=2, num_heads=4)
SWITCHES = {"qk_norm": True, "ffn": "relu2", "logit_softcap": 1.5, "zero_init_proj": True, "value_embedding": True,
            "unet_skips": True, "token_shift": True, "canon": True, "bigram_buckets": 16}
NEW_KEYS = ("qk_norm", "logit_softcap", "zero_init_proj", "value_embedding", "unet_skips", "token_shift", "canon",
            "bigram_buckets", "bigram_dim", "trigrams")
ONE_AT_A_TIME = [{k: v} for k, v in SWITCHES.items()]
NARROW_BIGRAMS = {"bigram_buckets": 16, "bigram_dim": 8}  # bigram_dim needs bigram_buckets
TRIGRAMS = {"bigram_buckets": 16, "trigrams": True}  # so do trigrams
EACH_AND_ALL = ONE_AT_A_TIME + [NARROW_BIGRAMS, TRIGRAMS, SWITCHES | NARROW_BIGRAMS | TRIGRAMS]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def build(seed=0, randomize=False, **kw):
    torch.manual_seed(seed)
    model = TransformerLM(**SIZES, **kw)
    if randomize:  # gains and zeroed projections away from their init, so the oracle sees every weight
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.ndim == 1:
                    p.uniform_(0.5, 1.5)
                elif name.endswith(("output_proj.weight", "w2.weight", "bigram_embeddings.weight")) and not p.any():
                    p.normal_(0.0, 0.1)
    return model


def causal_conv_oracle(a, flat):
    """a (batch, seq, d) plus its previous k positions times flat.view(k, d) (row j-1 for t-j), as a
    depthwise F.conv1d over the left-padded sequence whose newest tap is 1."""
    d = a.shape[-1]
    w = flat.view(-1, d)
    kernel = torch.cat([w.flip(0), torch.ones(1, d)]).T.unsqueeze(1)  # (d, 1, k + 1): taps t-k .. t
    return F.conv1d(F.pad(a.transpose(1, 2), (len(w), 0)), kernel, groups=d).transpose(1, 2)


def bigram_rows_oracle(ids, buckets, trigrams=False):
    """The bigram table's row per position, hashed one Python int at a time: the pair (previous
    token + 1, token), with 0 standing for "no previous token" at the start of each sequence; with
    trigrams, (batch, seq, 2): also the triple (token two back + 2, previous token + 1, token)."""
    rows = []
    for sequence in ids.tolist():
        two_back, previous, row = -1, -1, []
        for token in sequence:
            pair = ((previous + 1) * 2654435761) ^ (token * 2246822519)
            triple = ((two_back + 2) * 3266489917) ^ pair
            row.append([pair % buckets, triple % buckets] if trigrams else pair % buckets)
            two_back, previous = previous, token
        rows.append(row)
    return torch.tensor(rows)


def switched_lm_oracle(w, ids, num_layers, num_heads, qk_norm=False, ffn="swiglu", logit_softcap=0.0,
                       zero_init_proj=False, value_embedding=False, unet_skips=False, token_shift=False,
                       canon=False, bigram_buckets=0, bigram_dim=0, trigrams=False):
    """A pre-norm LM from F.* with the switches: RMSNorm on q and k per head, ReLU² MLP, softcap,
    a second embedding table added (times a per-layer scale) to every layer's values, the first
    half's block outputs added (scaled) to the mirrored second half's inputs, and the previous
    position's embedding added (times a gate per channel) to each position's, and the previous three
    positions mixed into every attention and FFN input, and a row of the bigram table per position
    (two with trigrams: the pair's and the triple's, summed)."""
    x = F.embedding(ids, w["token_embeddings.weight"])
    if token_shift:  # position t gets gate * x[t - 1]; position 0 gets nothing
        x = x + w["shift_gate"] * F.pad(x, (0, 0, 1, 0))[:, :-1]
    if bigram_buckets:
        rows = F.embedding(bigram_rows_oracle(ids, bigram_buckets, trigrams), w["bigram_embeddings.weight"])
        if trigrams:
            rows = rows[:, :, 0] + rows[:, :, 1]
        x = x + (F.linear(rows, w["bigram_projection.weight"]) if bigram_dim else rows)
    d, h, pos = x.shape[-1], num_heads, torch.arange(ids.shape[1])
    split = lambda t: t.unflatten(-1, (h, d // h)).transpose(1, 2)
    outputs = []
    for i in range(num_layers):
        p = lambda name: w[f"layers.{i}.{name}"]
        mirror = num_layers - 1 - i
        if unet_skips and mirror < num_layers // 2:
            x = x + w["skip_weights"][mirror] * outputs[mirror]
        a = F.rms_norm(x, (d,), p("ln1.weight"), eps=1e-5)
        if canon:
            a = causal_conv_oracle(a, p("canon_attn"))
        q, k, v = (split(F.linear(a, p(f"attn.{n}_proj.weight"))) for n in "qkv")
        if value_embedding:
            v = v + p("attn.value_scale") * split(F.embedding(ids, w["value_embeddings.weight"]))
        if qk_norm:
            q = F.rms_norm(q, (d // h,), p("attn.q_norm.weight"), eps=1e-5)
            k = F.rms_norm(k, (d // h,), p("attn.k_norm.weight"), eps=1e-5)
        q, k = rope_oracle(q, pos, 10000.0), rope_oracle(k, pos, 10000.0)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).flatten(-2)
        x = x + F.linear(o, p("attn.output_proj.weight"))
        f = F.rms_norm(x, (d,), p("ln2.weight"), eps=1e-5)
        if canon:
            f = causal_conv_oracle(f, p("canon_ffn"))
        if ffn == "relu2":
            inner = F.relu(F.linear(f, p("ffn.w1.weight"))) ** 2
        else:
            inner = F.silu(F.linear(f, p("ffn.w1.weight"))) * F.linear(f, p("ffn.w3.weight"))
        x = x + F.linear(inner, p("ffn.w2.weight"))
        outputs.append(x)
    logits = F.linear(F.rms_norm(x, (d,), w["ln_final.weight"], eps=1e-5), w["lm_head.weight"])
    return logit_softcap * torch.tanh(logits / logit_softcap) if logit_softcap else logits


# ---------------------------------------------------------------- off: today's model


def test_switches_are_off_by_default():
    config = ModelConfig()
    assert (config.qk_norm, config.logit_softcap, config.zero_init_proj, config.ffn) == (False, 0.0, False, "swiglu")
    assert "relu2" in ModelConfig.choices()["ffn"]
    model = TransformerLM(**SIZES)
    assert {k: model.config[k] for k in ("qk_norm", "logit_softcap", "zero_init_proj")} == \
        {"qk_norm": False, "logit_softcap": 0.0, "zero_init_proj": False}


def test_off_is_todays_model_exactly():
    """Same seed: the same weights and logits with the switches named off as without them, and the
    logits of the oracle for today's architecture (no switch state in the state dict)."""
    default, named_off = build(), build(qk_norm=False, ffn="swiglu", logit_softcap=0.0, zero_init_proj=False)
    assert default.state_dict().keys() == named_off.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), named_off.state_dict().values()))
    assert not any("q_norm" in k or "k_norm" in k for k in default.state_dict())
    ids = torch.randint(0, 64, (2, 20))
    with torch.no_grad():
        logits = default(ids)
        assert torch.equal(logits, named_off(ids))
        torch.testing.assert_close(logits, lm_oracle({k: v for k, v in default.state_dict().items()}, ids, 2, 4))


@pytest.mark.parametrize("switch", [{"qk_norm": True}, {"logit_softcap": 1.5}, {"zero_init_proj": True},
                                    {"value_embedding": True}, {"unet_skips": True}, {"token_shift": True},
                                    {"canon": True}, {"bigram_buckets": 16}], ids=str)
def test_a_switch_draws_the_same_random_weights(switch):
    """The switches add no random draws: every weight they share with today's model is equal."""
    base, switched = build().state_dict(), build(**switch).state_dict()
    zeroed = {k for k in switched if switch.get("zero_init_proj") and k.endswith(("output_proj.weight", "w2.weight"))}
    for name, value in base.items():
        if name not in zeroed:
            assert torch.equal(switched[name], value), name


# ---------------------------------------------------------------- on: what each one computes


@pytest.mark.parametrize("kw", EACH_AND_ALL, ids=str)
def test_switched_model_matches_oracle_and_shapes(kw):
    model = build(randomize=True, **kw)
    ids = torch.randint(0, 64, (3, 20))
    w = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        logits = model(ids)
        assert logits.shape == (3, 20, 64) and logits.dtype == torch.float32
        torch.testing.assert_close(logits, switched_lm_oracle(w, ids, 2, 4, **kw))


@pytest.mark.parametrize("kw", EACH_AND_ALL, ids=str)
def test_each_switch_changes_the_computation(kw):
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():  # randomized: token_shift's gate starts at 0, where it changes nothing yet
        assert not torch.allclose(build(randomize=True)(ids), build(randomize=True, **kw)(ids), atol=1e-3)


def test_qk_norm_parameters_and_state_dict():
    model = build(qk_norm=True)
    extra = set(model.state_dict()) - set(build().state_dict())
    assert extra == {f"layers.{i}.attn.{n}_norm.weight" for i in range(2) for n in "qk"}
    assert all(model.state_dict()[k].shape == (8,) for k in extra)  # one gain per head dimension (d_k = 32 / 4)
    assert model.num_parameters() == build().num_parameters() + 2 * 2 * 8


def test_qk_norm_bounds_the_attention_scores():
    """With unit gains, |q·k| / sqrt(d_k) <= sqrt(d_k) however large the projections grow."""
    attn = build(qk_norm=True).layers[0].attn
    with torch.no_grad():
        attn.q_proj.weight.mul_(1000.0)
        x = torch.randn(2, 10, 32)
        q = attn.q_norm(attn.q_proj(x).unflatten(-1, (4, 8)))
    assert torch.allclose(q.square().mean(-1), torch.ones(2, 10, 4), atol=1e-3)


def test_relu2_ffn_shapes():
    model = build(ffn="relu2")
    ffn = model.layers[0].ffn
    assert not hasattr(ffn, "w3") and ffn.w1.weight.shape == (4 * 32, 32) and ffn.w2.weight.shape == (32, 4 * 32)
    assert default_d_ff(32, "relu2") == 128 and model.config["d_ff"] == 128
    assert build(ffn="relu2", d_ff=48).layers[0].ffn.w1.out_features == 48
    x = torch.tensor([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    assert torch.equal(x.clamp(min=0).square(), torch.tensor([[0.0, 0.0, 0.0, 0.25, 4.0]]))


def test_softcap_bounds_the_logits_and_is_tanh_of_todays():
    base, capped = build(), build(logit_softcap=2.0)
    with torch.no_grad():
        for m in (base, capped):
            m.lm_head.weight.mul_(50.0)  # logits far beyond the cap
        ids = torch.randint(0, 64, (2, 16))
        raw, logits = base(ids), capped(ids)
    assert raw.abs().max() > 20 and logits.abs().max() <= 2.0
    torch.testing.assert_close(logits, 2.0 * torch.tanh(raw / 2.0))
    small = torch.tensor([0.01, -0.02])
    torch.testing.assert_close(softcap(small, 30.0), small, rtol=1e-6, atol=0)  # ~identity near 0
    assert softcap(raw, 0.0) is raw
    assert softcap(torch.ones(2, dtype=torch.bfloat16), 2.0).dtype == torch.float32  # capped in float32


def test_zero_init_proj_starts_every_block_as_the_identity():
    model = build(zero_init_proj=True)
    for layer in model.layers:
        assert not layer.attn.output_proj.weight.any() and not layer.ffn.w2.weight.any()
        assert layer.attn.q_proj.weight.any() and layer.ffn.w1.weight.any()
    ids = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        expected = F.linear(F.rms_norm(model.token_embeddings(ids), (32,), model.ln_final.weight, eps=1e-5),
                            model.lm_head.weight)
        torch.testing.assert_close(model(ids), expected)
    # the other ablations start at the identity too
    for kw in ({"norm": "post"}, {"norm": "none"}, {"ffn": "silu"}, {"ffn": "relu2"}):
        m = build(zero_init_proj=True, **kw)
        assert all(not b.attn.output_proj.weight.any() and not b.ffn.w2.weight.any() for b in m.layers)


# ---------------------------------------------------------------- gradients, cache, compile


@pytest.mark.parametrize("kw", EACH_AND_ALL, ids=str)
def test_gradients_reach_every_parameter(kw):
    model = build(**kw)
    ids = torch.randint(0, 64, (2, 12))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # (an oracle optimizer, in a test)
    for _ in range(2):  # zero-initialised projections pass no gradient back at step 0, but do at step 1
        optimizer.zero_grad()
        cross_entropy(model(ids), torch.randint(0, 64, (2, 12))).backward()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_zero_init_projections_get_a_gradient_at_step_0():
    model = build(zero_init_proj=True)
    cross_entropy(model(torch.randint(0, 64, (2, 12))), torch.randint(0, 64, (2, 12))).backward()
    for layer in model.layers:
        assert layer.attn.output_proj.weight.grad.abs().sum() > 0 and layer.ffn.w2.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kw", EACH_AND_ALL, ids=str)
def test_kv_cache_decodes_like_the_full_forward(kw):
    model = build(randomize=True, **kw)
    ids = torch.randint(0, 64, (2, 18))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_kv_cache()
        steps = [model(ids[:, :7], kv_cache=cache)] + [model(ids[:, t:t + 1], kv_cache=cache) for t in range(7, 18)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_with_every_switch():
    model = build(**SWITCHES)
    ids = torch.randint(0, 64, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
    assert logits.dtype == torch.float32 and logits.abs().max() <= SWITCHES["logit_softcap"]
    cross_entropy(logits, ids).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_every_switch_compiles_as_one_graph_and_matches_eager():
    """torch.compile (the GPU presets' setting) traces the switched model and its loss without a graph break."""
    torch._dynamo.reset()
    model = build(**(SWITCHES | NARROW_BIGRAMS | TRIGRAMS), dropout=0.1)  # training mode: dropout draws too
    ids = torch.randint(0, 64, (2, 16))
    explained = torch._dynamo.explain(lambda x, y: cross_entropy(model(x), y))(ids, ids)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    torch._dynamo.reset()
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(ids), model(ids), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- the chunked loss with a softcap


@pytest.mark.parametrize("rows", [1, 5, 14, 128])
@pytest.mark.parametrize("cap", [0.0, 0.7, 30.0])
def test_chunked_loss_equals_the_full_loss_with_softcap(rows, cap):
    hidden = torch.randn(2, 7, 16, dtype=torch.float64, requires_grad=True)
    weight = (3 * torch.randn(11, 16, dtype=torch.float64)).requires_grad_()  # logits well beyond 0.7
    targets = torch.randint(0, 11, (2, 7))
    ours = linear_cross_entropy(hidden, weight, targets, rows, softcap=cap)
    logits = hidden @ weight.T
    ref = F.cross_entropy((cap * torch.tanh(logits / cap) if cap else logits).flatten(0, 1), targets.flatten())
    torch.testing.assert_close(ours, ref)
    for a, b in zip(torch.autograd.grad(ours, (hidden, weight)), torch.autograd.grad(ref, (hidden, weight))):
        torch.testing.assert_close(a, b)


def test_chunked_softcap_backward_passes_gradcheck():
    hidden = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    weight = (2 * torch.randn(13, 6, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 13, (9,))
    assert torch.autograd.gradcheck(lambda h, w: linear_cross_entropy(h, w, targets, 4, softcap=1.3), (hidden, weight))


def test_chunked_softcap_loss_matches_the_models_logits():
    model = build(logit_softcap=1.5)
    ids, targets = torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16))
    chunked = linear_cross_entropy(model(ids, return_hidden=True), model.lm_head.weight, targets, 8,
                                   softcap=model.logit_softcap)
    whole = cross_entropy(model(ids), targets)
    torch.testing.assert_close(chunked, whole)
    g_chunked = torch.autograd.grad(chunked, list(model.parameters()))
    g_whole = torch.autograd.grad(whole, list(model.parameters()))
    for a, b in zip(g_chunked, g_whole):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_softcap_errors():
    with pytest.raises(ValueError, match="softcap"):
        linear_cross_entropy(torch.randn(3, 4), torch.randn(5, 4), torch.randint(0, 5, (3,)), softcap=-1.0)
    with pytest.raises(ValueError, match="logit_softcap"):
        TransformerLM(**SIZES, logit_softcap=-1.0)
    with pytest.raises(ValueError, match="ffn"):
        TransformerLM(**SIZES, ffn="relu")


# ---------------------------------------------------------------- config, checkpoints, the command line


def test_config_overrides_and_errors():
    config = load_config(SMOKE, ["model.qk_norm=true", "model.ffn=relu2", "model.logit_softcap=30",
                                 "model.zero_init_proj=true"])
    assert (config.model.qk_norm, config.model.ffn, config.model.logit_softcap, config.model.zero_init_proj) == \
        (True, "relu2", 30.0, True)
    assert load_config(SMOKE).model == dataclasses.replace(config.model, qk_norm=False, ffn="swiglu",
                                                           logit_softcap=0.0, zero_init_proj=False)
    for bad, words in (("model.logit_softcap=-1", ">= 0"), ("model.qk_norm=1", "true or false"),
                       ("model.ffn=gelu", "not one of")):
        with pytest.raises(ConfigError, match=words):
            load_config(SMOKE, [bad])
    model = TransformerLM.from_config(config.model)
    assert model.config["qk_norm"] and model.config["logit_softcap"] == 30.0
    assert TransformerLM(**model.config).config == model.config


@pytest.fixture(scope="module")
def token_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    for name, n in (("train", 6_000), ("valid", 1_000)):
        np.save(d / f"{name}.npy", rng.integers(0, 256, size=n).astype(np.uint16))
    return d


def _overrides(token_files, out_dir, *extra):
    return [f"data.train_tokens={token_files / 'train.npy'}", f"data.valid_tokens={token_files / 'valid.npy'}",
            f"run.out_dir={out_dir}", "run.progress=false", "model.d_model=32", "model.num_layers=1",
            "model.d_ff=64", "model.num_heads=2", "data.batch_size=4", "model.context_length=16",
            "run.eval_batches=1", "run.log_every=2", "run.eval_every=4", "run.checkpoint_every=4",
            "schedule.max_steps=4", *extra]


def test_cs336_train_runs_with_the_switches(token_files, tmp_path, capsys):
    switches = ["model.qk_norm=true", "model.ffn=relu2", "model.logit_softcap=30", "model.zero_init_proj=true"]
    argv = ["train", "--config", str(SMOKE)]
    for item in _overrides(token_files, tmp_path / "run", *switches):
        argv += ["--set", item]
    assert cli.main(argv) == 0, capsys.readouterr().err
    model, config = load_model_from_run(tmp_path / "run")
    assert config.model.qk_norm and config.model.ffn == "relu2" and config.model.logit_softcap == 30.0
    assert model.config["zero_init_proj"] and model.layers[0].attn.output_proj.weight.any()  # it trained
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert ckpt["iteration"] == 4 and "layers.0.attn.q_norm.weight" in ckpt["model"]


def test_chunked_loss_trains_like_the_whole_logits_loss_with_softcap(token_files, tmp_path):
    common = ("model.logit_softcap=2.0", "run.log_every=1", "run.deterministic=true")
    runs = {}
    for name, extra in (("whole", ()), ("chunked", ("run.loss_chunk_rows=24",))):
        run_dir = train(load_config(SMOKE, _overrides(token_files, tmp_path / name, *common, *extra)))
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        runs[name] = [r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r]
    assert len(runs["whole"]) == 4
    np.testing.assert_allclose(runs["chunked"], runs["whole"], rtol=1e-5)


def _strip_new_keys(run_dir: Path, checkpoint: bool = True) -> None:
    """Make a run folder look written before the switches existed: no new keys in config.toml or the checkpoint."""
    new = NEW_KEYS
    text = (run_dir / "config.toml").read_text()
    kept = [line for line in text.splitlines() if not line.split("=")[0].strip() in new]
    assert len(kept) == len(text.splitlines()) - len(new)
    (run_dir / "config.toml").write_text("\n".join(kept) + "\n")
    if not checkpoint:
        return
    path = run_dir / "checkpoints" / "latest.pt"
    ckpt = torch.load(path, weights_only=True)
    for key in new:
        del ckpt["config"]["model"][key]
    torch.save(ckpt, path)


def test_a_checkpoint_from_before_the_switches_loads_and_resumes(token_files, tmp_path):
    run_dir = tmp_path / "old"
    train(load_config(SMOKE, _overrides(token_files, run_dir)))
    before, _ = load_model_from_run(run_dir, average=False)
    _strip_new_keys(run_dir)
    assert "qk_norm" not in (run_dir / "config.toml").read_text()
    model, config = load_model_from_run(run_dir, average=False)  # the defaults fill in: today's model
    assert (config.model.qk_norm, config.model.logit_softcap, config.model.zero_init_proj) == (False, 0.0, False)
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        assert torch.equal(model(ids), before(ids))
    # an old model.config dict (no new keys) rebuilds the same model
    old_kwargs = {k: v for k, v in before.config.items()
                  if k not in NEW_KEYS}
    twin = TransformerLM(**old_kwargs)
    twin.load_state_dict(read_checkpoint(run_dir / "checkpoints" / "latest.pt")["model"])
    assert twin.config == before.config
    # --resume with today's config: the missing keys count as their (off) defaults, so it continues
    longer = load_config(run_dir / "config.toml", ["schedule.max_steps=6"])
    train(longer, resume=True)
    assert read_checkpoint(run_dir / "checkpoints" / "latest.pt")["iteration"] == 6
    # but a switch turned on is a different model: refused
    with pytest.raises(ConfigError, match="differs from the checkpoint"):
        train(load_config(run_dir / "config.toml", ["schedule.max_steps=8", "model.qk_norm=true"]), resume=True)


def test_config_round_trips_through_toml_with_the_switches(tmp_path):
    config = load_config(SMOKE, ["model.qk_norm=true", "model.logit_softcap=15.5", "model.ffn=relu2"])
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(config))
    assert load_config(path) == config


def test_leaderboard_preset():
    config = load_config(ROOT / "configs" / "leaderboard.toml")
    owt = load_config(ROOT / "configs" / "owt.toml")
    # the owt architecture with the switches that won at equal time on the CPU (writeup §7 leaderboard)
    assert config.model == dataclasses.replace(owt.model, zero_init_proj=True, value_embedding=True, token_shift=True)
    assert config.schedule.max_seconds == 5400 and config.schedule.max_steps >= 100_000
    assert config.optim == owt.optim and config.data == owt.data
    assert config.run.device == "auto" and config.run.compile and config.run.precision == "auto"
    text = (ROOT / "configs" / "leaderboard.toml").read_text()
    for key in ("qk_norm", "logit_softcap", "zero_init_proj", "ffn", "value_embedding", "token_shift", "unet_skips",
                "canon"):
        assert f"\n{key} = " in text  # listed, so they can be switched on
    assert "equal training time" in text
    assert math.isclose(config.schedule.warmup_steps / config.schedule.max_steps,
                        owt.schedule.warmup_steps / owt.schedule.max_steps)


@pytest.mark.slow
def test_a_pipeline_run_from_before_the_switches_is_still_up_to_date(tmp_path, capsys):
    from tests.test_pipeline import SMALL, write_corpus

    data, out = write_corpus(tmp_path / "data", n_train=150, n_valid=20), tmp_path / "run"
    argv = ["pipeline", "--preset", "smoke", "--data", str(data), "--out", str(out), *SMALL,
            "--set", "schedule.max_steps=4", "--set", "run.log_every=2", "--set", "run.eval_every=4"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    _strip_new_keys(out, checkpoint=False)  # (rewriting it would make it another file than the one recorded)
    stages = json.loads((out / "stages.json").read_text())
    for key in (f"model.{k}" for k in NEW_KEYS):
        del stages["train"]["options"][key]
    (out / "stages.json").write_text(json.dumps(stages))
    assert cli.main(argv) == 0  # the same command: every stage up to date (the new switches are off)
    err = capsys.readouterr().err
    assert err.count("skipped") == 6, err
    assert cli.main(argv + ["--set", "model.qk_norm=true"]) == 2  # a switch turned on: another model
    assert "model.qk_norm: None -> True" in capsys.readouterr().err


def test_value_embedding_starts_from_the_table_and_its_scale():
    """value_embedding adds one (vocab, d_model) table and one scale per layer (0.5 at first); an
    attention needs the looked-up rows exactly when it was built with the switch."""
    model = build(value_embedding=True)
    assert model.value_embeddings.weight.shape == (64, 32)
    assert all(layer.attn.value_scale.item() == 0.5 for layer in model.layers)
    ids = torch.randint(0, 64, (2, 20))
    with torch.no_grad():
        before = model(ids)
        for layer in model.layers:
            layer.attn.value_scale.zero_()  # scale 0: the table no longer matters
        plain = build()
        plain.load_state_dict({k: v for k, v in model.state_dict().items()
                               if k in plain.state_dict()})
        torch.testing.assert_close(model(ids), plain(ids))
        assert not torch.allclose(before, plain(ids))
    attn, x = model.layers[0].attn, torch.randn(2, 20, 32)
    with pytest.raises(ValueError, match="value_embeds"):
        attn(x)
    with pytest.raises(ValueError, match="value_embeds"):
        plain.layers[0].attn(x, value_embeds=x)


@pytest.mark.parametrize("num_layers", [1, 4, 5])
def test_unet_skips_pair_each_early_output_with_its_mirror(num_layers):
    """Layer i's output goes into layer n-1-i (n // 2 pairs; an odd middle layer and a single
    layer have no partner), as the oracle computes; weights 1 at first."""
    torch.manual_seed(0)
    model = TransformerLM(**(SIZES | {"num_layers": num_layers}), unet_skips=True)
    assert model.skip_weights.shape == (num_layers // 2,) and bool((model.skip_weights == 1).all())
    with torch.no_grad():
        model.skip_weights.uniform_(0.5, 1.5)
    ids = torch.randint(0, 64, (2, 20))
    w = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        torch.testing.assert_close(model(ids), switched_lm_oracle(w, ids, num_layers, 4, unet_skips=True))
    assert model.num_parameters() == TransformerLM(**(SIZES | {"num_layers": num_layers})).num_parameters() \
        + num_layers // 2


def test_token_shift_starts_as_the_model_without_it_and_mixes_only_the_previous_token():
    model, plain = build(token_shift=True), build()
    assert model.shift_gate.shape == (32,) and not model.shift_gate.any()
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), plain(ids))  # gate 0: the same model
        model.shift_gate.fill_(1.0)
        torch.testing.assert_close(model(ids), switched_lm_oracle(model.state_dict(), ids, 2, 4, token_shift=True))
    assert model.num_parameters() == plain.num_parameters() + 32


def test_canon_starts_as_the_model_without_it():
    model, plain = build(canon=True), build()
    extra = set(model.state_dict()) - set(plain.state_dict())
    assert extra == {f"layers.{i}.canon_{s}" for i in range(2) for s in ("attn", "ffn")}
    assert all(model.state_dict()[k].shape == (3 * 32,) and not model.state_dict()[k].any() for k in extra)
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), plain(ids))
    assert model.num_parameters() == plain.num_parameters() + 2 * 2 * 3 * 32


def test_mix_previous_reaches_back_k_positions_and_no_further():
    x = torch.zeros(1, 8, 2)
    x[0, 2] = 1.0  # one impulse at position 2
    out = mix_previous(x, torch.tensor([[0.5, 1.0], [0.25, 2.0], [0.125, 3.0]]))
    assert out[0, :, 0].tolist() == [0, 0, 1, 0.5, 0.25, 0.125, 0, 0]
    assert out[0, :, 1].tolist() == [0, 0, 1, 1, 2, 3, 0, 0]


def test_bigram_table_starts_as_the_model_without_it_and_looks_up_hashed_pairs():
    model, plain = build(bigram_buckets=16), build()
    assert set(model.state_dict()) - set(plain.state_dict()) == {"bigram_embeddings.weight"}
    assert model.bigram_embeddings.weight.shape == (16, 32) and not model.bigram_embeddings.weight.any()
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), plain(ids))  # zeros: the same model
    rows = bigram_buckets_of(ids, 16)
    assert rows.shape == ids.shape and rows.dtype == torch.long and 0 <= rows.min() and rows.max() < 16
    torch.testing.assert_close(rows, bigram_rows_oracle(ids, 16))
    # a row depends on the pair only: the same pair anywhere gets the same row, a new previous token another
    pair = torch.tensor([[3, 9, 4, 3, 9]])
    assert bigram_buckets_of(pair, 4096)[0, 1] == bigram_buckets_of(pair, 4096)[0, 4]
    assert bigram_buckets_of(torch.tensor([[5, 9]]), 4096)[0, 1] != bigram_buckets_of(pair, 4096)[0, 1]
    assert model.num_parameters() == plain.num_parameters() + 16 * 32
    assert model.num_parameters(include_embeddings=False) == plain.num_parameters(include_embeddings=False)


def test_bigram_table_trains_as_an_embedding_and_its_size_is_checked():
    from cs336_basics.config import OptimConfig
    from cs336_basics.train import optimizer_groups
    model = build(bigram_buckets=16, value_embedding=True)
    groups = optimizer_groups(model, OptimConfig(embedding_lr_scale=15.0))
    table_group = next(g for g in groups if any(p is model.bigram_embeddings.weight for p in g["params"]))
    assert table_group["lr_scale"] == 15.0 and table_group["weight_decay"] == 0.0
    assert any(p is model.token_embeddings.weight for p in table_group["params"])
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="bigram_buckets"):
            ModelConfig(bigram_buckets=bad).check()
        with pytest.raises(ValueError, match="bigram_dim"):
            ModelConfig(bigram_buckets=8, bigram_dim=bad).check()
    with pytest.raises(ValueError, match="needs bigram_buckets"):
        ModelConfig(bigram_dim=8).check()


def test_trigrams_add_a_second_hashed_row_from_the_same_table():
    model, pairs_only = build(**TRIGRAMS), build(bigram_buckets=16)
    assert set(model.state_dict()) == set(pairs_only.state_dict())  # no new weights
    assert model.num_parameters() == pairs_only.num_parameters()
    ids = torch.randint(0, 64, (2, 16))
    rows = bigram_buckets_of(ids, 16, trigrams=True)
    assert rows.shape == (2, 16, 2) and 0 <= rows.min() and rows.max() < 16
    torch.testing.assert_close(rows, bigram_rows_oracle(ids, 16, trigrams=True))
    torch.testing.assert_close(rows[..., 0], bigram_buckets_of(ids, 16))  # the pair's row is unchanged
    # the triple's row depends on all three tokens: the same triple anywhere gets one row, another first token another
    triple = torch.tensor([[3, 9, 4, 1, 3, 9, 4, 2, 9, 4]])
    hashed = bigram_buckets_of(triple, 1 << 20, trigrams=True)[0, :, 1]
    assert hashed[2] == hashed[6] and hashed[2] != hashed[9]
    # no triple hashes as the pair inside it, even at the start, where there is no token two back
    assert (bigram_buckets_of(triple, 1 << 20, trigrams=True).diff(dim=-1) != 0).all()
    with pytest.raises(ValueError, match="needs bigram_buckets"):
        ModelConfig(trigrams=True).check()


def test_dropout_drops_while_training_only_and_keeps_the_mean():
    model, plain = build(dropout=0.25), build()
    assert set(model.state_dict()) == set(plain.state_dict()) and model.config["dropout"] == 0.25
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        training = model(ids), model(ids)
        assert not torch.allclose(training[0], training[1])  # a new mask each call
        model.eval(), plain.eval()
        assert torch.equal(model(ids), plain(ids))  # evaluating: the model without it
    x = torch.ones(200_000)
    dropped = dropout(x, 0.25)
    assert abs((dropped == 0).float().mean().item() - 0.25) < 0.01  # ~p of the elements zeroed
    torch.testing.assert_close(dropped.unique(), torch.tensor([0.0, 1 / 0.75]))  # kept ones scaled by 1 / (1 - p)
    assert abs(dropped.mean().item() - 1) < 0.01
    assert dropout(x, 0.0) is x
    assert dropout(x.to(torch.bfloat16), 0.5).dtype == torch.bfloat16
    for bad in (-0.1, 1.0, True, "0.1"):
        with pytest.raises(ValueError, match="dropout"):
            ModelConfig(dropout=bad).check()


def test_a_narrow_bigram_table_is_projected_and_starts_at_zero():
    model, plain = build(**NARROW_BIGRAMS), build()
    assert model.bigram_embeddings.weight.shape == (16, 8) and not model.bigram_embeddings.weight.any()
    assert model.bigram_projection.weight.shape == (32, 8) and model.bigram_projection.weight.any()
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), plain(ids))
    assert model.num_parameters() == plain.num_parameters() + 16 * 8 + 32 * 8
    # the projection is a hidden matrix (decayed, base rate); the table trains as an embedding
    assert model.num_parameters(include_embeddings=False) == plain.num_parameters(include_embeddings=False) + 32 * 8
