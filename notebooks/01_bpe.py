# %% [markdown]
# # 01 · Byte-pair encoding (BPE), and training a byte-level BPE tokenizer
#
# A language model reads integers, not text. This notebook builds the whole way from text to
# integers: part 1 **trains** a byte-level BPE vocabulary; part 2 builds the `Tokenizer` that
# encodes and decodes with it.
#
# In order: Unicode and UTF-8 (why we work on bytes), pre-tokenization with GPT-2's regex,
# the BPE algorithm on the handout's small example, a fast trainer, and the handout's two
# training experiments; then the Tokenizer, GPT-2 interop with tiktoken, token files, and the
# handout's tokenizer experiments. Exports: `cs336_basics/pretokenization.py`, `cs336_basics/bpe.py`
# and `cs336_basics/tokenizer.py`.

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
from collections.abc import Iterator, Sequence
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
# Load both back (the format is the `Tokenizer`'s: `vocab.json` + `merges.txt` with GPT-2's
# printable byte encoding) and look at the longest tokens.

# %%
from cs336_basics.tokenizer import Tokenizer

tok_en = Tokenizer.load(runs / "english-10k")
tok_web = Tokenizer.load(runs / "web-32k")


def longest(tok: Tokenizer, k: int = 6) -> list[tuple[int, bytes]]:
    return sorted(((len(t), t) for t in tok.vocab.values()), reverse=True)[:k]


for name, tok in (("english @ 10k", tok_en), ("web @ 32k", tok_web)):
    print(name, tok.vocab_size, "tokens; longest:")
    for n, t in longest(tok):
        shown = repr(t.decode("utf-8", errors="replace"))
        print(f"   {n:3} bytes  {shown if len(shown) < 70 else shown[:66] + '...'}")

# %% [markdown]
# How do the two vocabularies differ? Count what kind of token each holds: whole words with their
# leading space, pure whitespace, digits, and tokens that are not valid UTF-8 on their own (pieces
# of multi-byte characters).

# %%
def kinds(tok: Tokenizer) -> dict[str, float]:
    learned = [t for i, t in tok.vocab.items() if i >= 256 + len(tok.special_tokens)]
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


k_en, k_web = kinds(tok_en), kinds(tok_web)
print(f"{'':12} {'english':>8} {'web':>8}")
for key in k_en:
    print(f"{key:12} {k_en[key]:8.3f} {k_web[key]:8.3f}")
shared = set(tok_en.vocab.values()) & set(tok_web.vocab.values())
print(f"tokens in both vocabularies: {len(shared):,} of {tok_en.vocab_size:,}")

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3.2))
for name, tok in (("english @ 10k", tok_en), ("web @ 32k", tok_web)):
    lengths = [len(t) for i, t in tok.vocab.items() if i >= 257]
    ax.hist(lengths, bins=range(1, 26), alpha=0.6, label=name, density=True)
ax.set_xlabel("token length (bytes)")
ax.set_ylabel("share of learned tokens")
ax.set_title("BPE token lengths (stand-in corpora)" if FULL else "BPE token lengths (smoke data)")
ax.legend()
fig.tight_layout()
fig_dir = FIGURES if FULL else smoke_dir
fig_dir.mkdir(exist_ok=True)
fig.savefig(fig_dir / "bpe_token_lengths.png", dpi=120)

# %% [markdown]
# # Part 2 · The Tokenizer: encoding and decoding with a trained BPE vocabulary
#
# Part 1 trained a vocabulary and a list of merges. Here we use them: **encode** text into
# token ids by replaying the merges inside each pre-token, **decode** ids back into text, stream
# files of any size, and check ourselves against GPT-2's tokenizer as implemented by `tiktoken`.
# Then the handout's tokenizer experiments (section 2.7). Exports `cs336_basics/tokenizer.py`.

# %%
SHARED = ROOT.parent / "shared"
HAVE_SHARED = (SHARED / "data").exists() and not SMOKE

# %%
#| default_exp tokenizer

