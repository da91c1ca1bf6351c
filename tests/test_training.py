"""Training pieces against oracles: cross-entropy, AdamW, cosine schedule, clipping, batches, checkpoints."""

import copy
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # oracle only

from cs336_basics.data import epoch_batch_starts, get_batch, load_tokens
from cs336_basics.model import TransformerLM
from cs336_basics.nn_utils import clip_gradients, cross_entropy, linear_cross_entropy, perplexity
from cs336_basics.optimizer import AdamW, WeightAverage, cosine_lr
from cs336_basics.serialization import load_checkpoint, read_checkpoint, save_checkpoint


# ---------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("shape", [(7, 11), (2, 3, 11), (2, 2, 3, 5)])
def test_cross_entropy_matches_torch_with_any_leading_dims(shape):
    torch.manual_seed(0)
    logits = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, shape[-1], shape[:-1])
    ours = cross_entropy(logits, targets)
    ref = F.cross_entropy(logits.reshape(-1, shape[-1]), targets.reshape(-1))
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref)


def test_cross_entropy_hand_written_backward_passes_gradcheck():
    logits = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (5,))
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, targets), (logits,))
    # a repeated target and an upstream gradient other than 1
    targets = torch.tensor([3, 3, 0, 6, 3])
    (g,) = torch.autograd.grad(2.5 * cross_entropy(logits, targets), logits)
    (g_ref,) = torch.autograd.grad(2.5 * F.cross_entropy(logits, targets), logits)
    torch.testing.assert_close(g, g_ref)


@pytest.mark.slow
def test_compiled_cross_entropy_matches_eager():
    torch._dynamo.reset()
    logits = torch.randn(4, 6, 50, requires_grad=True)
    targets = torch.randint(0, 50, (4, 6))
    compiled = torch.compile(cross_entropy)(logits, targets)
    (g_compiled,) = torch.autograd.grad(compiled, logits)
    (g_eager,) = torch.autograd.grad(cross_entropy(logits, targets), logits)
    torch.testing.assert_close(compiled, cross_entropy(logits, targets))
    torch.testing.assert_close(g_compiled, g_eager)


def test_cross_entropy_is_stable_for_huge_logits():
    torch.manual_seed(1)
    logits = 1e4 * torch.randn(8, 20)
    targets = torch.randint(0, 20, (8,))
    ours = cross_entropy(logits, targets)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, F.cross_entropy(logits, targets))
    big = torch.full((3, 5), 1e30)  # all equal and huge: loss is exactly log(5)
    torch.testing.assert_close(cross_entropy(big, torch.zeros(3, dtype=torch.long)), torch.tensor(math.log(5)))


def test_cross_entropy_upcasts_bf16_and_checks_shapes():
    logits = torch.randn(4, 6, 50)
    targets = torch.randint(0, 50, (4, 6))
    low = cross_entropy(logits.bfloat16(), targets)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, F.cross_entropy(logits.bfloat16().float().reshape(-1, 50), targets.reshape(-1)))
    with pytest.raises(ValueError, match="targets of shape"):
        cross_entropy(logits, targets[:, :3])
    with pytest.raises(TypeError, match="integer"):
        cross_entropy(logits, targets.float())


@pytest.mark.parametrize("rows", [1, 3, 14, 100])
@pytest.mark.parametrize("lead", [(14,), (2, 7)])
def test_linear_cross_entropy_matches_the_unchunked_loss_and_gradients(rows, lead):
    torch.manual_seed(0)
    hidden = torch.randn(*lead, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 9, lead)
    targets.view(-1)[:3] = 4  # a repeated target
    ours = linear_cross_entropy(hidden, weight, targets, rows)
    ref = F.cross_entropy((hidden @ weight.T).reshape(-1, 9), targets.reshape(-1))
    torch.testing.assert_close(ours, ref)
    grads = torch.autograd.grad(2.5 * ours, (hidden, weight))  # an upstream gradient other than 1
    grads_ref = torch.autograd.grad(2.5 * ref, (hidden, weight))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref)


