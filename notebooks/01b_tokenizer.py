# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
# ---

# %% [markdown]
# # 01b · The Tokenizer: its files, plain encoding, and the engine that makes it fast
#
# Notebook 01 trained a vocabulary and a list of merges and saved them as `vocab.json`,
# `merges.txt` and `special_tokens.json`. Here we load them and use them: **encode** text into
# token ids by replaying the merges inside each pre-token, and **decode** ids back into text. From
# notebook 01 we take GPT-2's pre-tokenization pattern (`pretokenization.GPT2_PAT`).
#
# Part 1 is the tokenizer a student writes from the handout: read the saved files (GPT-2's format,
# and a check that they are one training's output), then encode and decode in a few dozen lines,
# checked on small examples and against GPT-2's tokenizer as implemented by `tiktoken`. A reader
# who stops there has a complete, correct tokenizer. Part 2, *Making it fast*, takes the first three
# steps towards the exported `Tokenizer`, each measured and checked against the plain version: a
# cache of pre-tokens, merging ids instead of bytes and many pre-tokens at once with numpy, and a
# faster pre-tokenizer. Exports: `cs336_basics/vocab_files.py` and `cs336_basics/merge_engine.py`.
# Notebook 01c puts these pieces together into the `Tokenizer` and uses it.

# %%
import os
import time
from pathlib import Path

SMOKE = os.environ.get("CS336_SMOKE") == "1"
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
SHARED = ROOT.parent / "shared"
HAVE_SHARED = (SHARED / "data").exists() and not SMOKE

# %% [markdown]
# # Part 1 · A plain tokenizer
#
# A tokenizer starts from the files training saved, so we read those first; then we encode and
# decode with what they hold.

# %% [markdown]
# ## Loading what training saved: GPT-2's vocab.json and merges.txt
#
# Training ends with a vocabulary (id → bytes) and a list of merges. `cs336 train-bpe` (notebook 01)
# writes them in GPT-2's format, so that one pair of readers loads our tokenizers and GPT-2's own.

# %%
#| default_exp vocab_files

# %% [markdown]
# Tokens are bytes, and JSON holds text. GPT-2's trick maps each of the 256 byte values to a
# *printable* character (printable Latin-1 bytes map to themselves, the 68 others, space and
# control bytes, to `chr(256 + k)`), so a token is written as a short readable string: `" the"`
# becomes `"Ġthe"`. Since no token string then contains a space, a merges line is simply
# `left right`. We read and write exactly this format (GPT-2's and the handout's fixtures).

# %%
#| export
"""GPT-2's file formats for a BPE vocabulary, and the rule that makes a saved folder one unit.

A token is bytes; ``vocab.json`` and ``merges.txt`` hold text, written with GPT-2's reversible
byte-to-character map (``b" the" -> "Ġthe"``). ``unit_problem`` says when a vocabulary, its merges
and its special tokens are not one BPE training's output.

    >>> token_to_str(b" the"), str_to_token("Ġthe")
    ('Ġthe', b' the')
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    >>> m = gpt2_bytes_to_unicode(); m[ord("a")], m[ord(" ")], m[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


_BYTE_TO_CHAR = gpt2_bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def token_to_str(token: bytes) -> str:
    """A token's bytes as GPT-2 writes them in vocab.json: ``b" the" -> "Ġthe"``."""
    return "".join(_BYTE_TO_CHAR[b] for b in token)


def str_to_token(text: str) -> bytes:
    """The inverse of ``token_to_str``; a character outside GPT-2's alphabet raises KeyError."""
    return bytes(_CHAR_TO_BYTE[c] for c in text)

# %% [markdown]
# Reading is where users make mistakes (a wrong path, a hand-edited line), so the readers say
# which file and which line is wrong, and how it should look.

