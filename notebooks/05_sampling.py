# %% [markdown]
# # 05 · Sampling: turning next-token distributions into text
#
# A trained language model gives, for every prefix, a probability distribution over the next
# token. This notebook turns that into text: temperature scaling, nucleus (top-p) sampling,
# the decoding loop with a stop token, a KV cache so that each new token costs one position,
# a sliding window beyond the context length, and streaming text out without splitting UTF-8
# characters. Then we look at what temperature and top-p do to samples from a trained model, and
# measure how much the KV cache buys. Exports: `cs336_basics/decoding.py`.
#
# It uses the model of notebook 02 (`TransformerLM`, `softmax`), the tokenizer of notebook 01c and,
# for a trained model, the training loop of notebook 04b.

# %%
import os
from pathlib import Path

SMOKE = os.environ.get("CS336_SMOKE") == "1"
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
FIGURES = ROOT / "figures"  # write figures here only when not SMOKE (use a temp dir in smoke mode)

# %%
#| default_exp decoding

# %%
#| export
"""Decoding: sample text from a TransformerLM with temperature, top-p, a stop token and a KV cache.

    >>> text = generate(model, tokenizer, "Once upon a time", max_new_tokens=64,
    ...                 temperature=0.8, top_p=0.95, seed=0)          # doctest: +SKIP
    >>> for piece in generate_stream(model, tokenizer, "Once upon a time", 64):  # doctest: +SKIP
    ...     print(piece, end="", flush=True)

Pieces, each usable alone:

* ``temperature_probs(logits, temperature)``: softmax(logits / T); T = 0 is a one-hot at the argmax.
* ``top_p_filter(probs, top_p)``: keep the smallest set of most likely tokens whose mass reaches
  top_p, renormalized (nucleus sampling).
* ``sample_next(logits, temperature, top_p, generator)``: one token id.
* ``generate_ids``: the decoding loop over token ids (KV cache, sliding window, stop id).
* ``generate_stream`` / ``generate``: text in, text out (streamed in UTF-8-safe pieces, or joined).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import torch

from cs336_basics.nn import softmax

END_OF_TEXT = "<|endoftext|>"

# %% [markdown]
# ## Temperature
#
# The model's last layer gives *logits* $v$; the handout's temperature softmax is
# $\mathrm{softmax}(v/\tau)$. Small $\tau$ sharpens the distribution toward the most likely token,
# large $\tau$ flattens it toward uniform. At $\tau = 0$ the division is undefined, so we take the
# limit: all mass on the argmax (greedy decoding).

# %%
#| export
def temperature_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """softmax(logits / temperature) over the last dim; temperature 0 gives a one-hot at the argmax.

    logits: (..., vocab) -> probabilities (..., vocab), float32 or wider.

    >>> temperature_probs(torch.tensor([1.0, 3.0, 2.0]), 0.0)
    tensor([0., 1., 0.])
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if temperature == 0:
        one_hot = torch.zeros_like(logits)
        return one_hot.scatter_(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    return softmax(logits / temperature, dim=-1)


# %%
import torch

from cs336_basics.decoding import temperature_probs

if SMOKE:
    torch.set_num_threads(1)  # tiny models decode faster on one thread than waiting for a busy second core

logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
rows = {t: temperature_probs(logits, t) for t in (0.0, 0.5, 1.0, 2.0, 100.0)}
print("  T    " + "  ".join(f"tok{i}" for i in range(len(logits))))
for t, p in rows.items():
    print(f"{t:5.1f}  " + "  ".join(f"{x:.3f}" for x in p.tolist()))
assert rows[0.0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]            # greedy
assert rows[100.0].max() - rows[100.0].min() < 0.05                 # nearly uniform
assert torch.allclose(rows[1.0], torch.softmax(logits, -1))        # T = 1 is the plain softmax

# %% [markdown]
# As $\tau \to 0$ the temperature softmax converges to the one-hot we use at exactly 0, so greedy
# decoding is the continuous end of the temperature knob, not a special case bolted on:

# %%
for t in (0.3, 0.1, 0.03):
    print(t, temperature_probs(logits, t)[0].item())
assert temperature_probs(logits, 0.01)[0] > 0.999

# %% [markdown]
# ## Nucleus (top-p) sampling
#
# Even at a sensible temperature, a small model spreads a little probability over thousands of
# tokens that are each unlikely but together likely enough to derail a sample now and then.
# Nucleus sampling keeps only $V(p)$, the *smallest* set of tokens whose probabilities add up to
# at least $p$, and renormalizes over it. Sort the probabilities in decreasing order; a token
# belongs to the nucleus when the mass of the tokens ranked **before** it is still below $p$
# (so the most likely token is always in, and the token that crosses $p$ is in too).

# %%
#| export
def top_p_filter(probs: torch.Tensor, top_p: float = 1.0) -> torch.Tensor:
    """Keep the smallest set of most likely tokens with total probability >= top_p, renormalized.

    probs: (..., vocab), each row summing to 1 -> same shape, zero outside the nucleus.

    >>> top_p_filter(torch.tensor([0.1, 0.5, 0.15, 0.25]), 0.7)
    tensor([0.0000, 0.6667, 0.0000, 0.3333])
    """
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}; 1 keeps every token")
    if top_p == 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # exclusive prefix sum
    keep_sorted = mass_before < top_p  # rank 0 always kept: nothing comes before it
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = probs * keep
    return kept / kept.sum(dim=-1, keepdim=True)


