"""train_bpe: exact merges against a naive reference trainer, the assignment's vocab-500 reference,
chunked pre-tokenization equal to one pass, every error, and `cs336 train-bpe` end to end."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import regex

from cs336_basics.bpe import learn_merges, train_bpe
from cs336_basics.pretokenization import chunk_spans, count_pretokens, count_pretokens_in_file
from tests.adapters import run_train_bpe

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


# ---------------------------------------------------------------- the oracle: slow and obviously right
def naive_train_bpe(data: bytes, vocab_size: int, special_tokens: list[str]):
    """Whole file in memory; recount every pair at every merge. Undecodable bytes are kept as they are."""
    text = data.decode("utf-8", errors="surrogateescape")
    pieces = [text]
    for special in sorted(special_tokens, key=len, reverse=True):  # longest special token first
        pieces = [part for piece in pieces for part in piece.split(special)]
    words = Counter()
    for piece in pieces:
        for pretoken in regex.findall(PAT, piece):
            raw = pretoken.encode("utf-8", errors="surrogateescape")
            words[tuple(bytes([b]) for b in raw)] += 1
    vocab = {i: bytes([i]) for i in range(256)}
    for special in special_tokens:
        vocab[len(vocab)] = special.encode("utf-8")
    merges = []
    while len(vocab) < vocab_size:
        pairs = Counter()
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        vocab[len(vocab)] = best[0] + best[1]
        new_words = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += n
        words = new_words
    return vocab, merges


CORPORA = {
    "ties": b"ab ab cd cd ef ef gh gh ba ba dc dc",
    "overlaps": b"aaaa aaa aa a aaaaaaa abab ababab bababa aab aabb " * 3,
    "special_tokens": (
        "the cat<|endoftext|>the hat<|endoftext|><|endoftext|>that<|endoftext|>hat the\n\n"
        "<|endoftext|> cat<|endoftext|>"
    ).encode() * 4,
    "unicode": "naïve café — 牛肉面 很好吃! emoji 🙂🙂 ok? Straße straße ÉCOLE école 123 4567\n".encode() * 3,
    "undecodable": b"abc \xff\xfe abc \xc3( \xe2\x82 abc\xc3\xa9 \xed\xa0\x80 ab\x00c\r\n" * 4,
    "whitespace": b"a  b   c\n\n\nd \t e\r\n f   \n   g\n" * 5,
}


@pytest.mark.parametrize("name", sorted(CORPORA))
@pytest.mark.parametrize("specials", [[EOT], [], [EOT, "<|pad|>", "<|endoftext|><|endoftext|>"]])
def test_exactly_the_naive_merges(tmp_path, name, specials):
    path = tmp_path / f"{name}.txt"
    path.write_bytes(CORPORA[name])
    want_vocab, want_merges = naive_train_bpe(CORPORA[name], 256 + len(specials) + 40, specials)
    vocab, merges = train_bpe(path, 256 + len(specials) + 40, specials, num_workers=1)
    assert merges == want_merges
    assert vocab == want_vocab


def test_random_corpora_match_the_naive_trainer(tmp_path):
    rng = random.Random(1)
    alphabet = ["a", "b", "ab", " ", " ", "\n", "é", "牛", "'s", "1", "!", EOT]
    for trial in range(6):
        text = "".join(rng.choice(alphabet) for _ in range(400))
        path = tmp_path / f"r{trial}.txt"
        path.write_text(text, encoding="utf-8")
        want = naive_train_bpe(text.encode(), 320, [EOT])
        assert train_bpe(path, 320, [EOT], num_workers=1) == want, trial


def test_vocab_layout_and_special_tokens_never_merged(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(CORPORA["special_tokens"])
    vocab, merges = train_bpe(path, 300, [EOT, "<|pad|>"], num_workers=1)
    assert [vocab[i] for i in range(256)] == [bytes([i]) for i in range(256)]
    assert vocab[256] == EOT.encode() and vocab[257] == b"<|pad|>"
    assert [vocab[258 + k] for k in range(len(merges))] == [a + b for a, b in merges]
    assert len(vocab) == 258 + len(merges) <= 300
    assert not any(b"<|" in a + b or b"|>" in a + b for a, b in merges)


def test_learn_merges_on_the_handout_example():
    merges = learn_merges({b"low": 5, b"lower": 2, b"widest": 3, b"newest": 6}, 12)
    assert [f"{a.decode()} {b.decode()}" for a, b in merges] == [
        "s t", "e st", "o w", "l ow", "w est", "n e", "ne west", "w i", "wi d", "wid est", "low e", "lowe r"]


def test_stops_when_no_pair_is_left(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab ab", encoding="utf-8")
    vocab, merges = train_bpe(path, 1000, [])
    assert merges == [(b"a", b"b"), (b" ", b"ab")] and len(vocab) == 258


# ---------------------------------------------------------------- chunked, parallel pre-tokenization
@pytest.mark.parametrize("specials", [[EOT], []])
def test_chunked_parallel_counts_equal_one_pass(tmp_path, specials):
    rng = random.Random(2)
    alphabet = ["word", " ", "  ", "\n", "\n\n", "\t", " x", "!", "é", "\r\n", "'ll", "42", EOT, "\xa0"]
    text = "".join(rng.choice(alphabet) for _ in range(6000))
    path = tmp_path / "c.txt"
    path.write_bytes(text.encode("utf-8") + b"\xff tail")
    spans = chunk_spans(path, specials, chunk_bytes=97)
    assert len(spans) > 20 and spans[0][0] == 0 and spans[-1][1] == path.stat().st_size
    assert all(a < b for a, b in spans) and all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    whole = count_pretokens(path.read_bytes().decode("utf-8", errors="surrogateescape"), specials)
    assert count_pretokens_in_file(path, specials, num_workers=1, chunk_bytes=97) == whole
    assert count_pretokens_in_file(path, specials, num_workers=2, chunk_bytes=97) == whole


def test_one_long_line_without_special_tokens_is_still_chunked(tmp_path):
    rng = random.Random(3)
    text = " ".join(rng.choice(["cat", "dog's", "42", "!!", "é", "  ", "\t"]) for _ in range(3000))
    path = tmp_path / "line.txt"
    path.write_text(text, encoding="utf-8")
    assert len(chunk_spans(path, [], chunk_bytes=200)) > 20
    assert count_pretokens_in_file(path, [], num_workers=1, chunk_bytes=200) == count_pretokens(text)


def test_parallel_training_equals_serial(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(CORPORA["unicode"] * 20 + CORPORA["special_tokens"] * 20)
    assert train_bpe(path, 400, [EOT], num_workers=2) == train_bpe(path, 400, [EOT], num_workers=1)


# ---------------------------------------------------------------- the assignment's reference (vocab 500)
def _gpt2_decoder() -> dict[str, int]:
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def test_matches_the_assignment_reference_on_corpus_en():
    if not (FIXTURES / "corpus.en").exists():
        pytest.skip(f"{FIXTURES} is not here (the assignment's fixtures)")
    dec = _gpt2_decoder()
    vocab, merges = run_train_bpe(FIXTURES / "corpus.en", 500, [EOT])
    lines = (FIXTURES / "train-bpe-reference-merges.txt").read_text(encoding="utf-8").splitlines()
    want_merges = [tuple(bytes(dec[c] for c in part) for part in line.split(" ")) for line in lines if line]
    assert merges == want_merges
    ref = json.loads((FIXTURES / "train-bpe-reference-vocab.json").read_text(encoding="utf-8"))
    want_vocab = {i: bytes(dec[c] for c in token) for token, i in ref.items()}
    # the reference numbers <|endoftext|> 0; we number bytes first (the layout): compare as the
    # assignment's own test does, ids and tokens as sets
    assert set(vocab) == set(want_vocab)
    assert set(vocab.values()) == set(want_vocab.values())


# ---------------------------------------------------------------- errors
def test_errors_say_what_is_wrong(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_bpe(tmp_path / "missing.txt", 300, [])
    with pytest.raises(ValueError, match="at least 256 bytes \\+ 2 special token"):
        train_bpe(path, 257, [EOT, "<|pad|>"])
    with pytest.raises(ValueError, match="empty string"):
        train_bpe(path, 300, [EOT, ""])
    with pytest.raises(TypeError, match="must be str"):
        train_bpe(path, 300, [b"<|endoftext|>"])
    assert len(train_bpe(path, 256, [])[0]) == 256  # no merges asked: just the bytes


# ---------------------------------------------------------------- the command line
def test_cli_train_bpe_end_to_end(tmp_path, capsys):
    from cs336_basics.cli import main
    from cs336_basics.tokenizer import Tokenizer

    path = tmp_path / "train.txt"
    path.write_bytes(CORPORA["special_tokens"] * 10 + CORPORA["unicode"] * 10)
    out = tmp_path / "tok"
    assert main(["train-bpe", "--input", str(path), "--vocab-size", "300", "--special-token", EOT,
                 "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "time:" in report and "peak memory:" in report and "longest token:" in report
    assert sorted(p.name for p in out.iterdir()) == ["merges.txt", "special_tokens.json", "vocab.json"]
    vocab, merges = train_bpe(path, 300, [EOT], num_workers=1)
    tok = Tokenizer.load(out)
    assert tok.vocab == vocab and tok.merges == merges and tok.special_tokens == [EOT]

    assert main(["train-bpe", "--input", str(tmp_path / "nope.txt"), "--vocab-size", "300", "--out", str(out)]) == 2
    assert "is not a file" in capsys.readouterr().err
    assert main(["train-bpe", "--input", str(path), "--vocab-size", "100", "--out", str(out)]) == 2
    assert "too small" in capsys.readouterr().err
