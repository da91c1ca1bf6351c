# %% [markdown]
# # 01 · Byte-pair encoding (BPE): training a byte-level BPE tokenizer
#
# A language model reads integers, not text. This notebook **trains** the vocabulary that turns
# text into integers; the next two, `01b_tokenizer` and `01c_tokenizer_fast`, build the
# `Tokenizer` that encodes and decodes with it.
#
# In order: Unicode and UTF-8 (why we work on bytes), pre-tokenization with GPT-2's regex, the BPE
# algorithm on the handout's small example, a fast trainer, where its time goes, and the handout's
# two training experiments. The files a trained vocabulary is saved in (GPT-2's `vocab.json` and
# `merges.txt`) open notebook 01b, where a tokenizer loads them. Exports:
# `cs336_basics/pretokenization.py` and `cs336_basics/bpe.py`.

# %%
import os
from pathlib import Path

SMOKE = os.environ.get("CS336_SMOKE") == "1"
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
FIGURES = ROOT / "figures"  # write figures here only when not SMOKE (use a temp dir in smoke mode)

# %% [markdown]
# ## Unicode and UTF-8
#
# Unicode maps characters to integer *code points*; `ord` and `chr` convert between the two.

# %%
print(ord("牛"), repr(chr(29275)))
assert ord("牛") == 29275 and chr(29275) == "牛"

# %% [markdown]
# **unicode1.** What is `chr(0)`? It is U+0000, the NULL control character. Its `repr` shows an
# escape, `'\x00'`, while printing it writes the raw (invisible) character; inside a string it is
# kept like any other character: the string gets one code point longer, and a terminal prints
# nothing visible for it.

# %%
null = chr(0)
s = "this is a test" + null + "string"
print(repr(null), "|", null, "|", len(null))
print(repr(s))
print(s)
assert repr(null) == "'\\x00'" and len(s) == len("this is a test") + 1 + len("string")
import unicodedata
print(unicodedata.name(null, "(no name)"), unicodedata.category(null))

# %% [markdown]
# **unicode2 (a).** Why train on UTF-8 bytes rather than UTF-16 or UTF-32? Compare the lengths:
# for English (and code, and most of the web) UTF-8 uses one byte per character, UTF-16 two and
# UTF-32 four, so the others waste most bytes on zeros that a byte-level model would have to predict,
# and every UTF-16/32 sequence depends on byte order (a BOM) too.

# %%
samples = ["hello world", "héllo wörld", "こんにちは", "emoji 🙂!", "print(x + 1)"]
rows = []
for text in samples:
    enc = {e: text.encode(e) for e in ("utf-8", "utf-16-le", "utf-32-le")}
    zeros = {e: b.count(0) for e, b in enc.items()}
    rows.append((text, len(text), *(len(b) for b in enc.values()), zeros["utf-16-le"], zeros["utf-32-le"]))
print(f"{'text':14} {'chars':>5} {'utf8':>5} {'utf16':>5} {'utf32':>5} {'zeros16':>7} {'zeros32':>7}")
for r in rows:
    print(f"{r[0]:14} {r[1]:5} {r[2]:5} {r[3]:5} {r[4]:5} {r[5]:7} {r[6]:7}")
assert all(r[2] <= r[3] for r in rows if r[0].isascii())

# %% [markdown]
# **unicode2 (b).** Decoding byte by byte is wrong because a character may take 2 to 4 bytes, and
# a lone lead or continuation byte is not valid UTF-8 on its own: `"é".encode()` is `b'\xc3\xa9'`,
# and decoding `b'\xc3'` alone raises `UnicodeDecodeError`.

# %%
def decode_utf8_bytes_to_str_wrong(bytestring: bytes):
    return "".join([bytes([b]).decode("utf-8") for b in bytestring])

assert decode_utf8_bytes_to_str_wrong("hello".encode("utf-8")) == "hello"
try:
    decode_utf8_bytes_to_str_wrong("héllo".encode("utf-8"))
except UnicodeDecodeError as err:
    print("héllo ->", "héllo".encode("utf-8"), "->", err)

# %% [markdown]
# **unicode2 (c).** A two-byte sequence that decodes to nothing: `b'\xc3\x28'`. `0xC3` announces a
# two-byte character, so the next byte must be a continuation byte `10xxxxxx`, but `0x28` is `(`.
# (`b'\xff\xff'` works too: `0xFF` never occurs in UTF-8.)

# %%
for bad in (b"\xc3\x28", b"\xff\xff", b"\x80\x80"):
    try:
        bad.decode("utf-8")
        raise AssertionError(f"{bad!r} decoded")
    except UnicodeDecodeError as err:
        print(bad, "->", err.reason)
print(b"\xc3\x28".decode("utf-8", errors="replace"))

