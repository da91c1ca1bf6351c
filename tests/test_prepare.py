"""`cs336 prepare PRESET`: the tokenizer and token files a preset trains on, written where its
[data] paths look, so that `cs336 train --config configs/PRESET.toml` runs as it is."""

from pathlib import Path

import pytest

from download_server import serve
from test_pipeline import run_cli, write_corpus

REPO = Path(__file__).resolve().parent.parent
SMOKE = str(REPO / "configs" / "smoke.toml")
VOCAB = ["--set", "model.vocab_size=320"]


def files_in(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


@pytest.mark.slow  # trains a few steps
def test_prepare_then_train_the_preset_as_it_is(tmp_path, capsys, monkeypatch):
    text = write_corpus(tmp_path / "text", n_train=300, n_valid=40)
    monkeypatch.chdir(tmp_path)  # the preset's paths (data/smoke/...) are relative to here
    status, out, err = run_cli(capsys, "prepare", "smoke", "--data", text, *VOCAB)
    assert status == 0, err
    folder = Path("data/smoke")
    assert (folder / "tokenizer" / "vocab.json").is_file()
    assert (folder / "tokens" / "train.npy").is_file() and (folder / "tokens" / "valid.npy").is_file()
    assert "data folder: data/smoke" in out

    status, _, err = run_cli(capsys, "train", "--config", SMOKE, *VOCAB, "--set", "schedule.max_steps=3",
                             "--set", "run.progress=false", "--set", "run.out_dir=runs/smoke")
    assert status == 0, err
    assert (tmp_path / "runs" / "smoke" / "checkpoints" / "latest.pt").is_file()

    status, out, _ = run_cli(capsys, "prepare", "smoke", "--data", text, *VOCAB)  # again: nothing to do
    assert status == 0 and out.count("skipped") == 2


def test_other_settings_into_a_prepared_folder_are_refused_and_change_nothing(tmp_path, capsys, monkeypatch):
    text = write_corpus(tmp_path / "text", n_train=300, n_valid=40)
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "prepare", "smoke", "--data", text, *VOCAB)[0] == 0
    before = files_in(tmp_path / "data" / "smoke")
    status, _, err = run_cli(capsys, "prepare", "smoke", "--data", text, "--set", "model.vocab_size=300")
    assert status == 2 and "tokenizer stage" in err and "vocab_size" in err
    assert files_in(tmp_path / "data" / "smoke") == before


def test_missing_text_and_paths_off_the_layout_are_one_line_each(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, "prepare", "smoke", *VOCAB)
    assert status == 2 and "data/smoke has no train.txt and valid.txt" in err and "--data DIR" in err
    status, _, err = run_cli(capsys, "prepare", "smoke", *VOCAB, "--set", "data.train_tokens=elsewhere/train.npy")
    assert status == 2 and "data.train_tokens = 'elsewhere/train.npy'" in err
    assert "Traceback" not in err and not (tmp_path / "data").exists()


def test_a_data_set_folder_is_downloaded_first(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    into_tinystories = ["--set", "data.tokenizer=data/tinystories/tokenizer",
                        "--set", "data.train_tokens=data/tinystories/tokens/train.npy",
                        "--set", "data.valid_tokens=data/tinystories/tokens/valid.npy"]
    with serve(monkeypatch) as server:
        monkeypatch.setenv("CS336_DATA_URL", server.url)
        status, out, err = run_cli(capsys, "prepare", "smoke", *VOCAB, *into_tinystories)
    assert status == 0, err
    folder = tmp_path / "data" / "tinystories"
    assert (folder / "train.txt").read_bytes() == server.files["TinyStoriesV2-GPT4-train.txt"]
    assert (folder / "tokens" / "valid.npy").is_file() and "data folder: data/tinystories" in out


@pytest.mark.parametrize("preset", ["cpu", "cpu_web", "cpu_leaderboard", "tinystories", "owt", "leaderboard"])
def test_every_data_preset_follows_the_layout(preset):
    from cs336_basics.config import load_config

    data = load_config(REPO / "configs" / f"{preset}.toml").data
    folder = Path(data.tokenizer).parent
    assert Path(data.train_tokens) == folder / "tokens" / "train.npy"
    assert Path(data.valid_tokens) == folder / "tokens" / "valid.npy"
