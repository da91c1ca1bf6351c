"""Decoding: temperature, top-p, the loop with its KV cache and sliding window, stop token, streaming.

Oracles: torch.softmax, a brute-force smallest nucleus, and a naive decoding loop that runs the
whole window through the model at every step. Models are small float64 TransformerLMs, so that
cached and uncached logits agree to ~1e-12 and greedy ties cannot flip.
"""

import itertools
import random

import pytest
import torch

from cs336_basics.decoding import (
    generate,
    generate_ids,
    generate_stream,
    sample_next,
    stream_text,
    temperature_probs,
    top_p_filter,
)
from cs336_basics.model import TransformerLM

EOT = "<|endoftext|>"


def tiny_model(vocab_size=64, context_length=16, seed=0, spread=20.0):
    torch.manual_seed(seed)
    model = TransformerLM(vocab_size=vocab_size, context_length=context_length, d_model=32, num_layers=2,
                          num_heads=4, d_ff=64, dtype=torch.float64)
    with torch.no_grad():  # spread the logits so that greedy choices are clear-cut
        model.lm_head.weight.mul_(spread)
    return model.eval()


def byte_tokenizer(vocab=None):
    from cs336_basics.tokenizer import Tokenizer

    vocab = vocab or {i: bytes([i]) for i in range(256)}
    return Tokenizer(vocab, [], special_tokens=[EOT])


def naive_greedy(model, ids, n, context):
    """The oracle: every step runs the last `context` tokens through the model, no cache."""
    ids = list(ids)
    out = []
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids[-context:]]))[0, -1]
            ids.append(int(logits.argmax()))
            out.append(ids[-1])
    return out


# ---------------------------------------------------------------- temperature
def test_temperature_one_is_softmax_and_zero_is_argmax():
    logits = torch.randn(5, 40, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(temperature_probs(logits, 1.0), torch.softmax(logits, -1), atol=1e-6)
    assert torch.allclose(temperature_probs(logits, 0.5), torch.softmax(logits / 0.5, -1), atol=1e-6)
    greedy = temperature_probs(logits, 0.0)
    assert torch.equal(greedy.argmax(-1), logits.argmax(-1)) and torch.equal(greedy.sum(-1), torch.ones(5))
    assert set(greedy.unique().tolist()) == {0.0, 1.0}


def test_temperature_to_zero_tends_to_argmax():
    logits = torch.tensor([1.0, 2.5, 2.4, -3.0])
    tops = [temperature_probs(logits, t)[1].item() for t in (1.0, 0.3, 0.1, 0.01)]
    assert tops == sorted(tops) and tops[-1] > 0.9999
    g = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 0.01, 1.0, g) for _ in range(200)} == {1}
    assert sample_next(logits, 0.0) == 1


def test_bad_temperature_and_top_p_are_clear_errors():
    with pytest.raises(ValueError, match="temperature"):
        temperature_probs(torch.zeros(3), -0.5)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="top_p"):
            top_p_filter(torch.full((4,), 0.25), bad)


# ---------------------------------------------------------------- top-p
@pytest.mark.parametrize(
    "probs, p, kept",
    [
        ([0.5, 0.25, 0.125, 0.125], 0.5, [0]),  # the top token alone reaches p
        ([0.5, 0.25, 0.125, 0.125], 0.6, [0, 1]),
        ([0.125, 0.25, 0.5, 0.125], 0.75, [1, 2]),  # order in the vocab does not matter
        ([0.125, 0.25, 0.5, 0.0625, 0.0625], 0.8, [0, 1, 2]),
        ([0.9, 0.05, 0.05], 0.1, [0]),
        ([0.1, 0.2, 0.3, 0.4], 1.0, [0, 1, 2, 3]),
    ],
)
def test_top_p_keeps_the_smallest_nucleus(probs, p, kept):
    q = torch.tensor(probs, dtype=torch.float64)
    out = top_p_filter(q, p)
    assert out.nonzero().flatten().tolist() == kept
    assert out.sum().item() == pytest.approx(1.0)
    assert torch.allclose(out[kept], q[kept] / q[kept].sum())


