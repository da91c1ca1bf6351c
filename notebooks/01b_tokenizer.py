# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
# ---

# %% [markdown]
# # 01b · The Tokenizer: encoding and decoding with a trained BPE vocabulary
#
# Notebook 01 trained a vocabulary and a list of merges and saved them as `vocab.json` and
# `merges.txt`. Here we use them: **encode** text into token ids by replaying the merges inside
# each pre-token, and **decode** ids back into text.
#
# Part 1 is the tokenizer a student writes from the handout, in a few dozen lines, checked on small
# examples and against GPT-2's tokenizer as implemented by `tiktoken`. A reader who stops there has
# a complete, correct tokenizer. Part 2, *Making it fast*, takes it step by step to the exported
# `Tokenizer` (a cache, merging many pre-tokens at once with numpy, a faster pre-tokenizer), each
# step measured and checked against the plain version; then streaming, files of token ids, GPT-2
# interop and the handout's tokenizer experiments (section 2.7). Exports:
# `cs336_basics/merge_engine.py`, `cs336_basics/tokenizer.py` and `cs336_basics/token_files.py`.

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
# **Against GPT-2.** GPT-2's `vocab.json` and `merges.txt` (the handout's fixtures, read with
# notebook 01's readers) in the plain tokenizer must give exactly the ids of `tiktoken`'s GPT-2
# encoding on real text. (Offline, tiktoken finds its files through `TIKTOKEN_CACHE_DIR`; without
# them, or without the fixtures, this check says so and is skipped.)

# %%
from cs336_basics.vocab_files import read_merges_txt, read_vocab_json

try:
    import tiktoken

    gpt2_tiktoken = tiktoken.get_encoding("gpt2")
except Exception as err:  # no network and no TIKTOKEN_CACHE_DIR
    gpt2_tiktoken = None
    print(f"tiktoken's gpt2 files are unavailable ({type(err).__name__}); skipping the GPT-2 checks")

gpt2_files = SHARED / "fixtures" / "gpt2_vocab.json", SHARED / "fixtures" / "gpt2_merges.txt"
texts = [p for p in (SHARED / "data" / "web" / "train.txt", SHARED / "fixtures" / "tinystories_sample.txt") if p.exists()]
if gpt2_tiktoken is not None and all(f.exists() for f in gpt2_files) and texts:
    gpt2_vocab, gpt2_merges = read_vocab_json(gpt2_files[0]), read_merges_txt(gpt2_files[1])
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
# took 1.65 s of CPU time (about 0.6 MB/s); the exported `Tokenizer` at the end of this part takes
# 0.16 s for the same ids. Four steps get there; after each one the ids are checked equal to the
# plain tokenizer's. (Numbers are CPU seconds on the shared 2-core machine that wrote this
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
# Once many documents share one batch of merges (see `encode` below), the regex is the largest cost:
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
# ## Step 4: the Tokenizer
#
# The class ties it together. Construction checks the inputs (every merge's parts and result must
# be in the vocabulary; special tokens missing from it are appended), then `encode` is:
# split on special tokens (longest first, so `<|endoftext|><|endoftext|>` beats `<|endoftext|>`
# when both are special) → pre-tokens → cached ids, merging only pre-tokens not seen before.
# Few new pre-tokens go through the readable loop, many through the numpy batch.
#
# A corpus is many short documents between `<|endoftext|>` tokens (~1000 in the 4 MB web sample).
# Encoding them one by one ran the numpy batch once per document on a few hundred new words, where
# its fixed cost per round dominates. So the cache starts out holding each special token's id (no
# pre-token can equal a special token: pre-tokens come from the text between them), the special
# tokens go into one list with the pre-tokens, and the new words of ~1M characters of documents are
# merged in one batch: 0.97 s → 0.64 s on the 4 MB sample (CPU time, `regex` pre-tokenization).
#
# `encode_iterable` streams: it buffers ~16K characters, encodes the part of the buffer whose
# pre-tokens can no longer change, and keeps the tail. A pre-token of the GPT-2 pattern is decided
# by the text up to two characters past its end, and a special token by at most its length, so the
# held-back tail is tiny and the ids equal `encode` on the joined text whatever the chunking.

# %%
#| default_exp tokenizer