# %%
#| export
def read_vocab_json(path: str | os.PathLike) -> dict[int, bytes]:
    """Read a GPT-2-style ``{"Ġthe": 262, ...}`` vocab file into ``{262: b" the", ...}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vocab file {path} does not exist; pass a vocab.json written by `cs336 train-bpe` or Tokenizer.save")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON vocab ({err}); expected an object {{token: id}}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{token: id}}, got a {type(raw).__name__}")
    vocab: dict[int, bytes] = {}
    for text, token_id in raw.items():
        if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
            raise ValueError(f"{path}: token {text!r} has id {token_id!r}; ids must be non-negative integers")
        if token_id in vocab:
            raise ValueError(f"{path}: id {token_id} is given to two tokens; every id must be unique")
        try:
            vocab[token_id] = str_to_token(text)
        except KeyError as err:
            raise ValueError(
                f"{path}: token {text!r} contains {err.args[0]!r}, which is not in GPT-2's byte-to-unicode "
                "alphabet; write tokens with token_to_str (as Tokenizer.save does)"
            ) from None
    return vocab


def read_merges_txt(path: str | os.PathLike) -> list[tuple[bytes, bytes]]:
    """Read a GPT-2-style merges file (one ``left right`` pair a line, optional ``#version`` first line)."""
    return read_merges_with_lines(path)[0]


def read_merges_with_lines(path: str | os.PathLike) -> tuple[list[tuple[bytes, bytes]], list[int]]:
    """The merges of ``path`` and the line number of each (for messages that point at a line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"merges file {path} does not exist; pass a merges.txt written by `cs336 train-bpe` or Tokenizer.save")
    merges, lines = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or (lineno == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2 or not all(parts):
                raise ValueError(
                    f"{path}:{lineno}: malformed merge {line!r}; expected two tokens separated by one space, like 'Ġ t'"
                )
            try:
                merges.append((str_to_token(parts[0]), str_to_token(parts[1])))
            except KeyError as err:
                raise ValueError(
                    f"{path}:{lineno}: {err.args[0]!r} is not in GPT-2's byte-to-unicode alphabet; "
                    "tokens must be written with token_to_str"
                ) from None
            lines.append(lineno)
    return merges, lines

# %%
print(token_to_str(b" the"), token_to_str("naïve\n".encode()), str_to_token("Ġthe"))
assert all(str_to_token(token_to_str(bytes([b]))) == bytes([b]) for b in range(256))
assert " " not in "".join(gpt2_bytes_to_unicode().values())  # so "left right" is unambiguous

# %% [markdown]
# ## A saved tokenizer is one unit
#
# The three files only mean something together: a `vocab.json` from one training beside a
# `merges.txt` from another, or a `merges.txt` cut short by a full disk, still parse, and then
# encode text into other ids without a word. What training makes is exact, though: the vocabulary
# is the 256 bytes, the special tokens and the result `left + right` of every merge, nothing else.
# So a folder is checked against that rule when it is loaded (and a tokenizer is checked before it
# is saved, so `save` never writes a folder that `load` refuses). For `cs336 train-bpe` output the
# rule says *vocab size = 256 + special tokens + merges*; it stays exact where that count does not
# (a repeated merge in a hand-made list, a special token that is also a byte), because it compares
# sets of tokens, not counts.

# %%
#| export
TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens.json")


def unit_problem(
    vocab: dict[int, bytes],
    merges: Sequence[tuple[bytes, bytes]],
    special_tokens: Sequence[str],
    merge_lines: Sequence[int] | None = None,
) -> str | None:
    """Why ``vocab``, ``merges`` and ``special_tokens`` are not one BPE training's output; None when they are.

    The rule: every merge's two parts and their concatenation are tokens, every special token is
    a token, and the vocabulary holds the 256 single bytes, the special tokens and the merges'
    results and nothing else. ``merge_lines`` (the merges' line numbers in merges.txt) lets the
    message point at a line. Set arithmetic first, a loop only to name the first culprit: ~20 ms
    for GPT-2's 50k merges (most of it making the 50k ``left + right``), a tenth of reading the files.

    >>> vocab = {i: bytes([i]) for i in range(256)} | {256: b"<|endoftext|>", 257: b"th", 258: b"the"}
    >>> print(unit_problem(vocab, [(b"t", b"h"), (b"th", b"e")], ["<|endoftext|>"]))
    None
    >>> print(unit_problem(vocab, [(b"t", b"h")], ["<|endoftext|>"]))  # the last merge is missing
    the vocabulary holds 259 tokens, but the 256 bytes, 1 special token(s) and 1 merge(s) make only 258 of them: 1 token(s) come from no merge, e.g. id 258 'the'
    """
    tokens = set(vocab.values())
    for special in special_tokens:
        if special.encode("utf-8") not in tokens:
            return f"special token {special!r} is not in the vocabulary"
    made = {left + right for left, right in merges}
    lefts, rights = zip(*merges) if merges else ((), ())
    if not (made <= tokens and tokens.issuperset(lefts) and tokens.issuperset(rights)):
        for rank, (left, right) in enumerate(merges):
            for part in (left, right, left + right):
                if part not in tokens:
                    where = f"merges.txt line {merge_lines[rank]}" if merge_lines is not None else f"merge {rank}"
                    return (f"{where} ({token_to_str(left)} {token_to_str(right)}) needs {token_to_str(part)!r}, "
                            "which is not in the vocabulary")
    missing_bytes = [b for b in range(256) if bytes([b]) not in tokens]
    if missing_bytes:
        return f"byte {missing_bytes[0]} is not in the vocabulary ({len(missing_bytes)} of the 256 bytes are missing)"
    expected = made | {bytes([b]) for b in range(256)} | {s.encode("utf-8") for s in special_tokens}
    if len(tokens) != len(expected):  # expected <= tokens here, so the counts differ by the tokens no merge makes
        extra_id = min(i for i, token in vocab.items() if token not in expected)
        return (f"the vocabulary holds {len(tokens)} tokens, but the 256 bytes, {len(special_tokens)} special token(s) "
                f"and {len(merges)} merge(s) make only {len(expected)} of them: {len(tokens) - len(expected)} token(s) "
                f"come from no merge, e.g. id {extra_id} {token_to_str(vocab[extra_id])!r}")
    return None

# %% [markdown]
# GPT-2's own files pass the rule once `<|endoftext|>` is named as special, and the check costs
# ~20 ms on its 50k merges, against ~250 ms for `Tokenizer.load` (notebook 01c) of such a folder.
# Without the special token, `<|endoftext|>` is a token no merge makes:
# that is why `Tokenizer.from_files` (the handout's API, which accepts any GPT-2-format pair, also
# one holding extra tokens that are not declared special) keeps only the constructor's check that
# every merge's parts and result are tokens, while `Tokenizer.load` of a saved folder applies the
# whole rule.

# %%
gpt2_files = SHARED / "fixtures" / "gpt2_vocab.json", SHARED / "fixtures" / "gpt2_merges.txt"
if all(f.exists() for f in gpt2_files):
    gpt2_vocab, (gpt2_merges, gpt2_lines) = read_vocab_json(gpt2_files[0]), read_merges_with_lines(gpt2_files[1])
    seconds = []
    for _ in range(3):  # the first run also hashes the 50k tokens, which the Tokenizer's constructor then reuses
        t0 = time.perf_counter()
        assert unit_problem(gpt2_vocab, gpt2_merges, ["<|endoftext|>"], gpt2_lines) is None
        seconds.append(time.perf_counter() - t0)
    print(f"GPT-2: {len(gpt2_vocab):,} tokens = 256 + 1 + {len(gpt2_merges):,} merges, "
          f"checked in {min(seconds) * 1e3:.0f} ms (first run {seconds[0] * 1e3:.0f} ms)")
    print("without the special token:", unit_problem(gpt2_vocab, gpt2_merges, []))
    print("merges cut short:", unit_problem(gpt2_vocab, gpt2_merges[:-10], ["<|endoftext|>"]))
    print("merges of another vocabulary:", unit_problem(gpt2_vocab, [(b"q", b"z"), *gpt2_merges], ["<|endoftext|>"], [2, *gpt2_lines]))

# %% [markdown]
# ## Encoding and decoding
#
# Encoding replays training. Split the text on the special tokens (each becomes its own id; the
# longest wins where two overlap, so `<|endoftext|><|endoftext|>` beats `<|endoftext|>` when both
# are special). Cut each piece between them into pre-tokens with GPT-2's regex. In each pre-token,
# start from its bytes, find the adjacent pair with the lowest merge rank (learned earliest), merge
# every occurrence of it left to right, and repeat until no adjacent pair is a merge. Decoding
# joins the tokens' bytes and reads them as UTF-8.

# %%
import regex

from cs336_basics.pretokenization import GPT2_PAT


class PlainTokenizer:
    """The handout's tokenizer, plainly: one pre-token at a time, no cache, no numpy."""

    def __init__(self, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str] | None = None):
        self.vocab = dict(vocab)
        self.id_of = {token: i for i, token in sorted(self.vocab.items(), reverse=True)}  # a repeated token: smallest id
        self.rank = {pair: r for r, pair in reversed(list(enumerate(merges)))}  # a repeated merge: its first rank
        self.special_tokens = list(dict.fromkeys(special_tokens or []))
        for special in self.special_tokens:  # a special token missing from the vocabulary gets the next id
            if special.encode("utf-8") not in self.id_of:
                self.id_of[special.encode("utf-8")] = max(self.vocab) + 1
                self.vocab[max(self.vocab) + 1] = special.encode("utf-8")
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self.special_re = "(" + "|".join(map(regex.escape, longest_first)) + ")" if longest_first else None

    def merge(self, word: bytes) -> list[bytes]:
        """Replay the merges on one pre-token: merge its lowest-ranked adjacent pair until none is a merge."""
        parts = [bytes([b]) for b in word]
        while len(parts) > 1:
            pair = min(zip(parts, parts[1:]), key=lambda p: self.rank.get(p, float("inf")))
            if pair not in self.rank:
                break
            merged, i = [], 0
            while i < len(parts):
                if (parts[i], parts[i + 1] if i + 1 < len(parts) else None) == pair:
                    merged.append(pair[0] + pair[1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def encode(self, text: str) -> list[int]:
        pieces = regex.split(self.special_re, text) if self.special_re else [text]
        ids = []
        for i, piece in enumerate(pieces):
            if i % 2:  # regex.split puts the special tokens it split on at the odd positions
                ids.append(self.id_of[piece.encode("utf-8")])
                continue
            for word in regex.findall(GPT2_PAT, piece):
                ids += [self.id_of[token] for token in self.merge(word.encode("utf-8"))]
        return ids

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

# %% [markdown]
# The handout's example (section 2.6.1): with its vocabulary and five merges, `'the cat ate'`
# encodes to `[9, 7, 1, 5, 10, 3]`.

# %%
vocab_ex = {0: b" ", 1: b"a", 2: b"c", 3: b"e", 4: b"h", 5: b"t", 6: b"th", 7: b" c", 8: b" a", 9: b"the", 10: b" at"}
merges_ex = [(b"t", b"h"), (b" ", b"c"), (b" ", b"a"), (b"th", b"e"), (b" a", b"t")]
plain_ex = PlainTokenizer(vocab_ex, merges_ex)
print(plain_ex.encode("the cat ate"), [plain_ex.decode([i]) for i in plain_ex.encode("the cat ate")])
assert plain_ex.encode("the cat ate") == [9, 7, 1, 5, 10, 3] and plain_ex.decode([9, 7, 1, 5, 10, 3]) == "the cat ate"

# %% [markdown]
# With all 256 bytes in the vocabulary any text encodes, and special tokens come out whole; where
# two special tokens overlap, the longest match wins.

# %%
vocab_small = {i: bytes([i]) for i in range(256)} | {256: b"th", 257: b"the", 258: b" c", 259: b" ca"}
merges_small = [(b"t", b"h"), (b"th", b"e"), (b" ", b"c"), (b" c", b"a")]
plain_small = PlainTokenizer(vocab_small, merges_small, ["<|endoftext|>", "<|endoftext|><|endoftext|>"])
probe = "the cat<|endoftext|><|endoftext|>the<|endoftext|> naïve 🙂"
print(plain_small.encode(probe))
print([plain_small.decode([i]) for i in plain_small.encode(probe)])
assert plain_small.decode(plain_small.encode(probe)) == probe
assert plain_small.encode("<|endoftext|><|endoftext|>") == [261]  # one token: the longest special match

# %% [markdown]
# A single token can hold *part* of a character (é is two bytes), so decoding ids one at a time may
# give U+FFFD (shown as �) where the whole sequence decodes fine.

# %%
e_acute = plain_small.encode("é")
print(e_acute, [plain_small.decode([i]) for i in e_acute], plain_small.decode(e_acute))
assert plain_small.decode(e_acute) == "é" and plain_small.decode(e_acute[:1]) == "\ufffd"

# %% [markdown]
# **Against GPT-2.** GPT-2's `vocab.json` and `merges.txt` (the handout's fixtures, read above) in
# the plain tokenizer must give exactly the ids of `tiktoken`'s GPT-2 encoding on real text.
# (Offline, tiktoken finds its files through `TIKTOKEN_CACHE_DIR`; without them, or without the
# fixtures, this check says so and is skipped.)

# %%
try:
    import tiktoken

    gpt2_tiktoken = tiktoken.get_encoding("gpt2")
except Exception as err:  # no network and no TIKTOKEN_CACHE_DIR
    gpt2_tiktoken = None
    print(f"tiktoken's gpt2 files are unavailable ({type(err).__name__}); skipping the GPT-2 checks")

texts = [p for p in (SHARED / "data" / "web" / "train.txt", SHARED / "fixtures" / "tinystories_sample.txt") if p.exists()]
if gpt2_tiktoken is not None and all(f.exists() for f in gpt2_files) and texts:
    plain_gpt2 = PlainTokenizer(gpt2_vocab, gpt2_merges, ["<|endoftext|>"])
    few_kb = texts[0].read_bytes()[:8000].decode("utf-8", "ignore")
    ours = plain_gpt2.encode(few_kb)
    assert ours == gpt2_tiktoken.encode(few_kb, allowed_special={"<|endoftext|>"})
    assert plain_gpt2.decode(ours) == few_kb
    print(f"{len(few_kb.encode()):,} bytes of {texts[0].name} -> {len(ours):,} ids, the same as tiktoken's GPT-2")
else:
    print("GPT-2 fixtures or tiktoken files missing: check skipped")

# %% [markdown]
# # Part 2 · Making it fast
#
# The plain tokenizer is correct, and slow. On 1 MB of the web stand-in with GPT-2's vocabulary it
# took 1.65 s of CPU time (about 0.6 MB/s); the exported `Tokenizer` (notebook 01c) takes 0.16 s
# for the same ids. Four steps get there, the first three in this notebook and the fourth, the
# `Tokenizer` class, in notebook 01c; after each one the ids are checked equal to the plain
# tokenizer's. (Numbers are CPU seconds on the shared 2-core machine that wrote this
# notebook; the cells below measure again on whatever text is at hand.)

# %%
bench_path = texts[0] if texts and not SMOKE else None
bench_text = bench_path.read_bytes()[:1_000_000].decode("utf-8", "replace") if bench_path else (
    "Hello world! It's 2025, isn't it?<|endoftext|>  Spaces\n\n and tabs\t here, naïve café. " * 600)
bench_vocab, bench_merges = (gpt2_vocab, gpt2_merges) if "plain_gpt2" in globals() else (vocab_small, merges_small)


def cpu_seconds(fn):
    """``(result, CPU seconds of this process)``: on a shared machine CPU time is steadier than wall time."""
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


plain_ids, t_plain = cpu_seconds(lambda: PlainTokenizer(bench_vocab, bench_merges, ["<|endoftext|>"]).encode(bench_text))
print(f"{len(bench_text.encode()) / 1e6:.2f} MB, {len(plain_ids):,} ids: plain tokenizer {t_plain:.2f} s CPU")

# %% [markdown]
# ## Step 1: a cache of pre-tokens
#
# Text repeats itself: 1 MB of the web stand-in holds 301,619 pre-tokens but only 32,279 distinct
# ones. Merging each distinct pre-token once and remembering the result took the plain tokenizer
# from 1.65 s to 0.72 s on that megabyte. What is left is mostly the merges of the first occurrences
# (0.41 s of the 0.72 s) and the Python work per pre-token.

# %%
class CachedTokenizer(PlainTokenizer):
    """The plain tokenizer with a dict from pre-token bytes to its merged tokens."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cache: dict[bytes, list[bytes]] = {}

    def merge(self, word: bytes) -> list[bytes]:
        if word not in self.cache:
            self.cache[word] = super().merge(word)
        return self.cache[word]


cached = CachedTokenizer(bench_vocab, bench_merges, ["<|endoftext|>"])
cached_ids, t_cached = cpu_seconds(lambda: cached.encode(bench_text))
assert cached_ids == plain_ids
print(f"cached: {t_cached:.2f} s CPU ({t_plain / t_cached:.1f}x); {len(cached.cache):,} distinct pre-tokens merged")

# %% [markdown]
# ## Step 2: ids instead of bytes, then many pre-tokens at once
#
# The fast path works on integer ids: a pre-token is its bytes' ids, a merge is a pair of ids with
# a rank, `merged_id[rank]` is the id it makes. `bpe_merge_word` is the plain loop on ids (the
# `Tokenizer` still uses it when only a few pre-tokens are new); on the handout's example it gives
# the plain tokenizer's ids.

# %%
#| default_exp merge_engine

# %%
#| export
"""Replaying BPE merges fast: one word, many words at once with numpy, and fast GPT-2 pre-tokenizers.

``bpe_merge_word`` is the readable loop; ``PairTable`` and ``bpe_merge_words`` run its steps for
many words at once on numpy arrays; ``pretokenize_mixed`` cuts text into GPT-2 pre-tokens with the
standard library's ``re`` on its ASCII stretches. The ``Tokenizer`` puts them together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import regex

from cs336_basics.pretokenization import GPT2_PAT

# %%
#| export
NO_MERGE = 2**31 - 1  # rank of a pair that is not a merge (fits int32)

# GPT-2's pattern with the optional space factored out of three alternatives: the same matches (the
# three classes are disjoint, so at most one can start at a position), ~10% faster in `regex`.
# tiktoken writes gpt2's pattern with possessive quantifiers and `\s++$`, also the same matches.
GPT2_PAT_FACTORED = r"""'(?:[sdmt]|ll|ve|re)| ?(?:\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+)|\s+(?!\S)|\s+"""
TIKTOKEN_GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
FASTER_EQUIVALENT_PATTERN = {GPT2_PAT: GPT2_PAT_FACTORED, TIKTOKEN_GPT2_PAT: GPT2_PAT_FACTORED}


def bpe_merge_word(ids: list[int], pair_rank: dict[tuple[int, int], int], merged_id: Sequence[int]) -> list[int]:
    """Merge one pre-token's ids: repeatedly merge every occurrence of its lowest-ranked pair.

    ``pair_rank[(a, b)]`` is the position of merge (a, b) in the merge list and ``merged_id[rank]``
    the id of the token it makes. With merges t+h -> 256 (rank 0) and th+e -> 257 (rank 1):

    >>> bpe_merge_word([116, 104, 101], {(116, 104): 0, (256, 101): 1}, [256, 257])
    [257]
    """
    ids = list(ids)
    while len(ids) > 1:
        ranks = [pair_rank.get(pair, NO_MERGE) for pair in zip(ids, ids[1:])]
        best = min(ranks)
        if best == NO_MERGE:
            break
        at = ranks.index(best)
        left, right, new = ids[at], ids[at + 1], merged_id[best]
        out, i = ids[:at], at
        while i < len(ids):
            if i + 1 < len(ids) and ids[i] == left and ids[i + 1] == right:
                out.append(new)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids

# %%
id_of = {v: k for k, v in vocab_ex.items()}
rank_ex = {(id_of[a], id_of[b]): r for r, (a, b) in enumerate(merges_ex)}
merged_ex = [id_of[a + b] for a, b in merges_ex]
example = [bpe_merge_word([id_of[bytes([c])] for c in w.encode()], rank_ex, merged_ex) for w in ["the", " cat", " ate"]]
print(example)
assert sum(example, []) == [9, 7, 1, 5, 10, 3] == plain_ex.encode("the cat ate")

# %% [markdown]
# Merging many pre-tokens at once. The loop above costs Python work per byte. A text of a few MB has tens of thousands of
# distinct pre-tokens the cache has not seen; running the loop on each one is the slowest part of
# encoding. But the loop's steps are the same for every word, so we run them for *all* new words
# together on numpy arrays: concatenate the words' byte ids, look up the rank of every adjacent
# pair (a vectorized hash table), take each word's minimum with `np.minimum.reduceat`, merge those
# positions, drop finished words, repeat. The number of rounds is the largest number of merge steps
# any word needs, not the number of words.

# %%
#| export
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: multiply, keep the top bits
_EMPTY = np.uint64(2**64 - 1)


class PairTable:
    """A numpy hash table ``(left id, right id) -> merge rank`` that looks up whole arrays of pairs.

    Keys are ``left * width + right`` (width = largest id + 1), distinct; open addressing, linear
    probing, load factor at most 1/4, so most lookups take one probe.

    >>> t = PairTable(np.array([5, 7]), np.array([6, 5]), np.array([0, 1]), width=8)
    >>> t.lookup(np.array([5 * 8 + 6, 7 * 8 + 5, 1 * 8 + 2], dtype=np.uint64)).tolist() == [0, 1, NO_MERGE]
    True
    """

    def __init__(self, lefts: np.ndarray, rights: np.ndarray, ranks: np.ndarray, width: int):
        self.width = np.uint64(width)
        keys = lefts.astype(np.uint64) * self.width + rights.astype(np.uint64)
        bits = max(8, (4 * len(keys)).bit_length())
        self.shift = np.uint64(64 - bits)
        self.mask = (1 << bits) - 1
        self.keys = np.full(1 << bits, _EMPTY, dtype=np.uint64)
        self.ranks = np.full(1 << bits, NO_MERGE, dtype=np.int32)
        todo, slot = np.arange(len(keys)), self._slot(keys)
        while todo.size:  # insert all keys at once; of several (distinct) keys wanting one free slot, one lands
            free = np.flatnonzero(self.keys[slot] == _EMPTY)
            self.keys[slot[free]] = keys[todo[free]]
            won = free[self.keys[slot[free]] == keys[todo[free]]]
            self.ranks[slot[won]] = ranks[todo[won]]
            lost = np.ones(todo.size, dtype=bool)
            lost[won] = False
            todo, slot = todo[lost], (slot[lost] + 1) & self.mask

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        return ((keys * _GOLDEN) >> self.shift).astype(np.intp)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Ranks of ``keys`` (uint64 array), ``NO_MERGE`` where a key is absent."""
        slot = self._slot(keys)
        found = self.keys[slot]
        hit = found == keys
        result = np.where(hit, self.ranks[slot], np.int32(NO_MERGE))
        where = np.flatnonzero(~hit & (found != _EMPTY))  # a few collided: probe the next slots
        slot, keys = slot[where], keys[where]
        while where.size:
            slot = (slot + 1) & self.mask
            found = self.keys[slot]
            hit = found == keys
            result[where[hit]] = self.ranks[slot[hit]]
            more = np.flatnonzero(~hit & (found != _EMPTY))
            where, slot, keys = where[more], slot[more], keys[more]
        return result


def bpe_merge_words(
    ids: np.ndarray,
    lengths: np.ndarray,
    table: PairTable,
    merged_id: np.ndarray,
    as_str: bool = False,
    first_ranks: np.ndarray | None = None,
) -> list[list[int]] | list[str]:
    """``bpe_merge_word`` for many words at once. ``ids`` (total,) holds the words' byte ids back to back.

    Each round merges, in every word still merging, all occurrences of its lowest-ranked pair. Only
    the pairs next to a merge change, so only those are looked up again. With ``as_str`` each word's
    ids come back as a string of ``chr(id)`` (the Tokenizer's compact cache format). ``first_ranks``
    may give the ranks of the initial pairs (computed faster by the caller, NO_MERGE at word ends).

    >>> t = PairTable(np.array([116, 256]), np.array([104, 101]), np.array([0, 1]), width=258)
    >>> bpe_merge_words(np.array([116, 104, 101, 104, 116, 104]), np.array([3, 1, 2]), t, np.array([256, 257]))
    [[257], [104], [256]]
    """
    tokens = np.asarray(ids, dtype=np.int32)
    counts = np.asarray(lengths, dtype=np.int64)  # tokens per word still merging
    active = np.arange(len(counts))  # which input word each of those is
    last = np.zeros(tokens.size, dtype=bool)  # last token of its word
    last[np.cumsum(counts) - 1] = True
    width = np.int64(table.width)

    def ranks_at(pos: np.ndarray) -> np.ndarray:  # ranks of pairs (pos, pos + 1)
        return table.lookup((tokens[pos] * width + tokens[pos + 1]).view(np.uint64))

    if first_ranks is not None:
        rank = np.asarray(first_ranks, dtype=np.int32)  # rank[i]: pair (i, i + 1); NO_MERGE at word ends
    else:
        rank = np.full(tokens.size, NO_MERGE, dtype=np.int32)
        inner = np.flatnonzero(~last)
        rank[inner] = ranks_at(inner)
    done_tokens, done_words, done_counts = [], [], []
    while tokens.size:
        starts = np.cumsum(counts) - counts
        best = np.minimum.reduceat(rank, starts)
        finished = best == NO_MERGE
        n_finished = np.count_nonzero(finished)
        if n_finished == finished.size or (n_finished and 8 * counts[finished].sum() > tokens.size):
            # words with nothing left to merge leave the arrays, a batch at a time (each removal is a pass;
            # gathering with flatnonzero's indices is several times faster than boolean-mask indexing)
            out = np.repeat(finished, counts)
            done_tokens.append(tokens[np.flatnonzero(out)])
            gone, stay = np.flatnonzero(finished), np.flatnonzero(~finished)
            done_words.append(active[gone])
            done_counts.append(counts[gone])
            keep = np.flatnonzero(~out)
            tokens, rank, last = tokens[keep], rank[keep], last[keep]
            active, counts, best = active[stay], counts[stay], best[stay]
            if not tokens.size:
                break
            starts = np.cumsum(counts) - counts
        elif n_finished:
            best = np.where(finished, -1, best)  # finished words wait in place; -1 matches no pair
        at = np.flatnonzero(rank == np.repeat(best, counts))
        adjacent = np.diff(at) == 1
        if adjacent.any():  # 'aaa' with merge a+a: in a run of overlapping pairs merge every other, leftmost first
            k = np.arange(at.size)
            run_start = np.maximum.accumulate(np.where(np.concatenate(([True], ~adjacent)), k, 0))
            at = at[(k - run_start) % 2 == 0]
        tokens[at] = merged_id[rank[at]]
        last[at] = last[at + 1]
        keep = np.ones(tokens.size, dtype=bool)
        keep[at + 1] = False
        keep = np.flatnonzero(keep)
        tokens, rank, last = tokens[keep], rank[keep], last[keep]
        counts = counts - np.bincount(np.searchsorted(starts, at, side="right") - 1, minlength=counts.size)
        new = at - np.arange(at.size)  # where the merged tokens are now
        right = new[np.flatnonzero(~last[new])]
        left = new[np.flatnonzero(new > 0)]
        left = left[np.flatnonzero(~last[left - 1])] - 1
        rank[new] = NO_MERGE
        changed = np.concatenate((left, right))
        rank[changed] = ranks_at(changed)
    if not done_tokens:
        return [""] * len(lengths) if as_str else [[] for _ in range(len(lengths))]
    # back to input order: gather each word's run of tokens, word by word in input order
    flat, counts = np.concatenate(done_tokens).astype(np.uint32), np.concatenate(done_counts)
    order = np.argsort(np.concatenate(done_words))
    starts, counts = (np.cumsum(counts) - counts)[order], counts[order]
    ends = np.cumsum(counts)
    flat = flat[np.arange(flat.size) + np.repeat(starts - (ends - counts), counts)]
    if not as_str:
        return [word.tolist() for word in np.split(flat, ends[:-1])]
    # a separator (an id no word holds) between words, then one str.split in C: no Python step per word
    sep = int(flat.max()) + 1 if flat.size else 0
    spaced = np.full(flat.size + counts.size - 1, sep, dtype=np.uint32)
    spaced[np.arange(flat.size) + np.repeat(np.arange(counts.size), counts)] = flat
    return spaced.tobytes().decode("utf-32-le", "surrogatepass").split(chr(sep))

# %%
import numpy as np

table_ex = PairTable(np.array([a for a, _ in rank_ex]), np.array([b for _, b in rank_ex]), np.arange(len(merges_ex)), width=11)
words_ex = [w.encode() for w in ["the", " cat", " ate", "aaa", "tthhe"]]
batch_ex = bpe_merge_words(
    np.array([id_of.get(bytes([c]), 0) for w in words_ex for c in w]), np.array([len(w) for w in words_ex]), table_ex, np.array(merged_ex)
)
one_by_one = [bpe_merge_word([id_of.get(bytes([c]), 0) for c in w], rank_ex, merged_ex) for w in words_ex]
print(batch_ex)
assert batch_ex == one_by_one

# %% [markdown]
# On the 32,279 distinct pre-tokens of 1 MB of web text with GPT-2's merges, the plain loop on
# bytes took 0.41 s, `bpe_merge_word` on ids 0.30 s, and `bpe_merge_words` 0.08 s (plus 0.02 s to
# build the table once): the merges of new pre-tokens are 5x cheaper than in step 1.

# %%
fast_small = {b: i for i, b in bench_vocab.items()}
bench_pairs = {(fast_small[a], fast_small[b]): r for r, (a, b) in reversed(list(enumerate(bench_merges)))}
bench_merged = np.array([fast_small[a + b] for a, b in bench_merges])
bench_words = list(cached.cache)
byte_id = np.array([fast_small[bytes([b])] for b in range(256)])
one_at_a_time, t_one = cpu_seconds(lambda: [bpe_merge_word(byte_id[list(w)].tolist(), bench_pairs, bench_merged) for w in bench_words])
bench_table = PairTable(*np.array([(a, b, r) for (a, b), r in bench_pairs.items()]).T, width=max(bench_vocab) + 1)
batched, t_batch = cpu_seconds(lambda: bpe_merge_words(
    byte_id[np.frombuffer(b"".join(bench_words), dtype=np.uint8)], np.array([len(w) for w in bench_words]), bench_table, bench_merged))
assert batched == one_at_a_time == [[fast_small[t] for t in cached.cache[w]] for w in bench_words]
print(f"{len(bench_words):,} distinct pre-tokens: one at a time {t_one:.3f} s, batched {t_batch:.3f} s CPU")

# %% [markdown]
# ## Step 3: pre-tokenizing faster with the standard library's `re` on ASCII text
#
# Once many documents share one batch of merges (the `Tokenizer`'s `encode`, notebook 01c), the regex
# is the largest cost:
# `regex` needs ~0.3 s for the 4 MB web sample, as long as tiktoken takes for the whole encoding.
# On ASCII-only text GPT-2's Unicode classes are plain ranges, and the standard library's `re`
# finds the same pre-tokens about twice as fast. Most web text is ASCII with a few accented letters
# or curly quotes, so we also cut such text around its non-ASCII runs, at a space that follows an
# ASCII non-space character: a space only ever *starts* a GPT-2 pre-token, so no match looks across
# it, and `regex` handles just the short spans around the non-ASCII runs. On the 4 MB web sample
# (handout path, CPU time) `re` on ASCII-only documents took encoding from 0.64 s to 0.53 s, the cuts
# to 0.50 s; without special tokens (the whole text one non-ASCII string) the cuts alone take it
# from 0.61 s to 0.47 s. Text dense in non-ASCII characters goes to `regex` whole.

# %%
#| export
# On ASCII-only text GPT-2's classes are plain ranges: \p{L} is [A-Za-z], \p{N} is [0-9] and `regex`'s \s is
# [\t\n\v\f\r ] (not \x1c-\x1f, which `re`'s \s would add).
_ASCII_SPACE = r"\t\n\x0b\x0c\r "
GPT2_PAT_ASCII = (
    rf"""'(?:[sdmt]|ll|ve|re)| ?(?:[A-Za-z]+|[0-9]+|[^{_ASCII_SPACE}A-Za-z0-9]+)"""
    rf"""|[{_ASCII_SPACE}]+(?![^{_ASCII_SPACE}])|[{_ASCII_SPACE}]+"""
)
ASCII_EQUIVALENT_PATTERN = {GPT2_PAT: GPT2_PAT_ASCII, TIKTOKEN_GPT2_PAT: GPT2_PAT_ASCII}
_ASCII_NON_SPACE = frozenset(map(chr, range(128))) - set("\t\n\x0b\x0c\r ")


def _non_ascii_positions(text: str, block: int = 1 << 16) -> np.ndarray:
    """Where ``text`` has non-ASCII characters, looked for a block at a time (most blocks are ASCII)."""
    found = [
        np.flatnonzero(np.frombuffer(text[i : i + block].encode("utf-32-le", "surrogatepass"), dtype=np.uint32) > 127) + i
        for i in range(0, len(text), block)
        if not text[i : i + block].isascii()
    ]
    return np.concatenate(found) if found else np.zeros(0, dtype=np.intp)


def pretokenize_mixed(text: str, ascii_findall, findall, sparse: int = 256) -> list[str]:
    """GPT-2 pre-tokens of ``text``: ``findall`` (any text) around its non-ASCII runs, ``ascii_findall`` between.

    A space right after an ASCII non-space character starts a pre-token and no match looks across
    it (a space only ever starts a GPT-2 pre-token), so the text on either side splits the same alone.
    We cut at the nearest such space before and after each non-ASCII run. Text with non-ASCII runs
    closer than ``sparse`` characters on average goes to ``findall`` whole.

    >>> pretokenize_mixed("a café, and more", re.compile(GPT2_PAT_ASCII).findall, regex.compile(GPT2_PAT).findall)
    ['a', ' café', ',', ' and', ' more']
    """
    wide = _non_ascii_positions(text)
    if not wide.size:
        return ascii_findall(text)
    firsts = np.flatnonzero(np.diff(wide, prepend=-2) > 1)  # where each run of non-ASCII characters starts
    if firsts.size * sparse > len(text):
        return findall(text)
    pieces: list[str] = []
    done = 0  # text[:done] is pre-tokenized; done is 0 or a cut
    for start, end in zip(wide[firsts].tolist(), (wide[np.append(firsts[1:], wide.size) - 1] + 1).tolist()):
        if start < done:  # inside the last span (a cut is ASCII, so a run never straddles one)
            continue
        cut = text.rfind(" ", done + 1, start)
        while cut > done and text[cut - 1] not in _ASCII_NON_SPACE:
            cut = text.rfind(" ", done + 1, cut)
        if cut > done:
            pieces += ascii_findall(text[done:cut])
            done = cut
        cut = text.find(" ", end)
        while cut != -1 and text[cut - 1] not in _ASCII_NON_SPACE:
            cut = text.find(" ", cut + 1)
        cut = len(text) if cut == -1 else cut
        pieces += findall(text[done:cut])
        done = cut
    pieces += ascii_findall(text[done:])
    return pieces

# %%
sample = "Naïve café-goers said: “it's 42°C”, then   left.\n\n" + "plain ASCII words here. " * 20 + "東京 🙂"
assert re.findall(GPT2_PAT_ASCII, "it's  a\ttest\n\n 42!") == regex.findall(GPT2_PAT, "it's  a\ttest\n\n 42!")
for sparse in (0, 256):  # 0: cut around every non-ASCII run; 256: this short sample is "dense"
    assert pretokenize_mixed(sample, re.compile(GPT2_PAT_ASCII).findall, regex.compile(GPT2_PAT).findall, sparse) == regex.findall(GPT2_PAT, sample)

# %% [markdown]
# ## What the next notebook needs
#
# Notebook 01c builds the exported `Tokenizer` from `cs336_basics.merge_engine`: `bpe_merge_word`
# when only a few pre-tokens are new, `PairTable` and `bpe_merge_words` when many are, and
# `pretokenize_mixed` with `GPT2_PAT_ASCII` (and the faster equivalent patterns) to cut text into
# pre-tokens. It checks the `Tokenizer` against this notebook's `PlainTokenizer` on the same
# examples and benchmark text, by running this notebook's code cells up to the heading
# "Step 1: a cache of pre-tokens" rather than copying them.
