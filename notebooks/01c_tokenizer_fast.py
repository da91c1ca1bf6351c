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
# # 01c · The fast Tokenizer: streaming, token files, GPT-2 and the tokenizer experiments
#
# Notebook 01b wrote the tokenizer plainly (`PlainTokenizer`) and took three steps to make it fast,
# exported as `cs336_basics/merge_engine.py`: a cache of pre-tokens, merges on ids for many
# pre-tokens at once with numpy (`bpe_merge_word`, `PairTable`, `bpe_merge_words`), and a faster
# pre-tokenizer (`pretokenize_mixed`). Here the fourth step puts them together into the exported
# `Tokenizer`, checked equal to the plain one. Then what a training run needs from it: streaming
# (`encode_iterable`), files of token ids (`.npy`), GPT-2 exactly (interop with `tiktoken`), and the
# handout's tokenizer experiments (section 2.7) with notebook 01's tokenizers (`runs/bpe/`).
# Exports: `cs336_basics/tokenizer.py` and `cs336_basics/token_files.py`.

# %%
from pathlib import Path

import jupytext

ROOT = Path.cwd() if (Path.cwd() / "pyproject.toml").exists() else Path.cwd().parent

# %% [markdown]
# **The reference.** Every step of notebook 01b was checked against its `PlainTokenizer`, and so is
# the `Tokenizer` here. Rather than copy that notebook's opening, we run its code cells up to Part
# 2's first step, read from `notebooks/01b_tokenizer.py`: its setup (`SMOKE`, `SHARED`,
# `HAVE_SHARED`), Part 1 (the readers of GPT-2's files, which load GPT-2's own as `gpt2_vocab` and
# `gpt2_merges`; `PlainTokenizer`, checked on the handout's example, on the small vocabulary
# `vocab_small`/`merges_small` with two overlapping special tokens and the string `probe`, and
# against `tiktoken`'s GPT-2 as `gpt2_tiktoken`), and Part 2's benchmark: `bench_text` (1 MB of
# the web stand-in; made-up text in smoke mode), encoded with GPT-2's vocabulary (`bench_vocab`,
# `bench_merges`; the small one where GPT-2's files are missing) by the plain tokenizer into
# `plain_ids` in `t_plain` CPU seconds (`cpu_seconds`). Their output follows.

# %%
cells_01b = jupytext.read(ROOT / "notebooks" / "01b_tokenizer.py").cells
step_1 = next(i for i, cell in enumerate(cells_01b) if cell.source.startswith("## Step 1"))
for cell in cells_01b[:step_1]:
    if cell.cell_type == "code":
        exec(cell.source)  # in this notebook's namespace, as if the cell were here

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
# **(d)** The ids go to `{train,valid}.npy` in a folder beside each tokenizer (`runs/bpe/english-10k.tokens/`:
# not inside it, since a tokenizer folder is written and replaced as a whole; the presets' own token files are made by `cs336 prepare`, in `data/<corpus>/tokens/`) as uint16: both
# vocabularies are below 65,536, so every id fits in two bytes, half of int32's space and memory bandwidth.

# %%
for name in tokenizers:
    sample = (corpora[name] / "train.txt").read_bytes()[: 200_000 if SMOKE else 4_000_000].decode("utf-8", "replace")
    fresh_tok = Tokenizer(tokenizers[name].vocab, tokenizers[name].merges, tokenizers[name].special_tokens)
    _, wall, cpu = timed(lambda: fresh_tok.encode(sample))
    mb = len(sample.encode()) / 1e6
    print(f"{name:8s} encode, 1 process, fresh: {mb / wall:5.2f} MB/s wall, {mb / cpu:5.2f} MB/s per CPU-second"
          f" -> the Pile (825 GB) in {825e3 / (mb / cpu) / 3600:.0f} core-hours")

token_dirs = {name: (tokenizer_dirs[name].with_name(tokenizer_dirs[name].name + ".tokens") if HAVE_SHARED
                     else work / name / "tokens") for name in tokenizers}
throughput = {}
for name, tok in tokenizers.items():
    for split in ("train", "valid"):
        src = corpora[name] / f"{split}.txt"
        t0 = time.perf_counter()
        out = tokenize_file(tok, src, token_dirs[name] / f"{split}.npy", progress=False)
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