# %% [markdown]
# ## Pre-tokenization
#
# Before counting byte pairs we cut the text into *pre-tokens* with GPT-2's regex; BPE never merges
# across their edges. The pattern keeps a leading space with the word that follows it, so
# `" cat"` and `"cat"` are different pre-tokens, and splits off contractions, numbers and
# punctuation runs.

# %%
#| default_exp pretokenization

# %%
#| export
"""Pre-tokenization: cut text into the pieces that BPE never merges across.

Three jobs, all on the way from a (possibly multi-GB) text file to pre-token counts:

* ``GPT2_PAT``: GPT-2's pre-tokenization regex (for the ``regex`` module, which knows ``\\p{L}``).
* ``find_chunk_boundaries``: byte offsets that cut a file into pieces at special-token starts, so
  pieces can be pre-tokenized independently (in parallel) with exactly the result of the whole.
* ``count_pretokens`` / ``count_pretokens_in_file``: pre-token counts, the latter streaming the
  file chunk by chunk through a process pool.

Undecodable UTF-8 is kept byte-exact: text is decoded with ``errors="surrogateescape"``, so a
stray byte 0xFF becomes the lone surrogate ``"\\udcff"`` and ``piece.encode("utf-8",
"surrogateescape")`` gives the original bytes back.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import BinaryIO

import regex

GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_RE = regex.compile(GPT2_PAT)

# %%
import regex

regex.findall(GPT2_PAT, "some text that i'll pre-tokenize")

# %%
assert regex.findall(GPT2_PAT, "some text that i'll pre-tokenize") == [
    "some", " text", " that", " i", "'ll", " pre", "-", "tokenize"]
# whitespace runs: all but the last whitespace character stay together; a last space joins the next word
assert regex.findall(GPT2_PAT, "a   b\n\nc 42!") == ["a", "  ", " b", "\n", "\n", "c", " 42", "!"]

# %% [markdown]
# ### Special tokens split the text
#
# A special token such as `<|endoftext|>` marks a document boundary. Training must never count a
# pair across it nor learn merges inside it, so we split the text on special tokens first and
# pre-tokenize each piece on its own. Longer special tokens are tried first, so that when one
# special token is a prefix of another the longer one wins.

# %%
#| export
def special_token_regex(special_tokens: Sequence[str], capture: bool = False) -> regex.Pattern | None:
    """A regex matching any of ``special_tokens`` (longest first), or None when there are none.

    >>> special_token_regex(["<|a|>", "<|a|><|a|>"]).pattern
    '<\\\\|a\\\\|><\\\\|a\\\\|>|<\\\\|a\\\\|>'
    """
    tokens = sorted(set(special_tokens), key=lambda s: (-len(s), s))
    if not tokens:
        return None
    body = "|".join(regex.escape(t) for t in tokens)
    return regex.compile(f"({body})" if capture else body)


def split_on_special_tokens(text: str, special_tokens: Sequence[str]) -> list[str]:
    """The pieces of ``text`` between special tokens (the special tokens themselves dropped).

    >>> split_on_special_tokens("a<|endoftext|>b", ["<|endoftext|>"])
    ['a', 'b']
    """
    pattern = special_token_regex(special_tokens)
    return [text] if pattern is None else pattern.split(text)


def count_pretokens(text: str, special_tokens: Sequence[str] = ()) -> Counter[str]:
    """How often each GPT-2 pre-token occurs in ``text``, never across a special token.

    >>> count_pretokens("low low<|endoftext|>low", ["<|endoftext|>"])
    Counter({'low': 2, ' low': 1})
    """
    counts: Counter[str] = Counter()
    for piece in split_on_special_tokens(text, special_tokens):
        # findall + Counter run in C; finditer would cost a Python step per match
        counts.update(GPT2_RE.findall(piece))
    return counts

# %%
assert split_on_special_tokens("x<|endoftext|>y<|endoftext|>", ["<|endoftext|>"]) == ["x", "y", ""]
count_pretokens("low low low low low lower lower widest widest widest<|endoftext|>newest newest",
                ["<|endoftext|>"])

# %% [markdown]
# ### Chunking a big file
#
# To pre-tokenize a big file in parallel without reading it whole, we cut it into byte ranges whose
# edges sit at the start of a special token: pre-tokens never cross a special token, so each range
# can be counted independently and the counts added up. `find_chunk_boundaries` (the handout's
# helper, written here from scratch) guesses evenly spaced offsets and moves each one forward to the
# next occurrence of the special token.
#
# A file may have no special token at all (or huge stretches without one). Then we cut at a space,
# tab or newline that follows a printable ASCII character: GPT-2's pattern never puts a non-space
# character and a following whitespace in one pre-token, and a pre-token that ends in a non-space
# character does not depend on what follows, so that cut is exact as well.

# %%
#| export
def find_chunk_boundaries(file: BinaryIO, desired_num_chunks: int, split_special_token: bytes) -> list[int]:
    """Byte offsets ``[0, ..., file_size]`` that cut ``file`` at occurrences of ``split_special_token``.

    Offsets start evenly spaced and each inner one moves forward to the next start of the special
    token (or to the end of the file); duplicates collapse, so fewer chunks may come back.

    >>> import io
    >>> find_chunk_boundaries(io.BytesIO(b"aaa|bbb|ccc"), 3, b"|")
    [0, 3, 7, 11]
    """
    if not isinstance(split_special_token, bytes) or not split_special_token:
        raise ValueError("split_special_token must be a non-empty bytes string, e.g. b'<|endoftext|>'")
    return _boundaries(file, max(1, desired_num_chunks), [split_special_token], whitespace_fallback=False)


# a space/tab/newline right after a printable ASCII character: a pre-token boundary for GPT2_PAT
_SAFE_CUT = regex.compile(rb"[\x21-\x7e][ \t\r\n]")


def _next_safe_cut(file: BinaryIO, start: int, file_size: int, specials: list[bytes], whitespace_fallback: bool) -> int:
    """The first offset >= start where a special token begins (or, if allowed, a safe whitespace cut)."""
    window = 1 << 16
    overlap = max((len(s) for s in specials), default=1)
    pos = start
    while pos < file_size:
        file.seek(pos)
        buf = file.read(window + overlap)
        found = [i for i in (buf.find(s) for s in specials) if i != -1]
        if found:
            return pos + min(found)
        if whitespace_fallback:
            match = _SAFE_CUT.search(buf)
            if match:
                return pos + match.start() + 1
        if len(buf) <= overlap:
            break
        pos += window
    return file_size


def _boundaries(file: BinaryIO, num_chunks: int, specials: list[bytes], whitespace_fallback: bool) -> list[int]:
    file.seek(0, os.SEEK_END)
    file_size = file.tell()
    step = file_size // num_chunks
    cuts = [0]
    for k in range(1, num_chunks):
        guess = max(k * step, cuts[-1])
        cuts.append(_next_safe_cut(file, guess, file_size, specials, whitespace_fallback))
    cuts.append(file_size)
    return sorted(set(cuts))


def chunk_spans(path: str | os.PathLike, special_tokens: Sequence[str], chunk_bytes: int = 1 << 22) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges of about ``chunk_bytes`` each that can be pre-tokenized independently.

    Ranges start where a special token starts; in a stretch without one, at a space, tab or newline
    that follows a printable ASCII character (exact for GPT-2's pattern). That whitespace cut is
    only used when no special token contains whitespace (it could land inside one).
    """
    specials = [s.encode("utf-8") for s in special_tokens if s]
    whitespace_ok = not any(regex.search(rb"[ \t\r\n]", s) for s in specials)
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        cuts = _boundaries(f, max(1, -(-size // chunk_bytes)), specials, whitespace_fallback=whitespace_ok)
    return list(zip(cuts[:-1], cuts[1:]))


def read_span(path: str | os.PathLike, start: int, end: int) -> str:
    """The text of bytes ``[start, end)`` of ``path``; undecodable bytes become lone surrogates."""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start).decode("utf-8", errors="surrogateescape")

# %%
import io

data = b"one<|endoftext|>two two<|endoftext|>three three three<|endoftext|>four"
cuts = find_chunk_boundaries(io.BytesIO(data), 4, b"<|endoftext|>")
print(cuts, [data[a:b] for a, b in zip(cuts[:-1], cuts[1:])])
assert all(data[c:].startswith(b"<|endoftext|>") for c in cuts[1:-1])

# %% [markdown]
# ### Counting a file in parallel
#
# Each worker reads its own byte range, so the main process never holds the whole file; workers
# send back their `Counter`s, which we add up. Chunks of a few MB keep memory flat whatever the
# file size, and `imap_unordered` lets a progress bar tick as chunks finish.

# %%
#| export
def _count_span(args: tuple[str, int, int, tuple[str, ...]]) -> Counter[str]:
    path, start, end, special_tokens = args
    return count_pretokens(read_span(path, start, end), special_tokens)


def count_pretokens_in_file(
    path: str | os.PathLike,
    special_tokens: Sequence[str] = (),
    *,
    num_workers: int | None = None,
    progress: bool | None = None,
    chunk_bytes: int = 1 << 22,
) -> Counter[str]:
    """Pre-token counts of a whole file, streamed in special-token-aligned chunks over a process pool.

    ``num_workers=None`` uses every available CPU (at most the number of chunks); ``1`` runs
    in-process. ``progress=None`` shows a tqdm bar on stderr for files over 16 MB.
    Keys are ``str`` (undecodable bytes as lone surrogates: encode with ``"surrogateescape"``).
    """
    path = os.fspath(path)
    specials = tuple(special_tokens)
    spans = chunk_spans(path, specials, chunk_bytes)
    tasks = [(path, a, b, specials) for a, b in spans]
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    num_workers = max(1, min(num_workers, len(tasks)))
    size = spans[-1][1] if spans else 0
    if progress is None:
        progress = size > (16 << 20)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, desc="pre-tokenize", leave=False)

    total: Counter[str] = Counter()

    def add(counts: Counter[str], nbytes: int) -> None:
        total.update(counts)
        if bar is not None:
            bar.update(nbytes)

    if num_workers == 1:
        for task in tasks:
            add(_count_span(task), task[2] - task[1])
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(num_workers) as pool:
            for task, counts in zip(tasks, pool.imap(_count_span, tasks)):
                add(counts, task[2] - task[1])
    if bar is not None:
        bar.close()
    return total

# %%
import tempfile

tmp = Path(tempfile.mkdtemp())
sample = ("the cat sat on the mat.<|endoftext|>\n" * 50 + "a dog\nran far\n" * 50).encode()
(tmp / "sample.txt").write_bytes(sample)
serial = count_pretokens(sample.decode(), ["<|endoftext|>"])
for workers in (1, 2):
    parallel = count_pretokens_in_file(tmp / "sample.txt", ["<|endoftext|>"], num_workers=workers, chunk_bytes=100)
    assert parallel == serial, workers
print(len(chunk_spans(tmp / "sample.txt", ["<|endoftext|>"], chunk_bytes=100)), "chunks, same counts as one pass")
serial.most_common(5)

# %% [markdown]
# ## The BPE algorithm, slowly
#
# Byte-pair encoding starts from the 256 single bytes and repeatedly merges the most frequent
# adjacent pair into a new token. Pairs are counted inside pre-tokens only, each pre-token weighted
# by how often it occurs. Ties go to the lexicographically greater pair (compared as bytes).
#
# Here is the handout's example (its pre-tokenizer simply splits on whitespace), with a trainer that
# recounts every pair at every step: obviously correct, and slow.

# %%
from collections import Counter


def naive_bpe(word_counts: dict[tuple[bytes, ...], int], num_merges: int) -> list[tuple[bytes, bytes]]:
    """Recount all pairs, merge the best one everywhere, repeat. Words are tuples of byte strings."""
    words = dict(word_counts)
    merges = []
    for _ in range(num_merges):
        pairs: Counter = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))  # ties: the greater pair of bytes
        merges.append(best)
        merged = {}
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] = count
        words = merged
    return merges


