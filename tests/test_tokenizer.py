"""The Tokenizer against oracles: tiktoken (GPT-2), a naive merge-by-merge encoder, hypothesis.

GPT-2 tests need tiktoken's gpt2 files: they skip when tiktoken cannot load them (offline and
TIKTOKEN_CACHE_DIR unset; CI sets it when ../shared/tiktoken_cache exists). Tests on the handout's
fixtures skip when ../shared/fixtures is absent. Everything else makes its own data.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import tracemalloc
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cs336_basics.pretokenization import GPT2_PAT, GPT2_RE
from cs336_basics.merge_engine import (
    GPT2_PAT_ASCII,
    GPT2_PAT_FACTORED,
    NO_MERGE,
    TIKTOKEN_GPT2_PAT,
    PairTable,
    _non_ascii_positions,
    bpe_merge_word,
    bpe_merge_words,
    pretokenize_mixed,
)
from cs336_basics.token_files import tokenize_file
from cs336_basics.tokenizer import Tokenizer, merges_from_ranks
from tests.adapters import get_tokenizer

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
EOT = "<|endoftext|>"

CORPUS = (
    "the cat sat on the mat. The cat's hat is on the cat! 12345 cats, 678 hats...\n"
    "naïve café, über straße; 東京 は 大きい 🙂 — “quotes” and 'single' ones; don't won't I'll we've\n"
    "    indented    code = x ** 2  # comment\n\n\n\ttabs\tand  double  spaces  \r\n"
)


def _naive_train(text: str, num_merges: int) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """A tiny, obviously-correct BPE trainer (counts recomputed every step), to make test vocabularies."""
    words = [list(bytes([b]) for b in w.encode()) for w in regex.findall(GPT2_PAT, text)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for _ in range(num_merges):
        counts: dict[tuple[bytes, bytes], int] = {}
        for w in words:
            for pair in zip(w, w[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], p))
        merges.append(best)
        vocab[len(vocab)] = best[0] + best[1]
        for w in words:
            i = 0
            while i < len(w) - 1:
                if (w[i], w[i + 1]) == best:
                    w[i : i + 2] = [best[0] + best[1]]
                i += 1
    return vocab, merges


SMALL_VOCAB, SMALL_MERGES = _naive_train(CORPUS * 3, 150)


def small(special_tokens=(EOT, EOT + EOT)) -> Tokenizer:
    return Tokenizer(SMALL_VOCAB, SMALL_MERGES, list(special_tokens))


LOOKED_UP = Tokenizer(SMALL_VOCAB, SMALL_MERGES, [EOT, EOT + EOT], whole_token_lookup=True)


def naive_encode(text: str, vocab, merges, special_tokens) -> list[int]:
    """The handout's definition: split on specials (longest first), pre-tokenize, apply merges in order."""
    id_of = {b: i for i, b in sorted(vocab.items(), reverse=True)}
    specials = sorted(special_tokens, key=len, reverse=True)
    parts = regex.split("(" + "|".join(map(regex.escape, specials)) + ")", text) if specials else [text]
    ids = []
    for k, part in enumerate(parts):
        if k % 2:
            ids.append(id_of[part.encode()])
            continue
        for piece in regex.findall(GPT2_PAT, part):
            word = [bytes([b]) for b in piece.encode()]
            for a, b in merges:
                i = 0
                while i < len(word) - 1:
                    if word[i] == a and word[i + 1] == b:
                        word[i : i + 2] = [a + b]
                    i += 1
            ids += [id_of[t] for t in word]
    return ids


text_parts = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    st.text(alphabet="the cat's  \n\t.!,0123456789é東🙂", max_size=12),
    st.sampled_from([EOT, EOT + EOT, "<|endof", "text|>", " ", "  ", "\n\n", "'ll", "'s", "\r\n"]),
)
texts = st.lists(text_parts, max_size=12).map("".join)


# ---------------------------------------------------------------- the merge loops
def test_handout_example():
    vocab = {0: b" ", 1: b"a", 2: b"c", 3: b"e", 4: b"h", 5: b"t", 6: b"th", 7: b" c", 8: b" a", 9: b"the", 10: b" at"}
    merges = [(b"t", b"h"), (b" ", b"c"), (b" ", b"a"), (b"th", b"e"), (b" a", b"t")]
    assert Tokenizer(vocab, merges).encode("the cat ate") == [9, 7, 1, 5, 10, 3]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=30))