# %% [markdown]
# ## Files: GPT-2's vocab.json and merges.txt
#
# Tokens are bytes, and JSON holds text. GPT-2's trick maps each of the 256 byte values to a
# *printable* character (printable Latin-1 bytes map to themselves, the 68 others, space and
# control bytes, to `chr(256 + k)`), so a token is written as a short readable string: `" the"`
# becomes `"Ġthe"`. Since no token string then contains a space, a merges line is simply
# `left right`. We read and write exactly this format (GPT-2's and the handout's fixtures).

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
with numpy. A saved tokenizer is a folder holding ``vocab.json``, ``merges.txt`` (GPT-2's format)
and ``special_tokens.json``.
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

from cs336_basics.files import atomic_dir, atomic_path, atomic_write
from cs336_basics.pretokenization import GPT2_PAT, chunk_spans, read_span


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
    return _read_merges(path)[0]


def _read_merges(path: str | os.PathLike) -> tuple[list[tuple[bytes, bytes]], list[int]]:
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
import json
import tempfile

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
# ~20 ms on its 50k merges, against ~250 ms for `Tokenizer.load` of such a folder. Without the special token, `<|endoftext|>` is a token no merge makes:
# that is why `Tokenizer.from_files` (the handout's API, which accepts any GPT-2-format pair, also
# one holding extra tokens that are not declared special) keeps only the constructor's check that
# every merge's parts and result are tokens, while `Tokenizer.load` of a saved folder applies the
# whole rule.

# %%
import time

gpt2_files = SHARED / "fixtures" / "gpt2_vocab.json", SHARED / "fixtures" / "gpt2_merges.txt"
if all(f.exists() for f in gpt2_files):
    gpt2_vocab, (gpt2_merges, gpt2_lines) = read_vocab_json(gpt2_files[0]), _read_merges(gpt2_files[1])
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
# ## Applying the merges to one pre-token
#
# Encoding a pre-token replays training: start from its bytes, find the adjacent pair with the
# lowest merge rank (learned earliest), merge every occurrence of it left to right, repeat until
# no adjacent pair is a merge. This is the readable reference; the handout's example follows.

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
# The handout's example (section 2.6.1): 'the cat ate' -> [9, 7, 1, 5, 10, 3]
vocab_ex = {0: b" ", 1: b"a", 2: b"c", 3: b"e", 4: b"h", 5: b"t", 6: b"th", 7: b" c", 8: b" a", 9: b"the", 10: b" at"}
merges_ex = [(b"t", b"h"), (b" ", b"c"), (b" ", b"a"), (b"th", b"e"), (b" a", b"t")]
id_of = {v: k for k, v in vocab_ex.items()}
rank_ex = {(id_of[a], id_of[b]): r for r, (a, b) in enumerate(merges_ex)}
merged_ex = [id_of[a + b] for a, b in merges_ex]
example = [bpe_merge_word([id_of[bytes([c])] for c in w.encode()], rank_ex, merged_ex) for w in ["the", " cat", " ate"]]
print(example)
assert sum(example, []) == [9, 7, 1, 5, 10, 3]

# %% [markdown]
# ## Merging many pre-tokens at once
#
# The loop above costs Python work per byte. A text of a few MB has tens of thousands of
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
# ## Pre-tokenizing faster: the standard library's `re` on ASCII text
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
# ## The Tokenizer
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
        merges, lines = _read_merges(directory / "merges.txt")
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
# A first check on the handout's example through the class, with a special token, and a look at
# what the longest-match rule does with overlapping special tokens.

# %%
vocab_small = {i: bytes([i]) for i in range(256)} | {256: b"th", 257: b"the", 258: b" c", 259: b" ca"}
merges_small = [(b"t", b"h"), (b"th", b"e"), (b" ", b"c"), (b" c", b"a")]
tok_small = Tokenizer(vocab_small, merges_small, special_tokens=["<|endoftext|>", "<|endoftext|><|endoftext|>"])
ids_small = tok_small.encode("the cat<|endoftext|><|endoftext|>the<|endoftext|>")
print(tok_small, ids_small)
print([tok_small.decode([i]) for i in ids_small])
assert tok_small.decode(ids_small) == "the cat<|endoftext|><|endoftext|>the<|endoftext|>"
assert ids_small.count(tok_small.special_token_ids["<|endoftext|><|endoftext|>"]) == 1  # the longest match won

# %% [markdown]
# Decoding joins the tokens' bytes and decodes them as UTF-8. A single token can hold *part* of a
# character (é is two bytes), so decoding ids one at a time may give U+FFFD where the whole
# sequence decodes fine; an id outside the vocabulary is an error, not silence.

# %%
e_acute = tok_small.encode("é")
print(e_acute, [tok_small.decode([i]) for i in e_acute], tok_small.decode(e_acute))
try:
    tok_small.decode([10**6])
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

try:
    import tiktoken

    gpt2_tiktoken = tiktoken.get_encoding("gpt2")
except Exception as err:  # no network and no TIKTOKEN_CACHE_DIR
    gpt2_tiktoken = None
    print(f"tiktoken's gpt2 files are unavailable ({type(err).__name__}); skipping the GPT-2 cells")

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
# The tokenizers are notebook 01's: vocab 10,000 trained on the English stand-in and 32,000 on the
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
# Next: notebook 02 builds the Transformer that reads these ids.