# %%
from cs336_basics.decoding import top_p_filter

q = torch.tensor([0.05, 0.5, 0.25, 0.125, 0.075], dtype=torch.float64)
for p in (0.3, 0.5, 0.6, 0.75, 0.8, 0.9, 1.0):
    kept = top_p_filter(q, p)
    print(f"p={p:4}: keeps tokens {kept.nonzero().flatten().tolist()}  ->  {[round(x, 3) for x in kept.tolist()]}")
assert top_p_filter(q, 0.5).nonzero().flatten().tolist() == [1]          # 0.5 alone reaches 0.5
assert top_p_filter(q, 0.6).nonzero().flatten().tolist() == [1, 2]       # needs the 0.25 too
assert top_p_filter(q, 0.9).nonzero().flatten().tolist() == [1, 2, 3, 4]  # 0.875 < 0.9 -> one more

# %% [markdown]
# ## Drawing one token
#
# Temperature first, then the nucleus of the temperature-scaled distribution, then one draw.
# Drawing happens on the CPU with a `torch.Generator`, so a seed gives the same text whichever
# device the model runs on (given the same logits).

# %%
#| export
def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> int:
    """Draw one token id from logits of shape (vocab,) with temperature scaling and top-p.

    ``generator``: a CPU torch.Generator for reproducible draws (None: torch's global RNG).

    >>> sample_next(torch.tensor([0.0, 5.0, 1.0]), temperature=0.0)
    1
    """
    if temperature == 0:  # greedy: no randomness, no need to leave the device
        return int(logits.argmax(dim=-1))
    probs = top_p_filter(temperature_probs(logits.detach().float().cpu(), temperature), top_p)
    return int(torch.multinomial(probs, 1, generator=generator))


# %% [markdown]
# A check that the draws follow the filtered distribution: 5,000 draws, frequencies within two
# percent of the target (about three standard deviations), and nothing ever drawn outside the nucleus.

# %%
from cs336_basics.decoding import sample_next

g = torch.Generator().manual_seed(0)
logits = torch.log(torch.tensor([0.05, 0.5, 0.25, 0.125, 0.075]))
draws = torch.tensor([sample_next(logits, 1.0, 0.8, g) for _ in range(5_000)])
freq = torch.bincount(draws, minlength=5) / len(draws)
target = top_p_filter(torch.softmax(logits, -1), 0.8)
print("frequency:", [round(x, 3) for x in freq.tolist()])
print("target:   ", [round(x, 3) for x in target.tolist()])
assert (freq - target).abs().max() < 0.02 and freq[0] == 0 and freq[4] == 0