def test_linear_cross_entropy_without_grads_dtypes_and_errors():
    torch.manual_seed(0)
    hidden, weight = torch.randn(3, 5, 8), torch.randn(11, 8, requires_grad=True)
    targets = torch.randint(0, 11, (3, 5))
    ref = cross_entropy(hidden @ weight.T, targets)
    with torch.no_grad():  # no gradient work at all, same value
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets, 4), ref)
    (g_weight,) = torch.autograd.grad(linear_cross_entropy(hidden, weight, targets, 4), weight)  # weight only
    torch.testing.assert_close(g_weight, torch.autograd.grad(ref, weight)[0])
    huge = linear_cross_entropy(1e4 * hidden, weight.detach(), targets)  # stable like cross_entropy
    torch.testing.assert_close(huge, cross_entropy(1e4 * hidden @ weight.detach().T, targets))
    low = hidden.bfloat16().requires_grad_()
    loss = linear_cross_entropy(low, weight, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, cross_entropy(low.float() @ weight.T, targets))
    loss.backward()
    assert low.grad.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="matching"):
        linear_cross_entropy(hidden, weight, targets[:, :2])
    with pytest.raises(ValueError, match="matching"):
        linear_cross_entropy(hidden, weight[:, :4], targets)
    with pytest.raises(TypeError, match="integer"):
        linear_cross_entropy(hidden, weight, targets.float())
    with pytest.raises(ValueError, match="rows_per_chunk"):
        linear_cross_entropy(hidden, weight, targets, 0)


@pytest.mark.parametrize("softcap", [0.0, 5.0])
def test_linear_cross_entropy_bf16_matmuls_match_autocast(softcap):
    # matmul_dtype=bf16 is what autocast does to an unchunked output layer: bf16 logits, float32 loss
    torch.manual_seed(0)
    hidden = torch.randn(4, 64, 32, requires_grad=True)
    weight = (0.3 * torch.randn(200, 32)).requires_grad_()
    targets = torch.randint(0, 200, (4, 64))
    ours = linear_cross_entropy(hidden, weight, targets, 48, softcap, matmul_dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = hidden @ weight.T
    assert logits.dtype == torch.bfloat16
    logits = logits.float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    ref = F.cross_entropy(logits.reshape(-1, 200), targets.reshape(-1))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    full = linear_cross_entropy(hidden, weight, targets, 48, softcap)
    assert ours.item() != full.item()  # the products really were bf16
    grads = torch.autograd.grad(ours, (hidden, weight))
    grads_ref = torch.autograd.grad(ref, (hidden, weight))
    for g, g_ref in zip(grads, grads_ref):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, g_ref, rtol=0.02, atol=2e-4)


def test_perplexity_is_exp_of_loss():
    assert perplexity(0.0) == 1.0
    assert perplexity(torch.tensor(math.log(123.0))) == pytest.approx(123.0)


# ---------------------------------------------------------------- AdamW
def _regression(opt_factory, steps, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))  # oracle model
    opt = opt_factory(model)
    x, y = torch.randn(32, 6), torch.randn(32, 2)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("kw", [dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
                                dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.5)])
def test_adamw_matches_torch_adamw_over_many_steps(kw):
    ours, _ = _regression(lambda m: AdamW(m.parameters(), **kw), steps=25)
    ref, _ = _regression(lambda m: torch.optim.AdamW(m.parameters(), **kw), steps=25)
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_adamw_compiled_update_matches_eager():
    torch._dynamo.reset()

    def groups(m):
        return [{"params": [m[0].weight, m[2].weight], "weight_decay": 0.1},
                {"params": [m[0].bias, m[2].bias], "weight_decay": 0.0, "lr": 3e-3}]

    eager, _ = _regression(lambda m: AdamW(groups(m), lr=1e-2, betas=(0.9, 0.99)), steps=12)
    compiled, opt = _regression(lambda m: AdamW(groups(m), lr=1e-2, betas=(0.9, 0.99)).compile_update(), steps=12)
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert opt.state[compiled[0].weight]["step"] == 12


def test_adamw_param_groups_and_no_grad_params():
    torch.manual_seed(0)
    a, b, frozen = (torch.nn.Parameter(torch.randn(4, 4)) for _ in range(3))
    a2, b2 = (torch.nn.Parameter(t.detach().clone()) for t in (a, b))
    groups = lambda x, y: [{"params": [x], "weight_decay": 0.1}, {"params": [y], "weight_decay": 0.0}]  # noqa: E731
    ours = AdamW(groups(a, b) + [{"params": [frozen]}], lr=1e-2, betas=(0.9, 0.99))
    ref = torch.optim.AdamW(groups(a2, b2), lr=1e-2, betas=(0.9, 0.99))
    before = frozen.detach().clone()
    for _ in range(5):
        for p, q, opt in ((a, b, ours), (a2, b2, ref)):
            opt.zero_grad()
            ((p @ q).sin().sum()).backward()
            opt.step()
    torch.testing.assert_close(a, a2)
    torch.testing.assert_close(b, b2)
    assert torch.equal(frozen, before) and frozen not in ours.state


