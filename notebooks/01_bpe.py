# %% [markdown]
# # 01 · Byte-pair encoding: training a byte-level BPE tokenizer
#
# A language model reads integers, not text. This notebook builds the first half of the way from
# text to integers: **training** a byte-level BPE vocabulary (the second half, the `Tokenizer`
# that encodes and decodes with it, is notebook 01b).
#
# In order: Unicode and UTF-8 (why we work on bytes), pre-tokenization with GPT-2's regex,
# the BPE algorithm on the handout's small example, a fast trainer, and the handout's two
# training experiments. Exports: `cs336_basics/pretokenization.py` and `cs336_basics/bpe.py`.

# %%
import os
from pathlib import Path

SMOKE = os.environ.get("CS336_SMOKE") == "1"
ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent
FIGURES = ROOT / "figures"  # write figures here only when not SMOKE (use a temp dir in smoke mode)

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
# A file may have no special token at all (or huge stretches without one). Then we cut at a newline
# that follows a printable ASCII character: GPT-2's pattern never puts a non-space character and a
# following whitespace in one pre-token, and a pre-token that ends in a non-space character does
# not depend on what follows, so that cut is exact as well.

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
    return _boundaries(file, max(1, desired_num_chunks), [split_special_token], newline_fallback=False)


def _next_safe_cut(file: BinaryIO, start: int, file_size: int, specials: list[bytes], newline_fallback: bool) -> int:
    """The first offset >= start where a special token begins (or, if allowed, a safe newline cut)."""
    window = 1 << 16
    overlap = max((len(s) for s in specials), default=1)
    pos = start
    while pos < file_size:
        file.seek(pos)
        buf = file.read(window + overlap)
        found = [i for i in (buf.find(s) for s in specials) if i != -1]
        if found:
            return pos + min(found)
        if newline_fallback:
            # a newline right after a printable ASCII character is a pre-token boundary
            i = buf.find(b"\n", 1)
            while i != -1:
                if 0x21 <= buf[i - 1] <= 0x7E:
                    return pos + i
                i = buf.find(b"\n", i + 1)
        if len(buf) <= overlap:
            break
        pos += window
    return file_size


def _boundaries(file: BinaryIO, num_chunks: int, specials: list[bytes], newline_fallback: bool) -> list[int]:
    file.seek(0, os.SEEK_END)
    file_size = file.tell()
    step = file_size // num_chunks
    cuts = [0]
    for k in range(1, num_chunks):
        guess = max(k * step, cuts[-1])
        cuts.append(_next_safe_cut(file, guess, file_size, specials, newline_fallback))
    cuts.append(file_size)
    return sorted(set(cuts))


def chunk_spans(path: str | os.PathLike, special_tokens: Sequence[str], chunk_bytes: int = 1 << 22) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges of about ``chunk_bytes`` each that can be pre-tokenized independently.

    Ranges start where a special token starts; in a stretch without one they start after a newline
    that follows a printable ASCII character (exact for GPT-2's pattern). The newline cut is only
    used when no special token contains a newline.
    """
    specials = [s.encode("utf-8") for s in special_tokens if s]
    newline_ok = not any(b"\n" in s for s in specials)
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        cuts = _boundaries(f, max(1, -(-size // chunk_bytes)), specials, newline_fallback=newline_ok)
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