corpus = """low low low low low
lower lower widest widest widest
newest newest newest newest newest newest"""
example_counts = Counter(tuple(bytes([b]) for b in w.encode()) for w in corpus.split())
print({b"".join(w): c for w, c in example_counts.items()})
example_merges = naive_bpe(example_counts, 12)
print([f"{a.decode()} {b.decode()}" for a, b in example_merges])

# %%
# NBVAL_CHECK_OUTPUT
handout = ['s t', 'e st', 'o w', 'l ow', 'w est', 'n e', 'ne west', 'w i', 'wi d', 'wid est', 'low e', 'lowe r']
assert [f"{a.decode()} {b.decode()}" for a, b in example_merges] == handout
vocab6 = [a + b for a, b in example_merges[:6]]
print("6 merges add:", [t.decode() for t in vocab6])

# %% [markdown]
# With those six merges, `newest` becomes `ne west`: apply the merges in the order they were
# learned.

# %%
word = [bytes([b]) for b in b"newest"]
for a, b in example_merges[:6]:
    i, out = 0, []
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == (a, b):
            out.append(a + b)
            i += 2
        else:
            out.append(word[i])
            i += 1
    word = out
assert word == [b"ne", b"west"], word
word

# %% [markdown]
# ## A fast trainer
#
# The naive trainer touches every pair of every word at every merge. But a merge of `(A, B)` only
# changes the words that contain `A B`, and in them only the pairs next to each occurrence:
# `x A B y` loses `(x, A)`, `(A, B)`, `(B, y)` and gains `(x, AB)`, `(AB, y)`. So we keep
#
# * `pair_counts`: pair -> weighted count, updated incrementally;
# * `pair_words`: pair -> set of indices of words that contain (or once contained) it, so a merge
#   visits only those words (a word that no longer has the pair is skipped);
# * a max-heap of `(count, pair)` to find the best pair in O(log n). Counts of existing pairs only
#   ever go *down* (every pair that gains contains the brand-new token), so entries are invalidated
#   lazily: a popped entry whose count is out of date is pushed back with its current count.
#
# Two Python-specific tricks make it fast:
#
# * **A word is a `str` whose characters are token ids** (`chr(id)`; a byte string decoded as
#   latin-1 is exactly that). A pair is then a 2-character string: finding it is `word.find(pair)`
#   and merging it is `word.replace(pair, chr(new))` (left to right, non-overlapping: exactly BPE's
#   rule, so `"aaa"` becomes `"Xa"`), both running in C, and the neighbours of an occurrence are
#   slices (`word[j-1:j+1]`).
# * **No garbage collector during the merges.** Millions of heap tuples and sets stay alive, and
#   Python's cycle collector would walk all of them again and again (they never form cycles).
#
# Python's `heapq` is a min-heap. The key must put the largest count first and, among equal counts,
# the *greatest* pair of bytes first. We negate the count, and for the pair we build a string whose
# order is the reverse of the bytes order: each byte `x` becomes `chr(255 - x)` and each token ends
# with `chr(256)`, larger than any of those, so a token sorts *after* every longer token it is a
# prefix of. Comparing such strings runs in C.