def test_adamw_state_dict_round_trip_continues_identically():
    model, opt = _regression(lambda m: AdamW(m.parameters(), lr=1e-2, weight_decay=0.1), steps=5)
    clone = type(model)(*[type(layer)(layer.in_features, layer.out_features) if isinstance(layer, torch.nn.Linear)
                          else type(layer)() for layer in model])
    clone.load_state_dict(model.state_dict())
    opt2 = AdamW(clone.parameters(), lr=123.0)  # the state dict's hyperparameters win
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # a copy, as after torch.save/torch.load
    x, y = torch.randn(8, 6), torch.randn(8, 2)
    for m, o in ((model, opt), (clone, opt2)):
        for _ in range(3):
            o.zero_grad()
            ((m(x) - y) ** 2).mean().backward()
            o.step()
    for p, q in zip(model.parameters(), clone.parameters()):
        assert torch.equal(p, q)
    assert opt2.state[next(clone.parameters())]["step"] == 8


def test_adamw_rejects_bad_hyperparameters():
    p = [torch.nn.Parameter(torch.zeros(2))]
    for kw, word in ((dict(lr=-1), "learning rate"), (dict(betas=(0.9, 1.0)), "betas"), (dict(eps=-1e-8), "eps"),
                     (dict(weight_decay=-0.1), "weight_decay")):
        with pytest.raises(ValueError, match=word):
            AdamW(p, **kw)


# ---------------------------------------------------------------- weight average (EMA)
def test_weight_average_is_the_bias_corrected_ema_of_the_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    avg = WeightAverage(model, halflife_steps=3)
    decay = 0.5 ** (1 / 3)
    history = []
    for _ in range(7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        history.append({n: p.detach().clone() for n, p in model.named_parameters()})
        avg.update()
    # the closed form: weights decay^(t - s) over the seen steps, normalised to sum to 1
    weights = torch.tensor([decay ** (len(history) - 1 - s) for s in range(len(history))], dtype=torch.float64)
    weights /= weights.sum()
    for name in avg.average:
        expected = sum(w * h[name].double() for w, h in zip(weights, history))
        torch.testing.assert_close(avg.average[name].double(), expected, rtol=1e-5, atol=1e-6)


def test_weight_average_first_update_is_the_weights_and_applied_swaps_back():
    model = torch.nn.Linear(3, 2)
    avg = WeightAverage(model, halflife_steps=100)
    with torch.no_grad():
        model.weight.fill_(2.0)
    avg.update()
    torch.testing.assert_close(avg.average["weight"], torch.full((2, 3), 2.0))  # not pulled to the init
    with torch.no_grad():
        model.weight.fill_(4.0)
    avg.update()
    inside = None
    with avg.applied():
        inside = model.weight.detach().clone()
    assert torch.all((inside > 2.0) & (inside < 4.0))     # the average, between the two
    assert torch.equal(model.weight, torch.full((2, 3), 4.0))  # and the training weights are back
    with pytest.raises(RuntimeError), avg.applied():          # also after an error inside the block
        raise RuntimeError
    assert torch.equal(model.weight, torch.full((2, 3), 4.0))


def test_weight_average_state_dict_round_trip_tied_weights_and_errors():
    lm = TransformerLM(vocab_size=32, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                       tie_embeddings=True)
    avg = WeightAverage(lm, halflife_steps=10)
    assert "lm_head.weight" not in avg.average or "token_embeddings.weight" not in avg.average  # tied: once
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(0.5)
    avg.update(); avg.update()
    other = WeightAverage(lm, halflife_steps=99)
    other.load_state_dict(avg.state_dict())
    assert other.updates == 2 and other.decay == 0.5 ** (1 / 99)  # the decay is the object's own
    assert all(torch.equal(other.average[n], avg.average[n]) for n in avg.average)
    with pytest.raises(ValueError, match="halflife_steps"):
        WeightAverage(lm, halflife_steps=0)
    with pytest.raises(ValueError, match="saved average"):
        WeightAverage(torch.nn.Linear(2, 2), 5).load_state_dict(avg.state_dict())


# ---------------------------------------------------------------- cosine schedule
def test_cosine_lr_matches_the_handout_values():
    # the handout's definition evaluated at max 1, min 0.1, Tw 7, Tc 21 (the assignment's test values)
    expected = [0, 0.14285714285714285, 0.2857142857142857, 0.42857142857142855, 0.5714285714285714,
                0.7142857142857143, 0.8571428571428571, 1.0, 0.9887175604818206, 0.9554359905560885,
                0.9018241671106134, 0.8305704108364301, 0.7452476826029011, 0.6501344202803414, 0.55,
                0.44986557971965857, 0.3547523173970989, 0.26942958916356996, 0.19817583288938662,
                0.14456400944391146, 0.11128243951817937, 0.1, 0.1, 0.1, 0.1]
    ours = [cosine_lr(it, 1.0, 0.1, 7, 21) for it in range(25)]
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_cosine_lr_edges():
    assert cosine_lr(0, 1.0, 0.1, 0, 10) == 1.0  # no warm-up: start at the peak
    assert cosine_lr(5, 1.0, 0.1, 5, 5) == 1.0   # no annealing phase
    assert cosine_lr(6, 1.0, 0.1, 5, 5) == 0.1


# ---------------------------------------------------------------- gradient clipping
@pytest.mark.parametrize("max_norm", [1e-2, 1.0, 1e4])
def test_clip_gradients_matches_clip_grad_norm(max_norm):
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(5, 5)) for _ in range(4)]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for ps in (ours, ref):
        (ps[0] ** 3).sum().backward()
        (ps[1] * ps[2]).exp().sum().backward()  # ps[3] has no gradient
    norm = clip_gradients(ours, max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    torch.testing.assert_close(norm, ref_norm)
    for p, q in zip(ours[:3], ref[:3]):
        torch.testing.assert_close(p.grad, q.grad)
    assert ours[3].grad is None
    after = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours[:3]]))
    assert after <= max_norm or torch.isclose(after, ref_norm)