def test_top_p_with_a_tie_at_the_edge_takes_just_one_of_them():
    q = torch.tensor([0.125, 0.25, 0.5, 0.125], dtype=torch.float64)
    nucleus = top_p_filter(q, 0.8).nonzero().flatten().tolist()  # 0.5 + 0.25 + one 0.125 = 0.875
    assert len(nucleus) == 3 and {1, 2} <= set(nucleus)


def _brute_force_nucleus(probs, p):
    """Smallest set of indices with mass >= p, trying every subset size in order of likelihood."""
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    for k in range(1, len(probs) + 1):
        if sum(probs[i] for i in order[:k]) >= p:
            return set(order[:k])
    return set(order)


def test_top_p_matches_brute_force_on_random_distributions():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 12)
        raw = [rng.random() ** 3 + 1e-3 for _ in range(n)]
        probs = [x / sum(raw) for x in raw]
        p = rng.uniform(0.01, 0.999)
        # stay clear of p equal to a prefix sum, where rounding decides
        sums = list(itertools.accumulate(sorted(probs, reverse=True)))
        if min(abs(s - p) for s in sums) < 1e-9:
            continue
        got = set(top_p_filter(torch.tensor(probs, dtype=torch.float64), p).nonzero().flatten().tolist())
        assert got == _brute_force_nucleus(probs, p)


def test_top_p_works_on_a_batch_of_rows():
    probs = torch.softmax(torch.randn(7, 50, generator=torch.Generator().manual_seed(1)), -1)
    batched = top_p_filter(probs, 0.8)
    for row, out in zip(probs, batched):
        assert torch.allclose(top_p_filter(row, 0.8), out)


def test_draws_follow_the_filtered_distribution():
    logits = torch.log(torch.tensor([0.05, 0.5, 0.25, 0.125, 0.075]))
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_next(logits, 1.0, 0.8, g) for _ in range(8000)])
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    target = top_p_filter(torch.softmax(logits.double(), -1), 0.8)
    assert freq[0] == 0 and freq[4] == 0  # outside the nucleus: never drawn
    assert (freq - target).abs().max() < 0.025  # > 4 standard deviations


# ---------------------------------------------------------------- the loop and the KV cache
def test_cached_and_uncached_logits_agree():
    model = tiny_model()
    ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_kv_cache()
        pieces = [model(ids[:, :5], kv_cache=cache)]  # a prompt, then one token at a time
        pieces += [model(ids[:, i : i + 1], kv_cache=cache) for i in range(5, 12)]
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("prompt_len, n", [(3, 10), (5, 40), (30, 20)])  # within, beyond, prompt > context
def test_greedy_cached_uncached_and_naive_agree_including_the_sliding_window(prompt_len, n):
    model = tiny_model(context_length=16)
    prompt = torch.randint(0, 64, (prompt_len,), generator=torch.Generator().manual_seed(prompt_len)).tolist()
    cached = list(generate_ids(model, prompt, n, temperature=0.0, use_kv_cache=True))
    uncached = list(generate_ids(model, prompt, n, temperature=0.0, use_kv_cache=False))
    assert len(cached) == n
    assert cached == uncached == naive_greedy(model, prompt, n, 16)


def test_sampled_cached_and_uncached_agree_with_the_same_seed():
    model = tiny_model(context_length=16)
    a = list(generate_ids(model, [1, 2, 3], 40, temperature=1.0, top_p=0.9, seed=7, use_kv_cache=True))
    b = list(generate_ids(model, [1, 2, 3], 40, temperature=1.0, top_p=0.9, seed=7, use_kv_cache=False))
    assert a == b


def test_kv_cache_feeds_one_position_per_new_token():
    model = tiny_model(context_length=64)
    seen = []
    model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    list(generate_ids(model, [5, 6, 7, 8], 10, temperature=0.0))
    assert seen == [4] + [1] * 9