# %%
#| export
"""The byte-level BPE Tokenizer: encode, decode, stream, save/load, GPT-2 and tiktoken interop.

    (GPT-2's ranks come from tiktoken's files: online, or from TIKTOKEN_CACHE_DIR.)

    >>> tok = Tokenizer.from_tiktoken("gpt2")   # doctest: +SKIP
    >>> tok.encode("Hello, world!")             # doctest: +SKIP
    [15496, 11, 995, 0]
    >>> tok.decode([15496, 11, 995, 0])         # doctest: +SKIP
    'Hello, world!'

Encoding: split the text on special tokens (longest match first), cut each piece into GPT-2
pre-tokens, then replay the merges inside each pre-token in the order they were learned. Speed
comes from a cache (pre-token -> ids) and from merging all the new pre-tokens of a text at once
with numpy (``merge_engine``). A saved tokenizer is a folder holding ``vocab.json``, ``merges.txt``
(GPT-2's format, ``vocab_files``) and ``special_tokens.json``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np
import regex

from cs336_basics.files import atomic_dir, atomic_write
from cs336_basics.merge_engine import (
    ASCII_EQUIVALENT_PATTERN,
    FASTER_EQUIVALENT_PATTERN,
    NO_MERGE,
    PairTable,
    bpe_merge_word,
    bpe_merge_words,
    pretokenize_mixed,
)
from cs336_basics.pretokenization import GPT2_PAT
from cs336_basics.vocab_files import TOKENIZER_FILES, read_merges_txt, read_merges_with_lines, read_vocab_json, token_to_str, unit_problem

# %%
#| export
class Tokenizer:
    """Byte-level BPE: ``encode`` text to ids, ``decode`` ids to text.

    ``vocab`` maps id -> token bytes, ``merges`` lists merged pairs in the order they were learned,
    ``special_tokens`` are strings never split (appended to the vocab when missing), and
    ``pattern`` is the pre-tokenization regex (GPT-2's by default). With ``whole_token_lookup``
    a pre-token that is itself in the vocabulary becomes that token without running the merges:
    tiktoken's rule (``from_tiktoken`` turns it on), the same ids as merging for any vocabulary made
    by BPE training, but not for hand-made merge lists that never build some of their tokens.

    >>> vocab = {i: bytes([i]) for i in range(256)} | {256: b"th", 257: b"the"}
    >>> tok = Tokenizer(vocab, [(b"t", b"h"), (b"th", b"e")], ["<|endoftext|>"])
    >>> tok.encode("the<|endoftext|>")
    [257, 258]
    >>> tok.decode([257, 32, 258])
    'the <|endoftext|>'
    """

    STREAM_CHARS = 1 << 14  # encode_iterable encodes its buffer once it holds this many characters
    BATCH_MIN_WORDS = 64  # fewer new pre-tokens than this: merge them one by one (numpy has overhead)
    BATCH_CHARS = 1 << 20  # encode looks up the pre-tokens of about this many characters at once

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: Sequence[tuple[bytes, bytes]],
        special_tokens: Sequence[str] | None = None,
        *,
        pattern: str = GPT2_PAT,
        cache_size: int = 1 << 18,
        whole_token_lookup: bool = False,
    ):
        if not isinstance(vocab, dict) or not vocab:
            raise TypeError("vocab must be a non-empty dict {id: token bytes}")
        self.vocab: dict[int, bytes] = {}
        for token_id, token in vocab.items():
            if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)) or token_id < 0:
                raise ValueError(f"vocab id {token_id!r} is not a non-negative integer")
            if not isinstance(token, (bytes, bytearray)):
                raise TypeError(f"vocab[{token_id}] is {type(token).__name__}; tokens must be bytes")
            self.vocab[int(token_id)] = bytes(token)
        self.id_of: dict[bytes, int] = {}
        for token_id in sorted(self.vocab):  # duplicated bytes: the smallest id wins
            self.id_of.setdefault(self.vocab[token_id], token_id)

        self.special_tokens: list[str] = []
        self.special_token_ids: dict[str, int] = {}
        for special in special_tokens or []:
            if not isinstance(special, str) or not special:
                raise ValueError(f"special token {special!r} must be a non-empty string")
            if special in self.special_token_ids:
                continue
            token = special.encode("utf-8")
            if token not in self.id_of:  # append missing special tokens to the vocabulary
                self.id_of[token] = max(self.vocab) + 1
                self.vocab[self.id_of[token]] = token
            self.special_tokens.append(special)
            self.special_token_ids[special] = self.id_of[token]
        by_length = sorted(self.special_tokens, key=len, reverse=True)  # longest match wins
        self._special_re = regex.compile("(" + "|".join(map(regex.escape, by_length)) + ")") if by_length else None
        self._max_special_len = len(by_length[0]) if by_length else 0

        self.merges: list[tuple[bytes, bytes]] = [(bytes(a), bytes(b)) for a, b in merges]
        self.pair_rank: dict[tuple[int, int], int] = {}
        self.merged_id: list[int] = []
        for rank, (left, right) in enumerate(self.merges):
            for part in (left, right, left + right):
                if part not in self.id_of:
                    raise ValueError(f"merge {rank} ({left!r}, {right!r}): {part!r} is not in the vocabulary")
            self.pair_rank.setdefault((self.id_of[left], self.id_of[right]), rank)  # a repeated merge never fires
            self.merged_id.append(self.id_of[left + right])
        self.byte_ids = np.array([self.id_of.get(bytes([b]), -1) for b in range(256)], dtype=np.int64)

        self.pattern = pattern
        self._compile_pattern()
        self.cache_size = cache_size
        # A special token is a pre-token whose ids are known: the cache starts with them. No ordinary
        # pre-token can equal one, because pre-tokens come from the text between special tokens.
        self._special_cache = {special: chr(token_id) for special, token_id in self.special_token_ids.items()}
        self._cache: dict[str, str] = dict(self._special_cache)  # pre-token -> its ids as a string of chr(id)
        self.whole_token_lookup = whole_token_lookup
        self._whole_tokens: dict[str, str] = {}  # token text -> chr(id), for whole_token_lookup
        if whole_token_lookup:
            special_ids = set(self.special_token_ids.values())
            for token, token_id in self.id_of.items():
                try:
                    if token_id not in special_ids:
                        self._whole_tokens[token.decode("utf-8")] = chr(token_id)
                except UnicodeDecodeError:  # a token that is part of a character is never a whole pre-token
                    pass
        self._table: PairTable | None = None  # built on first use

    # ------------------------------------------------------------------ basics
    @property
    def vocab_size(self) -> int:
        """Number of ids (one past the largest), the size an embedding table needs."""
        return max(self.vocab) + 1

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, special_tokens={self.special_tokens})"

    def __getstate__(self):  # workers of a process pool get the tokenizer without its cache
        return self.__dict__ | {"_cache": dict(self._special_cache), "_findall": None, "_ascii_findall": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._compile_pattern()

    def _compile_pattern(self) -> None:
        self._findall = regex.compile(FASTER_EQUIVALENT_PATTERN.get(self.pattern, self.pattern)).findall
        ascii_pattern = ASCII_EQUIVALENT_PATTERN.get(self.pattern)
        self._ascii_findall = re.compile(ascii_pattern).findall if ascii_pattern else None

    def _pretokenize(self, text: str) -> list[str]:
        """The pre-tokens of ``text`` (which holds no special token)."""
        if self._ascii_findall is None:
            return self._findall(text)
        if text.isascii():
            return self._ascii_findall(text)
        return pretokenize_mixed(text, self._ascii_findall, self._findall)

    # ------------------------------------------------------------------ encode
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}; decode bytes first")
        if self._special_re is None:
            return self._encode_ordinary(text)
        # One list of pre-tokens for many documents, special tokens included (the cache holds their
        # ids), so that the new pre-tokens of all of them are merged in one batch.
        ids: list[int] = []
        pieces: list[str] = []
        size = 0
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:
                pieces.append(part)
            elif part:
                pieces += self._pretokenize(part)
                size += len(part)
                if size >= self.BATCH_CHARS:  # bounded memory for the pre-tokens of a long text
                    ids += self._ids_of_pretokens(pieces)
                    pieces, size = [], 0
        ids += self._ids_of_pretokens(pieces)
        return ids

    def _encode_ordinary(self, text: str) -> list[int]:
        return self._ids_of_pretokens(self._pretokenize(text))

    def _ids_of_pretokens(self, pieces: list[str]) -> list[int]:
        # The cache maps a pre-token to its ids written as a string of chr(id): joining strings and
        # reading the result back as UTF-32 runs in C, where a list of lists would need Python work.
        cache = self._cache
        if len(cache) > self.cache_size:  # bounded memory on endless streams
            cache.clear()
            cache.update(self._special_cache)
        new = set(pieces).difference(cache)
        if new and self.whole_token_lookup:
            whole = new.intersection(self._whole_tokens)
            if whole:
                cache.update({piece: self._whole_tokens[piece] for piece in whole})
                new -= whole
        if new:
            cache.update(self._merge_pretokens(list(new)))
        if len(pieces) < 2:
            return ids_from_str(cache[pieces[0]]) if pieces else []
        return ids_from_str("".join(itemgetter(*pieces)(cache)))  # one C loop over the lookups

    def _merge_pretokens(self, pieces: list[str]) -> Iterable[tuple[str, str]]:
        """Run the merges on pre-tokens that are not cached yet: ``(piece, ids as chr(id) string)`` pairs."""
        data, lengths = _utf8_pieces(pieces)
        ids = self.byte_ids[data]
        if ids.size and ids.min() < 0:
            bad = data[int(np.argmin(ids))]
            raise ValueError(
                f"cannot encode byte 0x{bad:02x}: it is not in the vocabulary "
                "(a byte-level BPE vocabulary holds all 256 single bytes)"
            )
        if len(pieces) < self.BATCH_MIN_WORDS:
            out, start = {}, 0
            for piece, length in zip(pieces, lengths.tolist()):
                merged = bpe_merge_word(ids[start : start + length].tolist(), self.pair_rank, self.merged_id)
                out[piece] = "".join(map(chr, merged))
                start += length
            return out
        if self._table is None:
            n = len(self.pair_rank)
            pairs = np.fromiter(chain.from_iterable(self.pair_rank), dtype=np.int64, count=2 * n).reshape(-1, 2)
            ranks = np.fromiter(self.pair_rank.values(), dtype=np.int64, count=n)
            self._table = PairTable(pairs[:, 0], pairs[:, 1], ranks, width=self.vocab_size)
            self._merged_array = np.array(self.merged_id, dtype=np.int64)
            # ranks of byte pairs in a dense 256 x 256 table: the first round looks up every pair
            self._byte_pair_rank = self._table.lookup(
                (self.byte_ids.reshape(-1, 1) * self.vocab_size + self.byte_ids.reshape(1, -1)).ravel().view(np.uint64)
            )
        first = self._byte_pair_rank[(data[:-1].astype(np.intp) << 8) | data[1:]]
        first = np.append(first, np.int32(NO_MERGE))
        first[np.cumsum(lengths) - 1] = NO_MERGE  # no pair across the end of a word
        merged = bpe_merge_words(ids, lengths, self._table, self._merged_array, as_str=True, first_ranks=first)
        return zip(pieces, merged)

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily yield the ids of the concatenated strings of ``iterable`` (e.g. an open text file).

        Memory stays bounded (a ~16K-character buffer and the cache) and the ids equal
        ``encode("".join(iterable))`` however the strings are cut.
        """
        if isinstance(iterable, str):
            iterable = (iterable,)  # iterating a str would feed it one character at a time
        parts: list[str] = []
        size = 0
        for chunk in iterable:
            if not isinstance(chunk, str):
                raise TypeError(f"encode_iterable expects strings, got {type(chunk).__name__}; open files in text mode")
            parts.append(chunk)
            size += len(chunk)
            if size >= self.STREAM_CHARS:
                ids, tail = self._encode_settled_prefix("".join(parts))
                yield from ids
                parts, size = [tail], len(tail)
        yield from self.encode("".join(parts))

    def _encode_settled_prefix(self, text: str) -> tuple[list[int], str]:
        """Ids of the longest prefix of ``text`` that more text cannot change, and the rest of ``text``."""
        pieces: list[str] = []
        start, stop = 0, len(text)
        if self._special_re is not None:
            # a special token starting before `stop` is wholly visible, so its longest match is decided
            stop = max(0, len(text) - self._max_special_len + 1)
            for match in self._special_re.finditer(text):
                if match.start() >= stop:
                    break
                pieces += self._pretokenize(text[start : match.start()])
                pieces.append(match.group())  # cached as its id
                start = match.end()
            stop = max(start, stop)
        tail = self._pretokenize(text[start:stop])
        # a GPT-2 pre-token is decided by the text up to 2 characters past its end; keep a margin of 8
        settled, end = len(tail), stop - start
        while settled and end > stop - start - 8:
            settled -= 1
            end -= len(tail[settled])
        return self._ids_of_pretokens(pieces + tail[:settled]), text[start + end :]

    # ------------------------------------------------------------------ decode
    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The concatenated token bytes of ``ids``."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        try:
            return b"".join(map(self.vocab.__getitem__, ids))
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, (int, np.integer)) or i not in self.vocab)
            raise ValueError(f"token id {bad!r} is not in the vocabulary (ids are 0..{self.vocab_size - 1})") from None

    # ------------------------------------------------------------------ files
    @classmethod
    def from_files(
        cls, vocab_filepath: str | os.PathLike, merges_filepath: str | os.PathLike, special_tokens: Sequence[str] | None = None
    ) -> Tokenizer:
        """Load GPT-2-format ``vocab.json`` and ``merges.txt`` (as the handout's fixtures and ``save``)."""
        return cls(read_vocab_json(vocab_filepath), read_merges_txt(merges_filepath), special_tokens)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``directory`` as a unit: ``vocab.json``, ``merges.txt`` and ``special_tokens.json``.

        vocab.json is ``{token: id}`` in id order, tokens written with GPT-2's byte-to-unicode map;
        merges.txt has a ``#version`` line, then one ``left right`` merge a line in learned order.
        The files are written into a temporary folder beside ``directory`` that then takes its
        place, so a failure (full disk, Ctrl-C) leaves an old tokenizer there whole. An existing
        folder is replaced only when it holds nothing but these three files (anything else:
        ValueError, nothing touched). A tokenizer that ``load`` would refuse (see ``unit_problem``)
        is refused before anything is written.
        """
        directory = Path(directory)
        vocab = {token_to_str(self.vocab[i]): i for i in sorted(self.vocab)}
        if len(vocab) != len(self.vocab):
            raise ValueError("the vocabulary holds the same bytes under two ids; vocab.json cannot represent that")
        problem = unit_problem(self.vocab, self.merges, self.special_tokens)
        if problem:
            raise ValueError(f"cannot save this tokenizer: {problem}; Tokenizer.load would refuse the folder "
                             "(a token that no merge makes must be one of the special_tokens)")
        merges = "".join(f"{token_to_str(a)} {token_to_str(b)}\n" for a, b in self.merges)
        with atomic_dir(directory, owned=TOKENIZER_FILES) as tmp:
            atomic_write(tmp / "vocab.json", json.dumps(vocab, ensure_ascii=False, indent=0) + "\n")
            atomic_write(tmp / "merges.txt", "#version: 0.2 (cs336_basics byte-level BPE)\n" + merges)
            atomic_write(tmp / "special_tokens.json", json.dumps(self.special_tokens, ensure_ascii=False) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """The tokenizer that ``save(directory)`` wrote, checked to be one training's output.

        A missing folder or file is FileNotFoundError; files that do not belong together (a
        vocab.json and a merges.txt from two trainings, a merges.txt cut short: see
        ``unit_problem``) are a ValueError that names the folder and the fix.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"tokenizer folder {directory} does not exist; create one with `cs336 train-bpe --out DIR`")
        retrain = f"train the tokenizer again: cs336 train-bpe --input FILE --vocab-size N --out {directory}"
        missing = [name for name in TOKENIZER_FILES if not (directory / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"tokenizer folder {directory} has no {' and no '.join(missing)}; a tokenizer is vocab.json, merges.txt "
                f"and special_tokens.json written together: {retrain} (files from elsewhere: Tokenizer.from_files)"
            )
        specials_path = directory / "special_tokens.json"
        try:
            specials = json.loads(specials_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{specials_path}: not valid JSON ({err}); expected a list of strings") from None
        if not isinstance(specials, list) or not all(isinstance(s, str) and s for s in specials):
            raise ValueError(f"{specials_path}: expected a JSON list of strings like [\"<|endoftext|>\"]")
        vocab = read_vocab_json(directory / "vocab.json")
        merges, lines = read_merges_with_lines(directory / "merges.txt")
        problem = unit_problem(vocab, merges, specials, lines)
        if problem:
            raise ValueError(f"tokenizer folder {directory} is not one training's output: {problem} "
                             f"(files mixed from two trainings, or cut short?); {retrain}")
        return cls(vocab, merges, specials)

    # ------------------------------------------------------------------ tiktoken
    @classmethod
    def from_tiktoken(cls, name: str = "gpt2", special_tokens: Sequence[str] | None = None) -> Tokenizer:
        """Build from one of tiktoken's encodings; ids are tiktoken's ids.

        tiktoken stores ranks, not merges: token of rank r is the merge of the two parts that BPE
        leaves it in when only ranks below r are allowed. Like tiktoken, a pre-token that is a whole
        vocabulary token skips the merges (``whole_token_lookup``). Special tokens default to the
        encoding's (``<|endoftext|>`` for gpt2); ``encode`` then equals tiktoken's
        ``encode(text, allowed_special="all")``.
        """
        try:
            import tiktoken
        except ImportError:
            raise ImportError("Tokenizer.from_tiktoken needs the tiktoken package (`uv sync` installs it)") from None
        try:
            encoding = tiktoken.get_encoding(name)
        except Exception as err:
            raise RuntimeError(
                f"tiktoken could not load the {name!r} encoding ({type(err).__name__}: {err}); offline, set "
                "TIKTOKEN_CACHE_DIR to a folder holding its files (e.g. ../shared/tiktoken_cache)"
            ) from err
        ranks: dict[bytes, int] = encoding._mergeable_ranks  # tiktoken has no public accessor for these
        vocab = {rank: token for token, rank in ranks.items()}
        specials: dict[str, int] = dict(encoding._special_tokens)
        vocab |= {token_id: text.encode("utf-8") for text, token_id in specials.items()}
        specials_wanted = list(specials) if special_tokens is None else special_tokens
        return cls(vocab, merges_from_ranks(ranks), specials_wanted, pattern=encoding._pat_str, whole_token_lookup=True)

    def to_tiktoken(self, name: str = "cs336") -> "tiktoken.Encoding":  # noqa: F821
        """This vocabulary as a ``tiktoken.Encoding`` (fast, Rust); same ids as ``encode``.

        tiktoken ranks tokens by id, so ids must grow in merge order (true for ``train_bpe`` and GPT-2).
        """
        import tiktoken

        special_ids = set(self.special_token_ids.values())
        ranks = {token: i for i, token in self.vocab.items() if i not in special_ids}
        if len(ranks) != len(self.vocab) - len(special_ids):
            raise ValueError("the vocabulary holds the same bytes under two ids; tiktoken needs unique tokens")
        for rank, (left, right) in enumerate(self.merges):
            if not self.id_of[left] < self.merged_id[rank] > self.id_of[right]:
                raise ValueError(f"merge {rank} ({left!r}, {right!r}) makes an id smaller than its parts; tiktoken ranks tokens by id")
        return tiktoken.Encoding(name, pat_str=self.pattern, mergeable_ranks=ranks, special_tokens=dict(self.special_token_ids))


def ids_from_str(s: str) -> list[int]:
    """Read a string of ``chr(id)`` back as ids: ``ids_from_str("\\x05\\u1234") == [5, 0x1234]``."""
    return np.frombuffer(s.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).tolist()


def _utf8_pieces(pieces: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The pieces' UTF-8 bytes back to back (uint8) and each piece's length in bytes."""
    joined = "".join(pieces)
    try:
        data = joined.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: piece by piece
        words = [_to_bytes(p) for p in pieces]
        return np.frombuffer(b"".join(words), dtype=np.uint8), np.array([len(w) for w in words], dtype=np.int64)
    chars = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    array = np.frombuffer(data, dtype=np.uint8)
    if array.size == chars.sum():  # all ASCII
        return array, chars
    char_at = np.flatnonzero((array & 0xC0) != 0x80)  # byte offset where each character starts
    starts = char_at[np.cumsum(chars) - chars]
    return array, np.diff(np.append(starts, array.size))


def _to_bytes(piece: str) -> bytes:
    # lone surrogates from files decoded with errors="surrogateescape" turn back into their bytes
    try:
        return piece.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # other lone surrogates: U+FFFD, as tiktoken does
        return piece.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Recover the merge list from tiktoken-style ranks (``{token bytes: rank}``), in rank order.

    >>> merges_from_ranks({b"a": 0, b"b": 1, b"ab": 2, b"abb": 3})
    [(b'a', b'b'), (b'ab', b'b')]
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best_at, best = -1, rank
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1], rank)
                if r < best:
                    best_at, best = i, r
            if best_at < 0:
                break
            parts[best_at : best_at + 2] = [parts[best_at] + parts[best_at + 1]]
        if len(parts) != 2 or ranks.get(parts[0], rank) >= rank or ranks.get(parts[1], rank) >= rank:
            raise ValueError(f"token {token!r} (rank {rank}) is not a merge of two lower-ranked tokens")
        merges.append((parts[0], parts[1]))
    return merges

# %% [markdown]
# All together: the same megabyte of web text took 0.16 s of CPU time, ten times less than the
# plain tokenizer, for the same ids. The check: the fast `Tokenizer` and the plain one agree on the
# benchmark text and on the small examples, special tokens included (overlapping ones too).

# %%
fast_bench = Tokenizer(bench_vocab, bench_merges, ["<|endoftext|>"])
fast_ids, t_fast = cpu_seconds(lambda: fast_bench.encode(bench_text))
assert fast_ids == plain_ids
print(f"Tokenizer: {t_fast:.2f} s CPU ({t_plain / t_fast:.1f}x the plain tokenizer), same ids")
tok_small = Tokenizer(vocab_small, merges_small, special_tokens=["<|endoftext|>", "<|endoftext|><|endoftext|>"])
for text in (probe, "the cat<|endoftext|><|endoftext|>the<|endoftext|>", "é", "aaa  \n\n\t x"):
    assert tok_small.encode(text) == plain_small.encode(text) and tok_small.decode(tok_small.encode(text)) == text
print(tok_small, tok_small.encode(probe))
try:
    tok_small.decode([10**6])  # an id outside the vocabulary is an error, not silence
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## Streaming: `encode_iterable`
#
# Cut a text anywhere, even inside a pre-token or a special token, and the stream of ids is the
# same as `encode` of the whole.

# %%
import random

text_stream = ("Hello world! It's 2025, isn't it?<|endoftext|>  Spaces\n\n and tabs\t here. " * 3000)
whole = tok_small.encode(text_stream)
rng = random.Random(0)
cuts = sorted(rng.sample(range(len(text_stream)), 500))
chunks = [text_stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(text_stream)])]
assert list(tok_small.encode_iterable(chunks)) == whole
assert list(tok_small.encode_iterable(iter(text_stream))) == whole  # one character at a time
print(f"{len(text_stream):,} characters in {len(chunks)} random chunks -> {len(whole):,} ids, same as encode")

# %% [markdown]
# ## Tokenizing files: a memmap-able `.npy` of token ids
#
# Training reads token ids with `np.load(path, mmap_mode="r")`, so a file of any size costs no RAM.
# `tokenize_file` cuts the input at special-token starts (or safe newlines), encodes the chunks
# in a process pool, and streams the ids into a temporary file behind a fixed-size `.npy` header
# that it fills in at the end, then renames it into place: constant memory, never a half file.

# %%
#| default_exp token_files

# %%
#| export
"""Tokenize a text file into a memmap-able ``.npy`` of token ids, in a process pool, in constant memory."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cs336_basics.files import atomic_path
from cs336_basics.pretokenization import chunk_spans, read_span
from cs336_basics.tokenizer import Tokenizer

# %%
#| export
def npy_header(dtype: np.dtype, length: int, size: int = 128) -> bytes:
    """A ``.npy`` (version 1.0) header of exactly ``size`` bytes for a 1-D array, so it can be written last."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (length,)})
    body = text.encode("latin1").ljust(size - 10 - 1) + b"\n"
    if len(body) + 10 != size:
        raise ValueError(f"a .npy header for shape ({length},) does not fit in {size} bytes")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_span(task: tuple[str, int, int, str]) -> bytes:
    path, start, end, dtype = task
    ids = _worker_tokenizer.encode(read_span(path, start, end))
    return np.asarray(ids, dtype=dtype).tobytes()


def tokenize_file(
    tokenizer: Tokenizer,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    num_workers: int | None = None,
    progress: bool = True,
    chunk_bytes: int = 1 << 22,
) -> Path:
    """Encode a text file into a ``.npy`` of token ids (uint16, or uint32 when the vocab needs it).

    ``num_workers=None`` uses every available CPU; ``1`` encodes in this process. The result opens
    with ``np.load(output_path, mmap_mode="r")``. Undecodable UTF-8 bytes are encoded as the raw
    bytes they are, so nothing is lost.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"input file {input_path} does not exist")
    if output_path.suffix != ".npy":
        raise ValueError(f"output {output_path} must end in .npy (it is written in NumPy's .npy format)")
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32)
    spans = chunk_spans(input_path, tokenizer.special_tokens, chunk_bytes)
    tasks = [(os.fspath(input_path), start, end, dtype.str) for start, end in spans]
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    num_workers = max(1, min(num_workers, len(tasks)))

    from tqdm import tqdm

    with atomic_path(output_path) as tmp, open(tmp, "xb") as out, tqdm(
        total=input_path.stat().st_size, unit="B", unit_scale=True, desc=f"tokenize {input_path.name}", disable=not progress
    ) as bar:
        out.write(npy_header(dtype, 0))  # placeholder, rewritten once the length is known
        count = 0
        if num_workers == 1:
            _init_worker(tokenizer)
            results = map(_encode_span, tasks)
            pool = None
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            pool = ctx.Pool(num_workers, initializer=_init_worker, initargs=(tokenizer,))
            results = pool.imap(_encode_span, tasks)  # in order; this process only writes, so results do not pile up
        try:
            for (_, start, end, _), data in zip(tasks, results):
                out.write(data)
                count += len(data) // dtype.itemsize
                bar.update(end - start)
        finally:
            if pool is not None:
                pool.terminate()
        out.seek(0)
        out.write(npy_header(dtype, count))
    return output_path

# %%
import tempfile

work = Path(tempfile.mkdtemp())
(work / "stream.txt").write_text(text_stream, encoding="utf-8")
for workers in (1, 2):
    out_npy = tokenize_file(tok_small, work / "stream.txt", work / f"ids{workers}.npy", num_workers=workers, progress=False, chunk_bytes=4096)
    ids_file = np.load(out_npy, mmap_mode="r")
    assert ids_file.dtype == np.uint16 and ids_file.tolist() == whole, workers
print(f"{out_npy.name}: {ids_file.shape[0]:,} ids, dtype {ids_file.dtype}, same as encode; files in {sorted(p.name for p in work.iterdir())}")

# %% [markdown]
# ## GPT-2, exactly: interop with `tiktoken`
#
# tiktoken ships GPT-2's vocabulary as *ranks* (token bytes → id) without the merge list. The merges
# come back from the ranks: the token of rank r is the merge of the two parts that BPE leaves it
# in when only ranks below r may merge (`merges_from_ranks`). With those, our encoder must give
# tiktoken's ids exactly; and `to_tiktoken` hands any of our vocabularies to tiktoken's Rust encoder.
# (Offline, tiktoken finds its files through `TIKTOKEN_CACHE_DIR`; without them these cells say so.)

# %%
import time

if gpt2_tiktoken is not None:
    start = time.perf_counter()
    gpt2 = Tokenizer.from_tiktoken("gpt2")
    print(f"{gpt2} built from tiktoken's ranks in {time.perf_counter() - start:.1f} s")
    samples = [
        "Hello, world! It's 2025: naïve café, 東京, 🙂.",
        "    def f(x):\n        return x ** 2\n\n\n",
        "<|endoftext|>The end.<|endoftext|>",
    ]
    for sample in samples:
        ours, theirs = gpt2.encode(sample), gpt2_tiktoken.encode(sample, allowed_special="all")
        assert ours == theirs and gpt2.decode(ours) == sample
        print(ours[:12], "..." if len(ours) > 12 else "")
    print("same ids as tiktoken; round trip exact")

# %% [markdown]
# The other direction: our small tokenizer as a tiktoken `Encoding` gives the same ids.

# %%
if gpt2_tiktoken is not None:
    as_tiktoken = tok_small.to_tiktoken("small")
    probe = "the cat<|endoftext|>the cat"
    assert as_tiktoken.encode(probe, allowed_special="all") == tok_small.encode(probe)
    print(as_tiktoken, as_tiktoken.encode(probe, allowed_special="all"))

# %% [markdown]
# **Speed.** `benchmarks/bench_encode.py` encodes the first 4 MB of the web stand-in with a freshly
# built GPT-2 Tokenizer (empty cache) and with tiktoken in the same run; the ids are identical. Where
# the time goes in our pure-Python encoder: pre-tokenizing (about a third, `re` on the ASCII
# stretches), merging the ~86K distinct pre-tokens (the numpy batch, a quarter), and building and
# looking up 1.1M pre-token strings in the cache. A second pass over the same text only pays the
# pre-tokenizing and the lookups. The handout's way, `Tokenizer(vocab, merges, ["<|endoftext|>"])`,
# encodes the corpus with its document separators as one special token, at about the same speed.
# Like tiktoken, the GPT-2 tokenizer built by `from_tiktoken` maps a pre-token that is a whole
# vocabulary token straight to it (`whole_token_lookup`). For a vocabulary made by BPE training
# that is what merging gives anyway: a token was made from two parts that sat side by side in some
# word, and merging its own bytes alone retraces the same steps, since no merge reached outside it.

# %%
def timed(fn):
    """``(result, wall seconds, CPU seconds of this process)``: on a shared machine CPU time is the steadier."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


if gpt2_tiktoken is not None:
    bench_text = (text_stream * 4)[: 200_000] if SMOKE else (SHARED / "data" / "web" / "train.txt").read_bytes()[:4_000_000].decode("utf-8", "replace")
    fresh = Tokenizer.from_tiktoken("gpt2", special_tokens=[])
    theirs, *t_tiktoken = timed(lambda: gpt2_tiktoken.encode_ordinary(bench_text))
    ours, *t_fresh = timed(lambda: fresh.encode(bench_text))
    _, *t_warm = timed(lambda: fresh.encode(bench_text))
    assert ours == theirs
    handout = Tokenizer(fresh.vocab, fresh.merges, ["<|endoftext|>"])  # merges only, the special token split off
    theirs, *t_tiktoken_eot = timed(lambda: gpt2_tiktoken.encode(bench_text, allowed_special={"<|endoftext|>"}))
    ours, *t_handout = timed(lambda: handout.encode(bench_text))
    assert ours == theirs
    mb = len(bench_text.encode()) / 1e6
    print(f"{len(bench_text.encode()) / 1e6:.1f} MB of {'made-up' if SMOKE else 'web stand-in'} text")
    for name, (wall, cpu) in [("tiktoken", t_tiktoken), ("ours, fresh", t_fresh), ("ours, warm cache", t_warm)]:
        print(f"{name:18s} {mb / wall:6.2f} MB/s wall, {mb / cpu:6.2f} MB/s CPU  ({t_tiktoken[1] / cpu:.2f}x tiktoken's speed)")
    for name, (wall, cpu) in [("tiktoken, EOT", t_tiktoken_eot), ("ours, handout, EOT", t_handout)]:
        print(f"{name:18s} {mb / wall:6.2f} MB/s wall, {mb / cpu:6.2f} MB/s CPU  ({t_tiktoken_eot[1] / cpu:.2f}x tiktoken's speed)")

# %% [markdown]
# ## Tokenizer experiments (handout section 2.7)
#
# The tokenizers are notebook 01's (trained with `train_bpe`, loaded with `Tokenizer.load`): vocab 10,000 trained on the English stand-in and 32,000 on the
# web stand-in (`runs/bpe/english-10k`, `runs/bpe/web-32k`, made by `cs336 train-bpe`; trained here
# if missing). In smoke mode two tiny tokenizers trained on made-up text stand in for them.

# %%
import subprocess
import sys

from cs336_basics.bpe import train_bpe

if HAVE_SHARED:
    corpora = {"english": SHARED / "data" / "english", "web": SHARED / "data" / "web"}
    tokenizer_dirs = {"english": ROOT / "runs" / "bpe" / "english-10k", "web": ROOT / "runs" / "bpe" / "web-32k"}
    sizes = {"english": 10_000, "web": 32_000}
    for name, folder in tokenizer_dirs.items():
        if not (folder / "vocab.json").exists():
            cmd = [sys.executable, "-m", "cs336_basics.cli", "train-bpe", "--input", str(corpora[name] / "train.txt"),
                   "--vocab-size", str(sizes[name]), "--special-token", "<|endoftext|>", "--out", str(folder), "--no-progress"]
            print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    tokenizers = {name: Tokenizer.load(folder) for name, folder in tokenizer_dirs.items()}
else:
    corpora = {}
    for name, words in {"english": "once upon a time there was a little girl who loved her cat and dog",
                        "web": "Subject: Re: [spam] click http://example.com/unsubscribe?id=1234 -- Dan <dan@example.org>"}.items():
        rng = random.Random(name)
        docs = [" ".join(rng.choice(words.split()) for _ in range(60)) + ".\n" for _ in range(200)]
        corpora[name] = work / name
        corpora[name].mkdir(exist_ok=True)
        for split in ("train", "valid"):
            (corpora[name] / f"{split}.txt").write_text("<|endoftext|>".join(docs), encoding="utf-8")
    tokenizers = {}
    for name, size in {"english": 300, "web": 400}.items():
        vocab, merges = train_bpe(corpora[name] / "train.txt", size, ["<|endoftext|>"])
        tokenizers[name] = Tokenizer(vocab, merges, ["<|endoftext|>"])
tokenizers

# %% [markdown]
# **(a), (b) Compression.** Ten documents sampled (seed 0) from each corpus's validation file,
# encoded by each tokenizer (and GPT-2 for reference); the ratio is UTF-8 bytes per token.

# %%
def sample_documents(path: Path, k: int = 10, seed: int = 0) -> list[str]:
    docs = [d for d in path.read_text(encoding="utf-8").split("<|endoftext|>") if d.strip()]
    return random.Random(seed).sample(docs, k)


documents = {name: sample_documents(folder / "valid.txt") for name, folder in corpora.items()}
rows = dict(tokenizers) | ({"GPT-2 (50,257)": gpt2} if gpt2_tiktoken is not None else {})
print(f"{'tokenizer':18s}" + "".join(f"{'on ' + name:>14s}" for name in documents))
compression = {}
for tok_name, tok in rows.items():
    label = f"{tok_name} ({tok.vocab_size:,})" if tok_name in tokenizers else tok_name
    ratios = []
    for corpus, docs in documents.items():
        nbytes = sum(len(d.encode("utf-8")) for d in docs)
        ntokens = sum(len(tok.encode(d)) for d in docs)
        compression[tok_name, corpus] = nbytes / ntokens
        ratios.append(f"{nbytes / ntokens:14.2f}")
    print(f"{label:18s}" + "".join(ratios))

# %% [markdown]
# What a tokenizer does outside its domain: the English tokenizer cuts words that are common in
# e-mail (and addresses, headers, numbers) into more, shorter pieces than the web tokenizer does.

# %%
web_doc = documents["web"][0][:300]
pieces = [tokenizers["english"].decode([i]) for i in tokenizers["english"].encode(web_doc)]
pieces_web = [tokenizers["web"].decode([i]) for i in tokenizers["web"].encode(web_doc)]
print(len(pieces), "tokens with the English tokenizer:", pieces[:40])
print(len(pieces_web), "tokens with the web tokenizer:    ", pieces_web[:40])

# %% [markdown]
# **(c) Throughput**, single process, fresh tokenizer (its cache fills during the pass), in wall
# time and per CPU-second (what one core does when it is not shared), then `tokenize_file` over the
# whole files with every CPU (the `cs336 tokenize` code path).
# **(d)** The ids go to `data/<corpus>/{train,valid}.npy` as uint16: both vocabularies are below
# 65,536, so every id fits in two bytes, half of int32's space and memory bandwidth.

# %%
for name in tokenizers:
    sample = (corpora[name] / "train.txt").read_bytes()[: 200_000 if SMOKE else 4_000_000].decode("utf-8", "replace")
    fresh_tok = Tokenizer(tokenizers[name].vocab, tokenizers[name].merges, tokenizers[name].special_tokens)
    _, wall, cpu = timed(lambda: fresh_tok.encode(sample))
    mb = len(sample.encode()) / 1e6
    print(f"{name:8s} encode, 1 process, fresh: {mb / wall:5.2f} MB/s wall, {mb / cpu:5.2f} MB/s per CPU-second"
          f" -> the Pile (825 GB) in {825e3 / (mb / cpu) / 3600:.0f} core-hours")

data_dir = ROOT / "data" if HAVE_SHARED else work / "data"
throughput = {}
for name, tok in tokenizers.items():
    for split in ("train", "valid"):
        src = corpora[name] / f"{split}.txt"
        t0 = time.perf_counter()
        out = tokenize_file(tok, src, data_dir / name / f"{split}.npy", progress=False)
        seconds = time.perf_counter() - t0
        ids = np.load(out, mmap_mode="r")
        assert ids.dtype == np.uint16 and int(ids.max()) < tok.vocab_size
        throughput[name, split] = src.stat().st_size / seconds
        print(f"{name:8s} {split:5s} {src.stat().st_size / 1e6:6.1f} MB -> {ids.shape[0]:>10,} tokens {ids.dtype}  "
              f"{src.stat().st_size / seconds / 1e6:5.2f} MB/s wall ({os.cpu_count()} CPUs, shared)")

# %% [markdown]
# ## What the next notebook needs
#
# Token ids in `.npy` files (uint16) and a `Tokenizer` to decode them: notebook 02 builds the
# Transformer that reads these ids.