def test_batch_merges_equal_one_word_at_a_time(words):
    tok = small()
    table = PairTable(*np.array(list(tok.pair_rank)).T, np.array(list(tok.pair_rank.values())), width=tok.vocab_size)
    ids = tok.byte_ids[np.frombuffer(b"".join(words), dtype=np.uint8)]
    batch = bpe_merge_words(ids, np.array([len(w) for w in words]), table, np.array(tok.merged_id))
    assert batch == [bpe_merge_word(tok.byte_ids[list(w)].tolist(), tok.pair_rank, tok.merged_id) for w in words]
    as_str = bpe_merge_words(ids, np.array([len(w) for w in words]), table, np.array(tok.merged_id), as_str=True)
    assert as_str == ["".join(map(chr, word)) for word in batch]


def test_pair_table_lookup_absent_and_present():
    rng = np.random.default_rng(0)
    left, right = rng.integers(0, 5000, 3000), rng.integers(0, 5000, 3000)
    keys = np.unique(left * 5000 + right)
    table = PairTable(keys // 5000, keys % 5000, np.arange(keys.size), width=5000)
    assert table.lookup(keys.astype(np.uint64)).tolist() == list(range(keys.size))
    absent = np.setdiff1d(np.arange(25_000_000, step=997), keys).astype(np.uint64)
    assert (table.lookup(absent) == NO_MERGE).all()


@settings(max_examples=300, deadline=None)
@given(st.one_of(texts, st.text(st.characters(exclude_categories=("Cs",)), max_size=40)))
def test_faster_pattern_has_the_same_matches(text):
    expected = regex.findall(GPT2_PAT, text)
    assert regex.findall(GPT2_PAT_FACTORED, text) == expected
    assert regex.findall(TIKTOKEN_GPT2_PAT, text) == expected
    assert pretokenize_mixed(text, re.compile(GPT2_PAT_ASCII).findall, GPT2_RE.findall, sparse=0) == expected
    assert pretokenize_mixed(text, re.compile(GPT2_PAT_ASCII).findall, GPT2_RE.findall) == expected


ASCII = "".join(map(chr, range(128)))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(ASCII, max_size=40), st.text(" \t\n\r\x0b\x0c\x1c\x1f'slvert0a.", max_size=40)))
def test_ascii_pattern_has_the_same_matches_on_ascii_text(text):
    assert re.findall(GPT2_PAT_ASCII, text) == regex.findall(GPT2_PAT, text)


def test_non_ascii_positions_across_blocks():
    text = "ab é" * 5 + "\udc80" + "x" * 20 + "🙂東"
    expected = [i for i, c in enumerate(text) if ord(c) > 127]
    for block in (1, 3, 7, 1 << 16):
        assert _non_ascii_positions(text, block).tolist() == expected
    assert _non_ascii_positions("").tolist() == [] == _non_ascii_positions("plain").tolist()


def test_mixed_text_pretokenizes_like_the_regex():
    words = ["the", " cat", "'s", "  ", "\n\n", " café", "東京", "\u00a0", "\u3000x", " 🙂", "\x1c", "...", " 42", "\t"]
    rng = random.Random(0)
    for _ in range(300):
        text = "".join(rng.choice(words) for _ in range(rng.randrange(60)))
        for sparse in (0, 256):
            assert pretokenize_mixed(text, re.compile(GPT2_PAT_ASCII).findall, GPT2_RE.findall, sparse) == GPT2_RE.findall(text)
    sparse_text = ("the cat sat on the mat.  " * 40 + "a café\u00a0 東京 " + "x  \n" * 30) * 20
    assert small()._pretokenize(sparse_text) == GPT2_RE.findall(sparse_text)
    assert small()._pretokenize(CORPUS * 50) == GPT2_RE.findall(CORPUS * 50)  # dense: the regex does it all