# %%
#| default_exp bpe

# %%
#| export
"""Byte-level BPE training: ``train_bpe(path, vocab_size, special_tokens) -> (vocab, merges)``.

Vocabulary ids: the 256 single bytes first (id = byte value), then the special tokens in the order
given, then one token per merge in the order the merges were learned. Pairs are counted inside
GPT-2 pre-tokens only, never across a special token; ties between equally frequent pairs go to
the lexicographically greater pair of byte strings.

    >>> vocab, merges = train_bpe("corpus.txt", 1000, ["<|endoftext|>"])   # doctest: +SKIP
    >>> vocab[256], merges[0]                                             # doctest: +SKIP
    (b'<|endoftext|>', (b' ', b't'))
"""

from __future__ import annotations

import gc
import heapq
import os
import sys
from collections.abc import Mapping, Sequence

from cs336_basics.pretokenization import count_pretokens_in_file

# %%
#| export
def _inverted(token: bytes) -> str:
    """A string whose order is the reverse of bytes order: a < b  <=>  _inverted(a) > _inverted(b).

    Each byte x becomes chr(255 - x); a final chr(256) (larger than all of them) makes a token sort
    after every longer token that it is a prefix of. A pair's heap key is the concatenation.
    """
    return "".join(chr(255 - x) for x in token) + "\u0100"