def test_seed_makes_samples_reproducible():
    model = tiny_model(spread=1.0)  # nearly uniform: different seeds surely differ
    runs = [list(generate_ids(model, [1, 2], 30, temperature=1.0, seed=s)) for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_stop_id_stops_before_the_stop_token():
    model = tiny_model(context_length=32)
    greedy = list(generate_ids(model, [9, 10], 20, temperature=0.0))
    stop = greedy[4]
    first = greedy.index(stop)
    out = list(generate_ids(model, [9, 10], 20, temperature=0.0, stop_id=stop))
    assert out == greedy[:first]
    assert list(generate_ids(model, [9, 10], 0)) == []


def test_generate_text_stops_at_end_of_text():
    """Give <|endoftext|> the id of a token the model greedily emits; generate must stop there."""
    model = tiny_model(vocab_size=257, context_length=32)
    prompt = "Hi"
    plain = byte_tokenizer()
    ids = list(generate_ids(model, plain.encode(prompt), 12, temperature=0.0))
    candidates = [t for t in ids[2:] if t < 256 and bytes([t]) not in prompt.encode()]
    assert candidates, ids
    t = candidates[0]
    vocab = {i: bytes([i]) for i in range(256)}
    vocab[t], vocab[256] = EOT.encode(), bytes([t])  # same model ids, token t now means end-of-text
    tok = byte_tokenizer(vocab)
    assert tok.encode(prompt) == plain.encode(prompt)
    text = generate(model, tok, prompt, 12, temperature=0.0)
    assert text == tok.decode(ids[: ids.index(t)])
    assert EOT not in text
    full = generate(model, tok, prompt, 12, temperature=0.0, stop_token=None)
    assert EOT in full  # without a stop token the same run writes it out and goes on


def test_empty_prompt_starts_from_end_of_text_and_unknown_stop_token_is_an_error():
    model = tiny_model(vocab_size=257)
    tok = byte_tokenizer()
    start = tok.special_token_ids[EOT]
    expected = list(generate_ids(model, [start], 5, temperature=0.0, stop_id=start))
    assert generate(model, tok, "", 5, temperature=0.0) == tok.decode(expected)
    with pytest.raises(ValueError, match="empty prompt"):
        generate(model, tok, "", 5, stop_token=None)
    with pytest.raises(ValueError, match="not a single token"):
        generate(model, tok, "x", 5, stop_token="<|nope|>")


# ---------------------------------------------------------------- streaming text
def test_stream_never_splits_a_utf8_character():
    tok = byte_tokenizer()
    text = "héllo 🙂 wörld ✓ 日本"
    pieces = list(stream_text(tok, tok.encode(text)))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert "🙂" in pieces  # four byte tokens, emitted together once complete


def test_stream_flushes_malformed_bytes_at_the_end():
    tok = byte_tokenizer()
    ids = tok.encode("ok ") + [0xF0, 0x9F]  # a truncated 4-byte character
    pieces = list(stream_text(tok, ids))
    assert "".join(pieces) == tok.decode(ids) and pieces[-1].endswith("\ufffd")


def test_generate_stream_joins_to_generate():
    model = tiny_model(vocab_size=257, context_length=16)
    tok = byte_tokenizer()
    kwargs = dict(temperature=1.0, top_p=0.95, seed=11, stop_token=None)
    pieces = list(generate_stream(model, tok, "Once", 40, **kwargs))
    assert "".join(pieces) == generate(model, tok, "Once", 40, **kwargs)


def test_ids_the_tokenizer_cannot_decode_are_never_drawn():
    model = tiny_model(vocab_size=300, context_length=16, spread=1.0)  # 43 of 300 ids beyond the tokenizer
    tok = byte_tokenizer()  # 257 tokens
    free = list(generate_ids(model, [1, 2], 60, temperature=2.0, seed=0))
    assert max(free) >= 257  # the model alone does draw them
    text = generate(model, tok, "ab", 60, temperature=2.0, seed=0, stop_token=None)  # would raise on id >= 257
    assert isinstance(text, str)
    limited = list(generate_ids(model, [1, 2], 60, temperature=2.0, seed=0, vocab_limit=257))
    assert max(limited) < 257