# ---------------------------------------------------------------- encode / decode
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_encode_equals_naive_definition_and_round_trips(text):
    tok = small()
    ids = tok.encode(text)
    assert ids == naive_encode(text, tok.vocab, SMALL_MERGES, tok.special_tokens)
    assert tok.decode(ids) == text
    assert LOOKED_UP.encode(text) == ids  # a trained vocabulary: whole-token lookup changes nothing


def test_whole_token_lookup_is_tiktokens_rule():
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab", 258: b"abc"}
    merges = [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")]  # hand-made: merging never builds "abc"
    assert Tokenizer(vocab, merges).encode("abc") == [97, 256]
    assert Tokenizer(vocab, merges, whole_token_lookup=True).encode("abc") == [258]
    tok = small()
    looked_up = Tokenizer(tok.vocab, tok.merges, tok.special_tokens, whole_token_lookup=True)
    text = " ".join(f"w{i}x{i * 7}y" for i in range(300)) + CORPUS * 3  # trained vocabulary: same ids
    assert looked_up.encode(text) == tok.encode(text)


def test_many_new_pretokens_take_the_batch_path():
    tok = small()
    text = " ".join(f"w{i}x{i * 7}y" for i in range(3000)) + CORPUS
    assert tok.encode(text) == naive_encode(text, tok.vocab, SMALL_MERGES, tok.special_tokens)


def test_overlapping_special_tokens_longest_match_wins():
    tok = small(["<|a|>", "<|a|><|a|>", "a|>"])
    ids = tok.encode("x<|a|><|a|><|a|>y")
    specials = tok.special_token_ids
    assert [i for i in ids if i in specials.values()] == [specials["<|a|><|a|>"], specials["<|a|>"]]
    assert tok.decode(ids) == "x<|a|><|a|><|a|>y"


def test_special_tokens_at_the_ends_adjacent_and_in_many_batches():
    tok = small()
    text = EOT + "the cat" + EOT * 3 + "x" + (CORPUS + EOT) * 40 + EOT + EOT + "café" + EOT
    expected = naive_encode(text, tok.vocab, SMALL_MERGES, tok.special_tokens)
    assert tok.encode(text) == expected
    tok = small()
    tok.BATCH_CHARS = 100  # look up the pre-tokens of every few documents
    assert tok.encode(text) == expected
    assert list(tok.encode_iterable(text.splitlines(keepends=True))) == expected
    tok = small()
    tok.cache_size = 5  # the cache is cleared on every call: the special tokens stay
    assert tok.encode(text) == expected
    assert pickle.loads(pickle.dumps(tok)).encode(text) == expected
    assert small([EOT]).encode(EOT + EOT) == [small([EOT]).special_token_ids[EOT]] * 2
    word_special = small(["cat", EOT])  # a special token that looks like a pre-token is still only ever split off
    text = "the cat sat; cats concat" + EOT + "cat" + " cat" * 70
    assert word_special.encode(text) == naive_encode(text, word_special.vocab, SMALL_MERGES, word_special.special_tokens)


def test_special_tokens_appended_or_reused():
    vocab = dict(SMALL_VOCAB) | {1000: EOT.encode()}
    tok = Tokenizer(vocab, SMALL_MERGES, [EOT, "<|pad|>"])
    assert tok.special_token_ids == {EOT: 1000, "<|pad|>": 1001}
    assert tok.vocab[1001] == b"<|pad|>" and tok.vocab_size == 1002
    assert Tokenizer(SMALL_VOCAB, SMALL_MERGES).encode(EOT) != [1000]  # not special: plain text


def test_decode_invalid_utf8_and_bad_ids():
    tok = small()
    zhe = tok.encode("ж")  # two bytes, never merged in the small vocabulary
    assert len(zhe) == 2 and tok.decode(zhe[:1]) == "\ufffd" and tok.decode(zhe) == "ж"
    assert tok.decode(np.array(zhe)) == "ж"
    for bad in ([10**6], [-1], [tok.vocab_size], ["a"]):
        with pytest.raises(ValueError, match="not in the vocabulary"):
            tok.decode([0, *bad])


def test_lone_surrogates_become_their_bytes():
    tok = small()
    raw = b"caf\xe9 \xff\xfe ok"
    ids = tok.encode(raw.decode("utf-8", errors="surrogateescape"))
    assert tok.decode_bytes(ids) == raw


def test_errors():
    with pytest.raises(ValueError, match="not in the vocabulary"):
        Tokenizer({0: b"a"}, [(b"a", b"b")])
    with pytest.raises(ValueError, match="non-empty"):
        Tokenizer(SMALL_VOCAB, SMALL_MERGES, [""])
    with pytest.raises(TypeError):
        Tokenizer([b"a"], [])
    with pytest.raises(TypeError, match="tokens must be bytes"):
        Tokenizer({0: "a"}, [])
    with pytest.raises(TypeError, match="expects a str"):
        small().encode(b"bytes")
    with pytest.raises(TypeError, match="text mode"):
        list(small().encode_iterable([b"bytes"]))
    with pytest.raises(ValueError, match="byte 0x62"):
        Tokenizer({0: b"a", 1: b" "}, []).encode("a b")


# ---------------------------------------------------------------- encode_iterable
@settings(max_examples=120, deadline=None)
@given(st.data())
def test_encode_iterable_any_chunking(data):
    tok = small()
    tok.STREAM_CHARS = data.draw(st.sampled_from([1, 3, 16, 1 << 14]))  # flush often to hit every boundary
    text = data.draw(texts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert list(tok.encode_iterable(chunks)) == tok.encode(text)


def test_encode_iterable_file_and_string():
    tok = small()
    text = CORPUS * 40 + EOT + CORPUS
    lines = text.splitlines(keepends=True)
    assert list(tok.encode_iterable(lines)) == tok.encode(text)
    assert list(tok.encode_iterable(text)) == tok.encode(text)


@pytest.mark.slow
def test_encode_iterable_constant_memory():
    """5 MB streamed line by line stays within ~1 MB of Python allocations (buffer, pieces, cache)."""
    tok = small()
    words = ["the", "cat", "sat", "on", "mat", "naïve", "café", "12", "345", "don't", "hat", "!", "...", EOT]
    rng = random.Random(0)
    lines = [" ".join(rng.choice(words) for _ in range(12)) + "\n" for _ in range(200)]
    target = 5_000_000

    def stream():
        sent = 0
        while sent < target:
            line = lines[sent % len(lines)]
            sent += len(line)
            yield line

    warm = list(tok.encode_iterable(lines))  # fill the cache first: it is bounded, not streamed
    assert warm
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    count = sum(1 for _ in tok.encode_iterable(stream()))
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    assert count > 1_000_000
    assert peak < 1_000_000, f"encode_iterable used {peak:,} bytes on a 5 MB stream"


# ---------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path):
    tok = small()
    tok.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["merges.txt", "special_tokens.json", "vocab.json"]
    back = Tokenizer.load(tmp_path / "tok")
    assert back.vocab == tok.vocab and back.merges == tok.merges and back.special_tokens == tok.special_tokens
    text = CORPUS + EOT + EOT + "x"
    assert back.encode(text) == tok.encode(text)
    vocab = json.loads((tmp_path / "tok" / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["Ġthe"] == tok.encode(" the")[0]  # human-readable GPT-2 format
    again = Tokenizer.from_files(tmp_path / "tok" / "vocab.json", tmp_path / "tok" / "merges.txt", [EOT])
    assert again.encode(text) == Tokenizer(tok.vocab, tok.merges, [EOT]).encode(text)


def test_file_errors(tmp_path):
    tok = small()
    tok.save(tmp_path)
    vocab, merges = tmp_path / "vocab.json", tmp_path / "merges.txt"
    with pytest.raises(FileNotFoundError, match="vocab file"):
        Tokenizer.from_files(tmp_path / "nope.json", merges)
    with pytest.raises(FileNotFoundError, match="merges file"):
        Tokenizer.from_files(vocab, tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Tokenizer.load(tmp_path / "missing")
    lines = merges.read_text(encoding="utf-8").splitlines()
    lines[3] = "Ġt h e"
    merges.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges\.txt:4: malformed merge"):
        Tokenizer.from_files(vocab, merges)
    lines[3] = "Ġt  "
    merges.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges\.txt:4"):
        Tokenizer.from_files(vocab, merges)
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json"):
        Tokenizer.from_files(tmp_path / "bad.json", merges)
    (tmp_path / "bad.json").write_text('{"a": -3}', encoding="utf-8")
    with pytest.raises(ValueError, match="non-negative"):
        Tokenizer.from_files(tmp_path / "bad.json", merges)
    (tmp_path / "bad.json").write_text('{"a b": 3}', encoding="utf-8")
    with pytest.raises(ValueError, match="alphabet"):
        Tokenizer.from_files(tmp_path / "bad.json", merges)
    (tmp_path / "special_tokens.json").write_text('{"x": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="list of strings"):
        Tokenizer.load(tmp_path)


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path):
    small().save(tmp_path)
    small().save(tmp_path)  # overwrite in place
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("workers", [1, 2])
def test_tokenize_file(tmp_path, workers):
    tok = small()
    raw = (CORPUS + EOT).encode() * 30 + b"bad \xff\xfe bytes\n" + CORPUS.encode() * 30
    (tmp_path / "in.txt").write_bytes(raw)
    out = tokenize_file(tok, tmp_path / "in.txt", tmp_path / "sub" / "ids.npy", num_workers=workers, progress=False, chunk_bytes=512)
    ids = np.load(out, mmap_mode="r")
    assert ids.dtype == np.uint16
    assert tok.decode_bytes(ids) == raw
    assert ids.tolist() == tok.encode(raw.decode("utf-8", errors="surrogateescape"))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["ids.npy"]


def test_tokenize_file_uint32_and_errors(tmp_path):
    vocab = dict(SMALL_VOCAB) | {70_000: b"<|big|>"}
    tok = Tokenizer(vocab, SMALL_MERGES, ["<|big|>"])
    (tmp_path / "in.txt").write_text("a<|big|>b", encoding="utf-8")
    ids = np.load(tokenize_file(tok, tmp_path / "in.txt", tmp_path / "ids.npy", progress=False, num_workers=1))
    assert ids.dtype == np.uint32 and ids.tolist() == tok.encode("a<|big|>b") and 70_000 in ids.tolist()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tokenize_file(tok, tmp_path / "nope.txt", tmp_path / "ids.npy")
    with pytest.raises(ValueError, match=r"\.npy"):
        tokenize_file(tok, tmp_path / "in.txt", tmp_path / "ids.bin")


def test_cli_tokenize_end_to_end(tmp_path, capsys):
    from cs336_basics.cli import main

    tok = small([EOT])
    tok.save(tmp_path / "tok")
    text = (CORPUS + EOT) * 20
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    args = ["tokenize", "--tokenizer", str(tmp_path / "tok"), "--input", str(tmp_path / "train.txt")]
    assert main([*args, "--out", str(tmp_path / "train.npy"), "--workers", "1", "--no-progress"]) == 0
    assert "tokens" in capsys.readouterr().out
    assert np.load(tmp_path / "train.npy").tolist() == tok.encode(text)
    assert main([*args, "--out", str(tmp_path / "train.bin")]) == 2
    assert "must end in .npy" in capsys.readouterr().err
    assert main(["tokenize", "--tokenizer", str(tmp_path / "none"), "--input", str(tmp_path / "train.txt"), "--out", "x.npy"]) == 2
    assert "cannot load the tokenizer" in capsys.readouterr().err
    assert main(["tokenize", "--tokenizer", str(tmp_path / "tok"), "--input", str(tmp_path / "no.txt"), "--out", "x.npy"]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_adapter():
    tok = get_tokenizer(SMALL_VOCAB, SMALL_MERGES, [EOT])
    assert tok.decode(tok.encode("the cat" + EOT)) == "the cat" + EOT


def test_merges_from_ranks():
    vocab = {i: t for i, t in SMALL_VOCAB.items()}
    ranks = {t: i for i, t in vocab.items()}
    assert merges_from_ranks(ranks) == SMALL_MERGES
    with pytest.raises(ValueError, match="not a merge"):
        merges_from_ranks({b"a": 0, b"abc": 1})


# ---------------------------------------------------------------- GPT-2 against tiktoken
@pytest.fixture(scope="module")
def gpt2():
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("gpt2")
    except Exception as err:  # offline without TIKTOKEN_CACHE_DIR
        pytest.skip(f"tiktoken's gpt2 files are unavailable ({type(err).__name__}); set TIKTOKEN_CACHE_DIR")
    return Tokenizer.from_tiktoken("gpt2"), encoding


GPT2_SAMPLES = [
    "Hello, world! It's 2025 and we're testing: naïve café, 東京, 🙂🙃, ‘quotes’.",
    "    def f(x):\n        return x ** 2  # comment\n\n\n\t\ttabs",
    "   leading and trailing spaces   ",
    "<|endoftext|>between<|endoftext|><|endoftext|>",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ==================== ..........",
    "I'll we've they're she'd it's DON'T 'S '' ' 1234567890 3.14159 1,000,000",
    "\r\n\r\n\u00a0\u2003nbsp\u3000ideographic space",
]


def test_gpt2_equals_tiktoken(gpt2):
    tok, encoding = gpt2
    assert tok.whole_token_lookup
    for text in GPT2_SAMPLES:
        assert tok.encode(text) == encoding.encode(text, allowed_special="all"), text
        assert tok.decode(tok.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(texts)
def test_gpt2_equals_tiktoken_hypothesis(gpt2, text):
    # `regex` and tiktoken's Rust regex have different Unicode versions: a code point unassigned in
    # Python's tables (e.g. U+3D000) may be a letter to `regex` and not to tiktoken
    assume(all(unicodedata.category(c) != "Cn" for c in text))
    tok, encoding = gpt2
    ids = tok.encode(text)
    assert ids == encoding.encode(text, allowed_special="all")
    assert tok.decode(ids) == text


def test_to_tiktoken(gpt2):
    tok, encoding = gpt2
    again = tok.to_tiktoken("gpt2-again")
    text = GPT2_SAMPLES[0] + GPT2_SAMPLES[5]
    assert again.encode_ordinary(text) == encoding.encode_ordinary(text)


def test_to_tiktoken_small_vocabulary():
    pytest.importorskip("tiktoken")
    mine = small([EOT]).to_tiktoken()
    assert mine.encode(CORPUS + EOT, allowed_special="all") == small([EOT]).encode(CORPUS + EOT)
    shuffled = dict(SMALL_VOCAB)
    shuffled[256], shuffled[300] = shuffled[300], shuffled[256]  # ids no longer follow merge order
    with pytest.raises(ValueError, match="tiktoken ranks tokens by id"):
        Tokenizer(shuffled, SMALL_MERGES).to_tiktoken()


def test_from_tiktoken_unknown_name():
    pytest.importorskip("tiktoken")
    with pytest.raises(RuntimeError, match="could not load"):
        Tokenizer.from_tiktoken("no-such-encoding")


# ---------------------------------------------------------------- the handout's fixtures (while developing)
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures is absent")


@needs_fixtures
@pytest.mark.parametrize("name", ["address.txt", "german.txt", "tinystories_sample.txt"])
def test_fixture_gpt2_files_equal_tiktoken(gpt2, name):
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT])
    _, encoding = gpt2
    text = (FIXTURES / name).read_text(encoding="utf-8")
    ids = tok.encode(text)
    assert ids == encoding.encode(text, allowed_special={EOT})
    assert tok.decode(ids) == text
    with open(FIXTURES / name, encoding="utf-8") as f:
        assert list(tok.encode_iterable(f)) == ids


def test_gpt2_handout_constructor_equals_tiktoken(gpt2):
    """GPT-2's vocab and merges through the handout's constructor (merges only, no whole-token lookup)."""
    looked_up, encoding = gpt2
    tok = Tokenizer(looked_up.vocab, looked_up.merges, [EOT])
    assert not tok.whole_token_lookup
    text = EOT + EOT.join(GPT2_SAMPLES) * 3 + "ascii only" + EOT + EOT + " naïve" + EOT
    assert tok.encode(text) == encoding.encode(text, allowed_special={EOT})
    assert Tokenizer(looked_up.vocab, looked_up.merges).encode(text) == encoding.encode_ordinary(text)


@needs_fixtures
def test_fixture_reference_files_load():
    tok = Tokenizer.from_files(FIXTURES / "train-bpe-reference-vocab.json", FIXTURES / "train-bpe-reference-merges.txt", [EOT])
    text = (FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8")[:2000]
    assert tok.decode(tok.encode(text)) == text