def learn_merges(
    word_counts: Mapping[bytes, int], num_merges: int, *, progress: bool = False
) -> list[tuple[bytes, bytes]]:
    """Learn up to ``num_merges`` BPE merges from pre-token counts (fewer if pairs run out).

    >>> learn_merges({b"low": 5, b"lower": 2, b"widest": 3, b"newest": 6}, 3)
    [(b's', b't'), (b'e', b'st'), (b'o', b'w')]
    """
    if 256 + num_merges > sys.maxunicode + 1:
        raise ValueError(f"num_merges={num_merges} is too large: token ids must fit in a character")
    gc_was_enabled = gc.isenabled()
    gc.disable()  # many long-lived tuples and sets, no cycles: the collector would only rescan them
    try:
        return _learn_merges(word_counts, num_merges, progress)
    finally:
        if gc_was_enabled:
            gc.enable()


def _learn_merges(word_counts, num_merges, progress):
    token_bytes = [bytes([i]) for i in range(256)]  # token id -> bytes (ids local to this function)
    inverted = [_inverted(t) for t in token_bytes]
    words: list[str] = []  # each distinct pre-token; character i of a word is token id ord(word[i])
    counts: list[int] = []
    for word, count in word_counts.items():
        if len(word) > 1 and count > 0:  # a single byte has no pair to merge
            words.append(word.decode("latin-1"))  # byte b -> chr(b), i.e. token id b
            counts.append(count)

    pair_counts: dict[str, int] = {}  # pair (2-character string) -> weighted count
    pair_words: dict[str, set[int]] = {}  # pair -> indices of the words that have (or had) it
    for wi, word in enumerate(words):
        count = counts[wi]
        for pair in map(str.__add__, word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + count
            where = pair_words.get(pair)
            if where is None:
                pair_words[pair] = {wi}
            else:
                where.add(wi)
    heap = [(-c, inverted[ord(p[0])] + inverted[ord(p[1])], p) for p, c in pair_counts.items()]
    heapq.heapify(heap)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_merges, unit="merge", desc="merges", leave=False)
    merges: list[tuple[bytes, bytes]] = []
    while len(merges) < num_merges and heap:
        neg_count, key, pair = heapq.heappop(heap)
        current = pair_counts.get(pair, 0)
        if current != -neg_count:  # out of date: counts only fall, so re-queue at the true count
            if current > 0:
                heapq.heappush(heap, (-current, key, pair))
            continue
        a, b = ord(pair[0]), ord(pair[1])
        new = len(token_bytes)
        token_bytes.append(token_bytes[a] + token_bytes[b])
        inverted.append(inverted[a][:-1] + inverted[b])
        merges.append((token_bytes[a], token_bytes[b]))
        created = _apply_merge(pair, chr(new), words, counts, pair_counts, pair_words)
        del pair_counts[pair]
        for p in created:
            heapq.heappush(heap, (-pair_counts[p], inverted[ord(p[0])] + inverted[ord(p[1])], p))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return merges