def test_clip_gradients_without_grads_returns_zero():
    assert clip_gradients([torch.nn.Parameter(torch.ones(3))], 1.0).item() == 0.0


# ---------------------------------------------------------------- batches
def test_get_batch_shapes_shift_and_uniform_starts():
    data = np.arange(100)
    context, batch, draws = 7, 32, 1000
    rng = np.random.default_rng(1234)
    counts = np.zeros(len(data) - context)
    for _ in range(draws):
        x, y = get_batch(data, batch, context, "cpu", rng=rng)
        assert x.shape == y.shape == (batch, context) and x.dtype == torch.long
        assert torch.equal(x + 1, y)                  # targets are the inputs shifted by one
        assert torch.equal(x[:, 1:], y[:, :-1])
        np.add.at(counts, x[:, 0].numpy(), 1)
    assert counts[0] > 0 and counts[-1] > 0          # both ends reachable, nothing beyond
    expected = draws * batch / len(counts)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    df = len(counts) - 1                             # chi2 ~ df +- sqrt(2 df); 150 is > 4 sigma out for df 92
    assert chi2 < df + 5 * math.sqrt(2 * df), chi2


def test_get_batch_global_rng_and_memmap(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 500, size=10_000, dtype=np.uint16)
    np.save(tmp_path / "t.npy", tokens)
    mm = load_tokens(tmp_path / "t.npy", vocab_size=500)
    assert isinstance(mm, np.memmap)
    np.random.seed(0)
    x, y = get_batch(mm, 4, 16, "cpu")
    starts = [int(np.flatnonzero(np.lib.stride_tricks.sliding_window_view(tokens, 16).__eq__(row).all(1))[0])
              for row in x.numpy()]
    for row_x, row_y, s in zip(x.numpy(), y.numpy(), starts):
        np.testing.assert_array_equal(row_x, tokens[s:s + 16])
        np.testing.assert_array_equal(row_y, tokens[s + 1:s + 17])


