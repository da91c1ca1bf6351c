"""A tokenizer folder is a unit: failures while writing it, and folders that are not one training's output.

Each test makes a fault happen (a save that dies half-way, a full disk, files mixed from two trainings,
a merges.txt cut short, an unwritable --out) and checks that nothing is half-written, that the old
files stay whole, and that the user reads one line that names the file and the fix.
"""

from __future__ import annotations

import builtins
import errno
import shutil

import numpy as np
import pytest

from cs336_basics import files
from cs336_basics import token_files as token_files_module
from cs336_basics.bpe import train_bpe
from cs336_basics.cli import main
from cs336_basics.tokenizer import Tokenizer

EOT = "<|endoftext|>"
WORDS = ("the cat sat on the mat and the dog ran after the cat while a bird sang in the tall old tree; "
         "then it rained, so everyone went inside, ate soup, and told stories about the sea.")


def corpus(seed: int) -> str:
    """A few KB of text; different seeds give different word orders (and so different merges)."""
    rng = np.random.default_rng(seed)
    words = WORDS.split()
    return "".join(" ".join(rng.permutation(words)) + f" {i}.\n" + (EOT if i % 5 == 4 else "") for i in range(60))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(corpus(0), encoding="utf-8")
    return path


def trained(path, vocab_size: int = 300) -> Tokenizer:
    vocab, merges = train_bpe(path, vocab_size, [EOT], num_workers=1)
    return Tokenizer(vocab, merges, [EOT])


def snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def hidden(folder) -> list[str]:
    """Temporary files and folders (files.py names them ``.NAME.PID.HEX.tmp``) left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def fail_writes(monkeypatch, name_part: str, error: BaseException) -> None:
    """Make every new file whose name contains ``name_part`` fail on open, as a full disk would."""
    real_open = builtins.open

    def failing_open(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wxa") and name_part in str(file):
            raise error
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing_open)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err, err
    return err


# ---------------------------------------------------------------- saving
def test_save_failing_half_way_leaves_the_old_folder_whole(tmp_path, text_file, monkeypatch):
    old = trained(text_file, 300)
    folder = tmp_path / "tok"
    old.save(folder)
    before = snapshot(folder)
    fail_writes(monkeypatch, "special_tokens.json", RuntimeError("killed while saving"))
    with pytest.raises(RuntimeError, match="killed"):
        trained(text_file, 330).save(folder)  # vocab.json and merges.txt were already written
    monkeypatch.undo()
    assert snapshot(folder) == before
    assert Tokenizer.load(folder).merges == old.merges
    assert hidden(tmp_path) == [] and hidden(folder) == []


def test_save_refuses_a_folder_holding_other_files(tmp_path, text_file):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me", encoding="utf-8")
    (folder / "vocab.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"holds other files \(notes\.txt\)"):
        trained(text_file).save(folder)
    assert snapshot(folder) == {"notes.txt": b"keep me", "vocab.json": b"{}"}
    assert hidden(tmp_path) == []


# ---------------------------------------------------------------- loading: is the folder one training's output?
@pytest.mark.parametrize("vocab_from, merges_from", [(330, 300), (300, 330)])
def test_load_refuses_files_from_two_trainings(tmp_path, text_file, vocab_from, merges_from):
    # what a re-train with another --vocab-size that died half-way used to leave behind
    for size in (300, 330):
        trained(text_file, size).save(tmp_path / str(size))
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(tmp_path / str(vocab_from) / "vocab.json", folder)
    shutil.copy(tmp_path / str(merges_from) / "merges.txt", folder)
    shutil.copy(tmp_path / "300" / "special_tokens.json", folder)
    with pytest.raises(ValueError, match="not one training's output") as err:
        Tokenizer.load(folder)
    message = str(err.value)
    assert str(folder) in message and "cs336 train-bpe" in message and "\n" not in message
    if merges_from > vocab_from:  # a merge makes a token the vocabulary lacks: the message points at its line
        assert "merges.txt line 45 " in message


def test_load_refuses_another_corpus_merges(tmp_path, text_file):
    trained(text_file).save(tmp_path / "a")
    (tmp_path / "other.txt").write_text(corpus(1).upper(), encoding="utf-8")
    trained(tmp_path / "other.txt").save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "merges.txt", tmp_path / "a" / "merges.txt")
    with pytest.raises(ValueError, match=r"merges\.txt line 2 .* which is not in the vocabulary.*train-bpe"):
        Tokenizer.load(tmp_path / "a")


def test_load_refuses_a_truncated_merges_file(tmp_path, text_file):
    folder = tmp_path / "tok"
    trained(text_file).save(folder)
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "merges.txt").write_text("".join(lines[:-5]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"257 of them|5 token\(s\) come from no merge") as err:
        Tokenizer.load(folder)
    assert "the vocabulary holds 300 tokens" in str(err.value) and "train-bpe" in str(err.value)


def test_load_refuses_an_empty_merges_file(tmp_path, text_file):
    folder = tmp_path / "tok"
    trained(text_file).save(folder)
    (folder / "merges.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"1 special token\(s\) and 0 merge\(s\) make only 257 of them.*train-bpe"):
        Tokenizer.load(folder)


def test_load_refuses_a_folder_without_special_tokens_json(tmp_path, text_file):
    folder = tmp_path / "tok"
    trained(text_file).save(folder)
    (folder / "special_tokens.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no special_tokens\.json.*cs336 train-bpe"):
        Tokenizer.load(folder)


def test_save_refuses_what_load_would_refuse(tmp_path, text_file):
    tok = trained(text_file)
    loose = Tokenizer(tok.vocab, tok.merges, [])  # <|endoftext|> is in the vocabulary but no longer special
    with pytest.raises(ValueError, match="cannot save this tokenizer.*come from no merge"):
        loose.save(tmp_path / "tok")
    assert not (tmp_path / "tok").exists() and hidden(tmp_path) == []


def test_from_files_keeps_accepting_extra_tokens(tmp_path, text_file):
    # the handout's API: GPT-2-format files whose vocabulary holds tokens that are not declared special
    tok = trained(text_file)
    tok.save(tmp_path / "tok")
    loose = Tokenizer.from_files(tmp_path / "tok" / "vocab.json", tmp_path / "tok" / "merges.txt")
    assert loose.vocab == tok.vocab and loose.special_tokens == []


# ---------------------------------------------------------------- cs336 train-bpe
def train_bpe_args(text_file, out, vocab_size: int = 300) -> list[str]:
    return ["train-bpe", "--input", str(text_file), "--vocab-size", str(vocab_size), "--out", str(out), "--workers", "1",
            "--no-progress"]


@pytest.fixture
def no_training(monkeypatch):
    def must_not_train(*args, **kwargs):
        raise AssertionError("training started although --out cannot be written")

    monkeypatch.setattr("cs336_basics.bpe.train_bpe", must_not_train)


def test_train_bpe_refuses_a_path_through_a_file_before_training(tmp_path, text_file, capsys, no_training):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    assert main(train_bpe_args(text_file, tmp_path / "file" / "tok")) == 2
    err = one_line_error(capsys)
    assert "part of the path is a file" in err and str(tmp_path / "file" / "tok") in err


def test_train_bpe_refuses_a_read_only_out_before_training(tmp_path, text_file, capsys, monkeypatch, no_training):
    def read_only(folder):
        raise OSError(errno.EROFS, "Read-only file system", str(folder))

    monkeypatch.setattr(files, "check_writable", read_only)  # tests run as root: chmod would not bite
    assert main(train_bpe_args(text_file, tmp_path / "tok")) == 2
    assert "read-only" in one_line_error(capsys)
    assert not (tmp_path / "tok").exists()


def test_train_bpe_refuses_a_folder_holding_other_files_before_training(tmp_path, text_file, capsys, no_training):
    out = tmp_path / "results"
    out.mkdir()
    (out / "table.csv").write_text("a,b\n", encoding="utf-8")
    (out / "merges.txt").write_text("mine\n", encoding="utf-8")
    assert main(train_bpe_args(text_file, out)) == 2
    assert "holds other files (table.csv)" in one_line_error(capsys)
    assert snapshot(out) == {"merges.txt": b"mine\n", "table.csv": b"a,b\n"}


def test_train_bpe_full_disk_while_saving_keeps_the_old_tokenizer(tmp_path, text_file, capsys, monkeypatch):
    out = tmp_path / "tok"
    assert main(train_bpe_args(text_file, out)) == 0
    capsys.readouterr()
    before = snapshot(out)
    fail_writes(monkeypatch, "merges.txt", OSError(errno.ENOSPC, "No space left on device"))
    assert main(train_bpe_args(text_file, out, 320)) == 2
    monkeypatch.undo()
    assert "the disk is full" in one_line_error(capsys)
    assert snapshot(out) == before and hidden(tmp_path) == [] and hidden(out) == []
    assert len(Tokenizer.load(out).vocab) == 300


# ---------------------------------------------------------------- cs336 tokenize
def tokenize_args(tok_dir, text_file, out) -> list[str]:
    return ["tokenize", "--tokenizer", str(tok_dir), "--input", str(text_file), "--out", str(out), "--workers", "1",
            "--no-progress"]


def test_tokenize_refuses_an_unwritable_out_before_encoding(tmp_path, text_file, capsys, monkeypatch):
    trained(text_file).save(tmp_path / "tok")
    (tmp_path / "file").write_text("x", encoding="utf-8")

    def must_not_encode(*args, **kwargs):
        raise AssertionError("encoding started although --out cannot be written")

    monkeypatch.setattr(token_files_module, "tokenize_file", must_not_encode)
    assert main(tokenize_args(tmp_path / "tok", text_file, tmp_path / "file" / "ids.npy")) == 2
    assert "part of the path is a file" in one_line_error(capsys)


def test_tokenize_full_disk_keeps_the_old_npy(tmp_path, text_file, capsys, monkeypatch):
    trained(text_file).save(tmp_path / "tok")
    out = tmp_path / "ids.npy"
    assert main(tokenize_args(tmp_path / "tok", text_file, out)) == 0
    capsys.readouterr()
    before = out.read_bytes()
    real_header = token_files_module.npy_header

    def header_then_full(dtype, length, *args):  # the final header, after all the ids were written
        if length:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_header(dtype, length, *args)

    monkeypatch.setattr(token_files_module, "npy_header", header_then_full)
    assert main(tokenize_args(tmp_path / "tok", text_file, out)) == 2
    err = one_line_error(capsys)
    assert "the disk is full" in err and str(out) in err
    assert out.read_bytes() == before and hidden(tmp_path) == []


def test_tokenize_with_a_broken_tokenizer_folder_is_one_line(tmp_path, text_file, capsys):
    folder = tmp_path / "tok"
    trained(text_file).save(folder)
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "merges.txt").write_text("".join(lines[:-3]), encoding="utf-8")
    assert main(tokenize_args(folder, text_file, tmp_path / "ids.npy")) == 2
    err = one_line_error(capsys)
    assert "not one training's output" in err and "train-bpe" in err
    assert not (tmp_path / "ids.npy").exists()