def _apply_merge(pair: str, new: str, words, counts, pair_counts, pair_words) -> set[str]:
    """Replace ``pair`` by the token ``new`` in every word that has it; update the neighbouring pairs.

    ``x A B y`` loses ``xA`` and ``By`` and gains ``xN`` and ``Ny``; in ``A B A B`` the middle ``BA``
    becomes ``NN``. Returns the pairs that gained (they all contain ``new``).
    """
    created: set[str] = set()
    swapped, double = pair[1] + pair[0], new + new
    get = pair_counts.get

    def gain(q: str, wi: int, count: int) -> None:
        pair_counts[q] = get(q, 0) + count
        created.add(q)
        where = pair_words.get(q)
        if where is None:
            pair_words[q] = {wi}
        else:
            where.add(wi)

    for wi in pair_words.pop(pair):
        word = words[wi]
        j = word.find(pair)
        if j < 0:
            continue  # stale index entry: an earlier merge used the pair up in this word
        count = counts[wi]
        last = len(word) - 1
        prev_end = -1
        while j >= 0:
            if j > 0:
                if j == prev_end:  # right after the previous occurrence: "A B|A B"
                    pair_counts[swapped] -= count
                    gain(double, wi, count)
                else:
                    pair_counts[word[j - 1:j + 1]] -= count
                    gain(word[j - 1] + new, wi, count)
            end = j + 2
            following = word.find(pair, end)
            if end <= last and following != end:  # a right neighbour that is not merged itself
                pair_counts[word[j + 1:j + 3]] -= count
                gain(new + word[end], wi, count)
            prev_end = end
            j = following
        words[wi] = word.replace(pair, new)
    return created

# %% [markdown]
# The heap key orders pairs backwards: the first in key order is the greatest pair, the one the
# handout's tie-break picks (its example: `("BA", "A")` beats `("B", "ZZ")`).

# %%
pairs = [(b"A", b"B"), (b"A", b"C"), (b"B", b"ZZ"), (b"BA", b"A"), (b"B", b"Z")]
by_key = sorted(pairs, key=lambda p: _inverted(p[0]) + _inverted(p[1]))
assert by_key == sorted(pairs, reverse=True)
by_key

# %% [markdown]
# The fast trainer must learn exactly what the slow one learns: on the handout's example, and on a
# random corpus full of ties and repeated letters (`aaaa` is where overlapping pairs bite).

# %%
fast = learn_merges({b"".join(w): c for w, c in example_counts.items()}, 12)
assert fast == example_merges

import random

rng = random.Random(0)
random_counts = Counter(bytes(rng.choice(b"aabbc ") for _ in range(rng.randint(1, 9))) for _ in range(300))
want = naive_bpe({tuple(bytes([x]) for x in w): c for w, c in random_counts.items()}, 60)
got = learn_merges(random_counts, 60)
assert got == want
print(len(got), "merges agree; first ten:", got[:10])

# %% [markdown]
# ### `train_bpe`: file in, vocabulary and merges out
#
# Put together: stream the file through the parallel pre-token counter, turn each pre-token into
# its UTF-8 bytes once (undecodable bytes come back exactly, via `surrogateescape`), learn
# `vocab_size - 256 - len(special_tokens)` merges, and number the vocabulary.