@pytest.mark.parametrize("device", ["cuda:99", "nonsense"])
def test_get_batch_bad_device_raises(device):
    with pytest.raises(RuntimeError):
        get_batch(np.arange(100), 2, 4, device)


def test_get_batch_too_little_data():
    with pytest.raises(ValueError, match="context_length"):
        get_batch(np.arange(8), 2, 8, "cpu")


@pytest.mark.parametrize("n, ctx, batch", [(10_000, 64, 8), (1_000, 100, 4), (5_000, 7, 3)])
def test_epoch_batch_starts_reads_every_window_once_per_epoch(n, ctx, batch):
    windows = (n - ctx) // ctx
    per_epoch = windows // batch
    epochs = [np.concatenate([epoch_batch_starts(n, ctx, batch, e * per_epoch + i, seed=3) for i in range(per_epoch)])
              for e in range(3)]
    for starts in epochs:
        assert len(starts) == per_epoch * batch and len(np.unique(starts)) == len(starts)  # no window twice
        assert len(np.unique(starts % ctx)) == 1                                          # one offset per epoch
        assert starts.min() >= 0 and starts.max() + ctx + 1 <= n                          # every window fits
        assert len(starts) >= windows - batch + 1                                         # at most batch - 1 skipped
    assert not all(np.array_equal(epochs[0], e) for e in epochs[1:])                     # epochs differ
    # a pure function of (seed, step): the same batch again, another seed another batch
    last = per_epoch - 1  # the last batch of epoch 0
    np.testing.assert_array_equal(epoch_batch_starts(n, ctx, batch, last, seed=3), epochs[0][last * batch:])
    assert not np.array_equal(epoch_batch_starts(n, ctx, batch, last, seed=4), epochs[0][last * batch:])


def test_epoch_batch_starts_too_little_data():
    with pytest.raises(ValueError, match="fewer than one batch"):
        epoch_batch_starts(100, 16, 8, 0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        epoch_batch_starts(50, 100, 1, 0)  # shorter than one window


def test_load_tokens_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_tokens(tmp_path / "missing.npy")
    np.save(tmp_path / "two_d.npy", np.zeros((3, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="1-D integer"):
        load_tokens(tmp_path / "two_d.npy")
    np.save(tmp_path / "ids.npy", np.array([1, 2, 300], dtype=np.uint16))
    with pytest.raises(ValueError, match="outside \\[0, 256\\)"):
        load_tokens(tmp_path / "ids.npy", vocab_size=256)
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="not a .npy"):
        load_tokens(tmp_path / "text.npy")


# ---------------------------------------------------------------- checkpoints
def _model_and_optimizer(seed):
    torch.manual_seed(seed)
    model = TransformerLM(vocab_size=50, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=32)
    opt = AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, 50, (2, 8))
    for _ in range(2):
        opt.zero_grad()
        cross_entropy(model(x[:, :-1]), x[:, 1:]).backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("kind", ["path", "str", "bytesio"])
def test_checkpoint_round_trip(tmp_path, kind):
    model, opt = _model_and_optimizer(0)
    other, other_opt = _model_and_optimizer(1)
    target = {"path": tmp_path / "a" / "ckpt.pt", "str": str(tmp_path / "ckpt.pt"), "bytesio": io.BytesIO()}[kind]
    save_checkpoint(model, opt, 17, target, note="hello")
    if kind == "bytesio":
        target.seek(0)
    assert load_checkpoint(target, other, other_opt) == 17
    for (k, v), (k2, v2) in zip(model.state_dict().items(), other.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    for p, q in zip(model.parameters(), other.parameters()):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][key], other_opt.state[q][key])
        assert opt.state[p]["step"] == other_opt.state[q]["step"]
    if kind != "bytesio":
        assert read_checkpoint(target)["note"] == "hello"
        assert [p.name for p in __import__("pathlib").Path(target).parent.iterdir()] == ["ckpt.pt"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model, opt = _model_and_optimizer(0)
    path = tmp_path / "latest.pt"
    save_checkpoint(model, opt, 1, path)

    def broken_save(obj, f):  # save_checkpoint hands torch.save an open file
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, opt, 2, path)
    monkeypatch.undo()
    assert read_checkpoint(path)["iteration"] == 1       # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # and no temporary file is left


def test_load_checkpoint_missing_path(tmp_path):
    model, opt = _model_and_optimizer(0)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt", model, opt)