# %% [markdown]
# ## The decoding loop, and the KV cache
#
# Decoding feeds the prompt, draws a token, appends it, and repeats until the end-of-text token
# or `max_new_tokens`. Without a cache each step runs the whole prefix through the model again:
# generating $n$ tokens costs $O(n^2)$ positions (and attention inside each is quadratic too).
# The keys and values of past positions never change (attention is causal), so the model can
# keep them in a **KV cache**: after the prompt, each step feeds just the one new token, whose
# RoPE position continues at `cache.length`.
#
# Beyond the context length the model has never seen positions, so we slide a window: when the
# next token would not fit, the cache is rebuilt from the last `context_length` tokens. That keeps
# each prediction conditioned on exactly the last `context_length` tokens, as the uncached loop
# does (so the two agree token for token), at the price of one full-window forward per token once
# the window slides.

# %%
#| export
def context_length_of(model: torch.nn.Module) -> int:
    """The model's maximum sequence length (``model.config["context_length"]``)."""
    config = getattr(model, "config", None) or {}
    length = config.get("context_length", getattr(model, "context_length", None))
    if length is None:
        raise ValueError("cannot tell the model's context length: expected model.config['context_length']")
    return int(length)


@torch.no_grad()
def generate_ids(
    model: torch.nn.Module,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop_id: int | None = None,
    seed: int | None = None,
    use_kv_cache: bool = True,
    vocab_limit: int | None = None,
) -> Iterator[int]:
    """Yield up to ``max_new_tokens`` new token ids after ``prompt_ids``; stop before ``stop_id``.

    The stop token itself is not yielded. With ``use_kv_cache`` each step feeds one position;
    beyond the context length the window slides (the cache is rebuilt from the last
    context_length tokens), so cached and uncached decoding give the same tokens.
    ``vocab_limit``: draw only ids below it (a tokenizer smaller than the model's vocabulary).
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    ids = [int(i) for i in prompt_ids]
    if not ids:
        raise ValueError("the prompt has no tokens; give a prompt (or start from the end-of-text token)")
    if use_kv_cache and not hasattr(model, "new_kv_cache"):
        raise ValueError(f"{type(model).__name__} has no new_kv_cache(); pass use_kv_cache=False")
    context = context_length_of(model)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None

    cache, fed = None, 0  # fed: how many of `ids` the cache has seen
    for _ in range(max_new_tokens):
        if not use_kv_cache:
            window = ids[-context:]
            logits = model(torch.tensor([window], device=device))
        else:
            if cache is None or cache.length + len(ids) - fed > context:
                cache, window = model.new_kv_cache(), ids[-context:]  # (re)build from the window
            else:
                window = ids[fed:]  # just the tokens the cache has not seen: one, after the prompt
            logits = model(torch.tensor([window], device=device), kv_cache=cache)
            fed = len(ids)
        next_logits = logits[0, -1]
        if vocab_limit is not None and vocab_limit < next_logits.shape[-1]:
            next_logits = next_logits[:vocab_limit]  # ids the tokenizer cannot decode are never drawn
        next_id = sample_next(next_logits, temperature, top_p, generator)
        if next_id == stop_id:
            return
        ids.append(next_id)
        yield next_id


# %% [markdown]
# ## Streaming text
#
# A terminal wants text as it is made, but a byte-level BPE token can end in the middle of a
# UTF-8 character (an emoji is four bytes, often two or more tokens). Decoding such a partial
# piece gives the replacement character `U+FFFD`. So we hold tokens back while their text ends in
# `U+FFFD` and emit once it does not: UTF-8 is self-synchronizing, so text that ends in a
# complete character decodes the same alone as joined with what follows.

# %%
#| export
def stream_text(tokenizer, token_ids: Iterable[int]) -> Iterator[str]:
    """Decode ``token_ids`` incrementally into text pieces that never split a UTF-8 character.

    ``"".join(stream_text(tok, ids)) == tok.decode(list(ids))``.
    """
    pending: list[int] = []
    for token_id in token_ids:
        pending.append(token_id)
        text = tokenizer.decode(pending)
        if not text.endswith("\ufffd"):
            pending = []
            if text:
                yield text
    if pending:  # the end: whatever is left, malformed or not
        yield tokenizer.decode(pending)


def _stop_id(tokenizer, stop_token: str | None) -> int | None:
    if stop_token is None:
        return None
    special = getattr(tokenizer, "special_token_ids", None) or {}
    if stop_token in special:
        return special[stop_token]
    ids = tokenizer.encode(stop_token)
    if len(ids) == 1:
        return ids[0]
    raise ValueError(f"stop token {stop_token!r} is not a single token of this tokenizer; "
                     "train the tokenizer with it as a special token, or pass stop_token=None")


def generate_stream(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop_token: str | None = END_OF_TEXT,
    seed: int | None = None,
    use_kv_cache: bool = True,
) -> Iterator[str]:
    """Yield the completion of ``prompt`` as text pieces, as they are generated (see ``generate``)."""
    stop_id = _stop_id(tokenizer, stop_token)
    prompt_ids = tokenizer.encode(prompt)
    if not prompt_ids:
        if stop_id is None:
            raise ValueError("empty prompt and no stop token to start from; give a prompt")
        prompt_ids = [stop_id]  # an empty prompt means "the start of a document"
    ids = generate_ids(model, prompt_ids, max_new_tokens, temperature, top_p, stop_id, seed, use_kv_cache,
                       vocab_limit=tokenizer.vocab_size)
    yield from stream_text(tokenizer, ids)


def generate(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop_token: str | None = END_OF_TEXT,
    seed: int | None = None,
    use_kv_cache: bool = True,
) -> str:
    """The completion of ``prompt`` (without the prompt): at most ``max_new_tokens`` tokens, ending
    before ``stop_token``. ``temperature`` 0 is greedy; ``top_p`` < 1 samples from the nucleus;
    ``seed`` makes the draws reproducible.

    >>> generate(model, tokenizer, "Once upon a time", 32, temperature=0.0)  # doctest: +SKIP
    ' there was a little girl named Lily.'
    """
    return "".join(generate_stream(model, tokenizer, prompt, max_new_tokens, temperature, top_p,
                                   stop_token, seed, use_kv_cache))


# %% [markdown]
# The command line checks its sampling flags before any work (`cs336 generate` before loading the
# model, `cs336 pipeline` before an hour of training), with messages that name the flags:

# %%
#| export
def check_sampling_options(max_new_tokens: int, temperature: float, top_p: float,
                           tokens_flag: str = "--sample-tokens") -> None:
    """ValueError for sampling settings that cannot work (NaN included), before any work is done.

    >>> check_sampling_options(64, 0.8, 1.5)
    Traceback (most recent call last):
    ...
    ValueError: --top-p must be in (0, 1], got 1.5
    """
    if max_new_tokens < 0:
        raise ValueError(f"{tokens_flag} must be >= 0, got {max_new_tokens}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be a number >= 0 (0 is greedy), got {temperature}")
    if not 0 < top_p <= 1:  # also false for NaN
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")


# %% [markdown]
# Checks on a small random model (float64, so that rounding cannot flip a greedy choice): the KV
# cache feeds one position per new token after the prompt, and greedy decoding with and without
# the cache gives the same tokens, here well past the context length of 16, where the window slides.

# %%
from cs336_basics.decoding import generate_ids
from cs336_basics.model import TransformerLM

torch.manual_seed(0)
toy = TransformerLM(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64,
                    dtype=torch.float64).eval()
fed = []
hook = toy.register_forward_pre_hook(lambda module, args: fed.append(args[0].shape[1]))
cached = list(generate_ids(toy, [1, 2, 3, 4], 40, temperature=0.0, use_kv_cache=True))
print("positions fed per step, with the cache:   ", fed)
fed.clear()
uncached = list(generate_ids(toy, [1, 2, 3, 4], 40, temperature=0.0, use_kv_cache=False))
print("positions fed per step, without the cache:", fed)
hook.remove()
assert cached == uncached

# %% [markdown]
# Streaming: the pieces of a byte-level tokenization of text with accents and emoji join back to
# the text, and none holds a broken character.

# %%
from cs336_basics.decoding import stream_text
from cs336_basics.tokenizer import Tokenizer

byte_tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], special_tokens=["<|endoftext|>"])
text = "Café 🙂 naïve"
pieces = list(stream_text(byte_tok, byte_tok.encode(text)))
print(pieces)
assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)

# %% [markdown]
# ## A trained model
#
# Everything above works on any model; now a trained one. Outside smoke mode we load the `cpu`
# run (`uv run cs336 pipeline --preset cpu --data ../shared/data/english --out runs/cpu`) when it is
# there (environment variable `CS336_SAMPLING_RUN=DIR` picks another run). In smoke mode (and when there is no such run) we make one here in seconds: a corpus of
# template stories written to a temporary folder, and `run_pipeline` with the `smoke` preset, the
# same code as `cs336 pipeline --preset smoke` (tokenizer, token files, training, evaluation), with
# 150 steps instead of the preset's 40.

# %%
import random
import tempfile

from cs336_basics.pipeline import run_pipeline
from cs336_basics.runs import RunFolder, load_model_from_run, load_run_tokenizer

CPU_RUN = Path(os.environ.get("CS336_SAMPLING_RUN", ROOT / "runs" / "cpu"))  # or any run directory
WORK = Path(tempfile.mkdtemp(prefix="nb05_"))


def template_stories(n, seed):
    rng = random.Random(seed)
    names, pets = ["Lily", "Tom", "Sue", "Max", "Ben"], ["dog", "cat", "bird", "fish"]
    out = []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        pet, place = rng.choice(pets), rng.choice(["the park", "the garden", "the sea", "school"])
        out.append(f"Once upon a time, {a} had a {pet}. One day {a} and the {pet} went to {place} with {b}. "
                   f"{b} said, \"I like your {pet}!\" They played all day and were happy. The end.")
    return "<|endoftext|>".join(out) + "<|endoftext|>"


if not SMOKE and RunFolder(CPU_RUN).latest.exists():
    run_dir = CPU_RUN
else:
    data_dir = WORK / "data"
    data_dir.mkdir()
    (data_dir / "train.txt").write_text(template_stories(600, 0), encoding="utf-8")
    (data_dir / "valid.txt").write_text(template_stories(60, 1), encoding="utf-8")
    run_dir = WORK / "toy_stories"
    report = run_pipeline("smoke", data_dir, run_dir, ["model.vocab_size=320", "schedule.max_steps=150"],
                          prompts=["Once upon a time"], sample_tokens=24, log=lambda message: None,
                          progress=False)
    print({k: round(v, 3) for k, v in report.eval.items() if isinstance(v, float)})

model, config = load_model_from_run(run_dir, device="cpu")
tokenizer = load_run_tokenizer(run_dir, config)
if config.run.num_threads:  # as the run trained (and as `cs336 generate` decodes)
    torch.set_num_threads(config.run.num_threads)
context = config.model.context_length
print(f"run {run_dir.name}: {sum(p.numel() for p in model.parameters()):,} parameters, context {context}, "
      f"vocab {tokenizer.vocab_size}")

# %% [markdown]
# ### What temperature does
#
# For each temperature we draw a few samples from the same prompt and measure two things:
# how likely the model itself finds its sample (mean negative log-likelihood per token at
# temperature 1, lower = more "typical" for the model) and how repetitive it is (the fraction of
# distinct token bigrams, 1 = no bigram repeats). Low temperature gives likely but repetitive
# text (greedy decoding tends to fall into loops); high temperature gives varied text the model itself
# considers unlikely, which reads as noise. (A sample that ends at once, with the end-of-text
# token, is left out of the averages.)

# %%
from cs336_basics.decoding import generate
from cs336_basics.nn_utils import cross_entropy

PROMPT = "Once upon a time"
N_NEW = min(80, context - len(tokenizer.encode(PROMPT)))
SEEDS = range(2 if SMOKE else 4)


def score(prompt, completion):
    """(mean NLL per completion token under the model, fraction of distinct bigrams)."""
    p_ids, c_ids = tokenizer.encode(prompt), tokenizer.encode(completion)
    ids = torch.tensor([(p_ids + c_ids)[-context:]])
    if len(c_ids) < 2:
        return float("nan"), float("nan")
    with torch.no_grad():
        logits = model(ids[:, :-1])
    n = min(len(c_ids), ids.shape[1] - 1)
    nll = cross_entropy(logits[0, -n:], ids[0, -n:]).item()
    bigrams = list(zip(c_ids, c_ids[1:]))
    return nll, len(set(bigrams)) / len(bigrams)


def sweep(settings):
    rows = []
    for temperature, top_p in settings:
        texts = [generate(model, tokenizer, PROMPT, N_NEW, temperature, top_p, seed=s) for s in SEEDS]
        scores = [score(PROMPT, t) for t in texts]
        scores = [s for s in scores if s[0] == s[0]] or [(float("nan"), float("nan"))]  # drop empty samples
        nll = sum(s[0] for s in scores) / len(scores)
        distinct = sum(s[1] for s in scores) / len(scores)
        rows.append((temperature, top_p, nll, distinct, texts[0]))
        print(f"T={temperature:<4} p={top_p:<4}  NLL {nll:5.2f}  distinct-2 {distinct:4.2f}  | "
              + (PROMPT + texts[0]).replace("\n", " ")[:150])
    return rows


temperature_rows = sweep([(0.0, 1.0), (0.5, 1.0), (0.8, 1.0), (1.0, 1.0), (1.5, 1.0)])

# %% [markdown]
# ### What top-p does
#
# At temperature 1, nucleus sampling cuts the long tail: with small $p$ the samples become
# likelier and more repetitive (at $p \to 0$ it is greedy decoding), with $p = 1$ it is plain
# sampling. Values around 0.9 to 0.95 keep most of the variety while removing the rare tokens
# that derail a sample.

# %%
top_p_rows = sweep([(1.0, 0.3), (1.0, 0.6), (1.0, 0.9), (1.0, 0.95), (1.0, 1.0)])

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for ax, rows, key, label in ((axes[0], temperature_rows, 0, "temperature (top-p 1)"),
                             (axes[1], top_p_rows, 1, "top-p (temperature 1)")):
    xs = [r[key] for r in rows]
    ax.plot(xs, [r[2] for r in rows], "o-", label="NLL per token (nats)")
    ax.set_xlabel(label)
    ax.set_ylabel("NLL (nats/token)")
    twin = ax.twinx()
    twin.plot(xs, [r[3] for r in rows], "s--", color="C1", label="distinct bigrams")
    twin.set_ylabel("distinct-2", color="C1")
    twin.set_ylim(0, 1.05)
fig.suptitle(f"samples from {run_dir.name}: likelihood vs variety")
fig.tight_layout()
fig.savefig((WORK if SMOKE else FIGURES) / "05_temperature_top_p.png", dpi=110)

# %% [markdown]
# ### The KV cache, measured
#
# Tokens per second for 256 new tokens (fewer in smoke mode) with and without the cache, on this
# model, greedy, so both runs make the same tokens. Past the context length both pay a full window
# per token, so the difference is largest for contexts longer than the sample.
# (`benchmarks/bench_decoding.py` measures the same on the preset shapes.)

# %%
import time

from cs336_basics.decoding import generate_ids

n_new = 32 if SMOKE else 256
prompt_ids = tokenizer.encode(PROMPT)
timings = {}
for use_cache in (False, True):
    start = time.perf_counter()
    ids = list(generate_ids(model, prompt_ids, n_new, temperature=0.0, use_kv_cache=use_cache))
    timings[use_cache] = (len(ids) / (time.perf_counter() - start), ids)
print(f"{n_new} new tokens, context {context}, {torch.get_num_threads()} threads")
print(f"without cache: {timings[False][0]:7.1f} tokens/s")
print(f"with cache:    {timings[True][0]:7.1f} tokens/s   ({timings[True][0] / timings[False][0]:.1f}x)")
assert timings[True][1] == timings[False][1]

# %% [markdown]
# ### The run's learning curves
#
# `cs336_basics.plotting` draws train and validation loss against steps and wallclock time from
# the run's `metrics.jsonl` (also `uv run cs336 plot RUN`).

# %%
from IPython.display import Image

from cs336_basics.plotting import plot_learning_curves

curves = plot_learning_curves([run_dir], (WORK if SMOKE else FIGURES) / "05_learning_curves.png",
                              title=f"run {run_dir.name}")
Image(filename=str(curves))

# %% [markdown]
# ## What the next step needs
#
# `cs336 generate --run DIR` streams text with these functions, and `cs336 pipeline` writes
# `samples.txt` with them. Sample quality is decided mostly upstream: the model's size and the
# tokens it trained on (its validation loss), then the decoding knobs shown here.