# %%
#| export
def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    *,
    num_workers: int | None = None,
    progress: bool | None = None,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on a text file.

    Args:
        input_path: a UTF-8 text file (bytes that are not valid UTF-8 are kept as they are).
        vocab_size: the final vocabulary size, bytes + special tokens + merges.
        special_tokens: strings that split the text and get their own ids (256, 257, ...).
        num_workers: pre-tokenization processes (None: every CPU; 1: no pool).
        progress: tqdm bars on stderr (None: only for inputs over 16 MB).

    Returns:
        ``vocab`` (id -> bytes) and ``merges`` (pairs of bytes, in the order they were learned).
    """
    special_tokens = list(special_tokens)
    for token in special_tokens:
        if not isinstance(token, str):
            raise TypeError(f"special tokens must be str, got {token!r}; pass e.g. ['<|endoftext|>']")
        if not token:
            raise ValueError("a special token is the empty string; remove it or give it some text, e.g. '<|endoftext|>'")
    special_tokens = list(dict.fromkeys(special_tokens))  # drop repeats, keep order
    minimum = 256 + len(special_tokens)
    if not isinstance(vocab_size, int) or vocab_size < minimum:
        raise ValueError(
            f"vocab_size={vocab_size!r} is too small: it must be at least 256 bytes + "
            f"{len(special_tokens)} special token(s) = {minimum}; raise vocab_size (--vocab-size)"
        )
    path = os.fspath(input_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"training file {path!r} does not exist (or is not a file); check the path")

    if progress is None:
        progress = os.path.getsize(path) > (16 << 20)
    counts = count_pretokens_in_file(path, special_tokens, num_workers=num_workers, progress=progress)
    word_counts = {word.encode("utf-8", "surrogateescape"): n for word, n in counts.items()}
    del counts
    merges = learn_merges(word_counts, vocab_size - minimum, progress=progress)

    vocab = {i: bytes([i]) for i in range(256)}
    for token in special_tokens:
        vocab[len(vocab)] = token.encode("utf-8")
    for a, b in merges:
        vocab[len(vocab)] = a + b
    return vocab, merges

# %%
import tempfile

work = Path(tempfile.mkdtemp())
(work / "tiny.txt").write_text(corpus.replace("\n", "<|endoftext|>"), encoding="utf-8")
vocab, merges = train_bpe(work / "tiny.txt", 256 + 1 + 8, ["<|endoftext|>"])
print(vocab[256], [vocab[i] for i in range(257, len(vocab))])
print(merges)

# %% [markdown]
# ## Where the time goes
#
# Training has two stages: pre-tokenization (regex over every byte of the file, in a process pool)
# and merging (touching only the words that contain the merged pair). Timing them separately
# answers the handout's profiling question. Outside smoke mode this runs on the 21 MB English
# stand-in corpus; in smoke mode on a small synthetic text written here.

# %%
import random
import sys
import time

DATA = ROOT.parent / "shared" / "data"
FULL = not SMOKE and (DATA / "english" / "train.txt").exists()

smoke_dir = Path(tempfile.mkdtemp())
rng = random.Random(0)
lexicon = ["once", "upon", "a", "time", "there", "was", "little", "girl", "named", "Lily", "she", "liked",
           "to", "play", "in", "the", "park", "with", "her", "dog", "!", ",", ".", "\n", "happy", "sun"]
syllables = ["ba", "ko", "ri", "tse", "lun", "dor", "mi", "aq", "vel", "tho"]
lexicon += ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(300)]
stories = (" ".join(rng.choice(lexicon) for _ in range(rng.randint(20, 80))) for _ in range(1500))
(smoke_dir / "stories.txt").write_text("<|endoftext|>".join(stories), encoding="utf-8")
mails = (f"From: {rng.choice(lexicon)}{rng.randint(1, 999)}@example.com\nSubject: {rng.choice(lexicon)} "
         f"${rng.randint(1, 10**6):,} <a href=\"http://{rng.choice(lexicon)}.net/?id={rng.randint(1, 9999)}\">"
         + " ".join(rng.choice(lexicon) for _ in range(30)) for _ in range(800))
(smoke_dir / "mail.txt").write_text("<|endoftext|>".join(mails), encoding="utf-8")

english = DATA / "english" / "train.txt" if FULL else smoke_dir / "stories.txt"
web = DATA / "web" / "train.txt" if FULL else smoke_dir / "mail.txt"
print(english, f"{english.stat().st_size / 1e6:.1f} MB")

# %%
from cs336_basics.pretokenization import count_pretokens_in_file

t0 = time.perf_counter()
counts = count_pretokens_in_file(english, ["<|endoftext|>"], progress=False)
t1 = time.perf_counter()
word_counts = {w.encode("utf-8", "surrogateescape"): n for w, n in counts.items()}
t2 = time.perf_counter()
stage_merges = learn_merges(word_counts, (10_000 if FULL else 1000) - 257)
t3 = time.perf_counter()
print(f"pre-tokens: {sum(counts.values()):,} ({len(counts):,} distinct)")
print(f"{'pre-tokenize (2 processes)':28} {t1 - t0:6.2f} s")
print(f"{'to bytes':28} {t2 - t1:6.2f} s")
print(f"{'merges':28} {t3 - t2:6.2f} s   ({len(stage_merges)} merges)")

# %% [markdown]
# ## The experiments: `train_bpe_tinystories` and `train_bpe_expts_owt`
#
# TinyStories and OpenWebText cannot be downloaded on the machine that ran this notebook, so the
# runs use the stand-ins: `../shared/data/english` (21 MB of English prose) at vocab 10,000 and
# `../shared/data/web` (20 MB of e-mail) at vocab 32,000. Each run is the `cs336 train-bpe` command
# in a subprocess, which also reports its time, peak memory and longest token, and saves the
# tokenizer under `runs/` (git-ignored).

# %%
import subprocess


def train_bpe_cli(corpus: Path, vocab_size: int, out: Path) -> str:
    cmd = [sys.executable, "-m", "cs336_basics.cli", "train-bpe", "--input", str(corpus),
           "--vocab-size", str(vocab_size), "--special-token", "<|endoftext|>", "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


runs = ROOT / "runs" / "bpe" if FULL else smoke_dir / "runs"
report_en = train_bpe_cli(english, 10_000 if FULL else 700, runs / "english-10k")
print(report_en)
report_web = train_bpe_cli(web, 32_000 if FULL else 1000, runs / "web-32k")
print(report_web)

# %% [markdown]
# Load both back with the readers of GPT-2's file format (`cs336_basics.vocab_files`, written at
# the start of notebook 01b), and check that each folder is one training's output. Then look at the
# longest tokens.

# %%
import json

from cs336_basics.vocab_files import read_merges_txt, read_vocab_json, unit_problem


def load_vocab(folder: Path) -> tuple[dict[int, bytes], list[str]]:
    """The vocabulary and special tokens of a folder written by `cs336 train-bpe`."""
    vocab = read_vocab_json(folder / "vocab.json")
    specials = json.loads((folder / "special_tokens.json").read_text(encoding="utf-8"))
    assert unit_problem(vocab, read_merges_txt(folder / "merges.txt"), specials) is None
    return vocab, specials


vocab_en, specials_en = load_vocab(runs / "english-10k")
vocab_web, specials_web = load_vocab(runs / "web-32k")


def longest(vocab: dict[int, bytes], k: int = 6) -> list[tuple[int, bytes]]:
    return sorted(((len(t), t) for t in vocab.values()), reverse=True)[:k]


for name, vocab in (("english @ 10k", vocab_en), ("web @ 32k", vocab_web)):
    print(name, max(vocab) + 1, "tokens; longest:")
    for n, t in longest(vocab):
        shown = repr(t.decode("utf-8", errors="replace"))
        print(f"   {n:3} bytes  {shown if len(shown) < 70 else shown[:66] + '...'}")

# %% [markdown]
# How do the two vocabularies differ? Count what kind of token each holds: whole words with their
# leading space, pure whitespace, digits, and tokens that are not valid UTF-8 on their own (pieces
# of multi-byte characters).

# %%
def kinds(vocab: dict[int, bytes], specials: list[str]) -> dict[str, float]:
    learned = [t for i, t in vocab.items() if i >= 256 + len(specials)]
    def share(pred):
        return sum(map(pred, learned)) / len(learned)
    def utf8(t):
        try:
            t.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False
    return {
        " word": share(lambda t: t[:1] == b" " and t[1:].isalpha()),
        "whitespace": share(lambda t: t.isspace()),
        "has digit": share(lambda t: any(48 <= c <= 57 for c in t)),
        "not UTF-8": share(lambda t: not utf8(t)),
        "mean bytes": sum(map(len, learned)) / len(learned),
    }


k_en, k_web = kinds(vocab_en, specials_en), kinds(vocab_web, specials_web)
print(f"{'':12} {'english':>8} {'web':>8}")
for key in k_en:
    print(f"{key:12} {k_en[key]:8.3f} {k_web[key]:8.3f}")
shared = set(vocab_en.values()) & set(vocab_web.values())
print(f"tokens in both vocabularies: {len(shared):,} of {max(vocab_en) + 1:,}")

# %%
import matplotlib.pyplot as plt

import numpy as np

# Log-spaced bins and a log count axis: the bulk sits at 3-10 bytes, but the few very long tokens
# discussed above (whitespace and digit runs of 150-450 bytes) must stay visible too.
fig, ax = plt.subplots(figsize=(6, 3.2))
longest = max(len(t) for vocab in (vocab_en, vocab_web) for t in vocab.values())
bins = np.unique(np.geomspace(1, longest + 1, 40).astype(int))
for name, vocab in (("english @ 10k", vocab_en), ("web @ 32k", vocab_web)):
    lengths = [len(t) for i, t in vocab.items() if i >= 257]
    ax.hist(lengths, bins=bins, weights=[1 / len(lengths)] * len(lengths), histtype="step", linewidth=1.8,
            label=name, log=True)
ax.set_xscale("log")
ax.set_xlabel("token length (bytes, log scale)")
ax.set_ylabel("share of learned tokens")
ax.set_title("BPE token lengths (stand-in corpora)" if FULL else "BPE token lengths (smoke data)")
ax.legend()
fig.tight_layout()
fig_dir = FIGURES if FULL else smoke_dir
fig_dir.mkdir(exist_ok=True)
fig.savefig(fig_dir / "bpe_token_lengths.png", dpi=120)

# %% [markdown]
# ## What the next notebook needs
#
# Training gave us, for each corpus, a folder `vocab.json` + `merges.txt` + `special_tokens.json`.
# Notebook `01b_tokenizer` starts by reading such a folder (GPT-2's file format, and the check that
# the three files are one training's output), then uses the vocabulary and its merges to **encode**
# text into ids and **decode** ids into text, first plainly, then with the pieces that make it fast;
# notebook `01c_tokenizer_fast` puts them together into the `Tokenizer`, writes token files and runs
# the tokenizer experiments on these folders.
