"""`cs336 pipeline --preset smoke` end to end on a corpus the test writes, re-runs that skip or
resume, `cs336 generate` on the run it made, and clear errors for bad paths and settings."""

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cs336_basics import cli
from cs336_basics.pipeline import evaluate_run

pytestmark = pytest.mark.slow  # end-to-end runs: `pytest -m "not slow"` leaves them out

EOT = "<|endoftext|>"
SMALL = ["--set", "model.vocab_size=320", "--set", "run.progress=false", "--sample-tokens", "24"]


def write_corpus(folder, n_train=500, n_valid=60, seed=0):
    """Tiny stories from a template grammar, separated by <|endoftext|>: structure a model can learn."""
    rng = random.Random(seed)
    names = ["Lily", "Tom", "Sue", "Max", "Anna", "Ben"]
    things = ["a red ball", "a big dog", "a small cat", "a blue kite", "a funny hat", "a café 🙂"]
    places = ["the park", "the garden", "the sea", "school", "the forest"]
    feelings = ["happy", "sad", "excited", "tired", "brave"]

    def story():
        a, b = rng.sample(names, 2)
        return (f"Once upon a time, {a} went to {rng.choice(places)} with {b}. "
                f"{a} found {rng.choice(things)}. {b} was {rng.choice(feelings)}. "
                f"They played together until the sun went down. The end.")

    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("valid", n_valid)):
        (folder / f"{name}.txt").write_text(EOT.join(story() for _ in range(n)) + EOT, encoding="utf-8")
    return folder


def run_cli(capsys, *args):
    status = cli.main(list(map(str, args)))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One pipeline run (max_steps 20), shared by the tests below."""
    root = tmp_path_factory.mktemp("pipeline")
    data = write_corpus(root / "data")
    out = root / "run"
    status = cli.main(["pipeline", "--preset", "smoke", "--data", str(data), "--out", str(out), *SMALL,
                       "--set", "schedule.max_steps=20"])
    assert status == 0
    return data, out


def test_pipeline_writes_every_output(smoke_run):
    data, out = smoke_run
    for rel in ("tokenizer/vocab.json", "tokenizer/merges.txt", "tokens/train.npy", "tokens/valid.npy",
                "config.toml", "metrics.jsonl", "checkpoints/latest.pt", "eval.json", "samples.txt",
                "learning_curves.png"):
        assert (out / rel).is_file(), rel
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.tmp"))
    scores = json.loads((out / "eval.json").read_text())
    assert scores["step"] == 20
    assert scores["val_loss"] < math.log(320)  # better than uniform over the vocabulary: it learned
    assert scores["bits_per_byte"] == pytest.approx(
        scores["val_loss"] * scores["valid_tokens"] / scores["valid_bytes"] / math.log(2))
    assert scores["valid_bytes"] == (data / "valid.txt").stat().st_size
    assert scores["weights"] == "trained" and "trained_val_loss" not in scores
    samples = (out / "samples.txt").read_text()
    assert samples.startswith("### prompt 'Once upon a time'") and "\nOnce upon a time" in samples
    assert (out / "learning_curves.png").read_bytes().startswith(b"\x89PNG")


def test_evaluation_matches_torch_cross_entropy_over_the_same_windows(smoke_run):
    _, out = smoke_run
    from cs336_basics.runs import load_model_from_run

    model, config = load_model_from_run(out)
    tokens = np.load(out / "tokens" / "valid.npy").astype(np.int64)
    ctx = config.model.context_length
    n = (len(tokens) - 1) // ctx
    x = torch.from_numpy(np.stack([tokens[i * ctx:(i + 1) * ctx] for i in range(n)]))
    y = torch.from_numpy(np.stack([tokens[i * ctx + 1:(i + 1) * ctx + 1] for i in range(n)]))
    with torch.no_grad():
        expected = F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
    scores = evaluate_run(out, out / "tokens" / "valid.npy", out.parent / "data" / "valid.txt")
    assert scores["eval_tokens"] == n * ctx
    assert scores["val_loss"] == pytest.approx(expected, rel=1e-5)


def test_a_run_with_a_weight_average_is_scored_on_it_and_on_the_trained_weights(tmp_path, capsys):
    data = write_corpus(tmp_path / "data", n_train=200, n_valid=30)
    out = tmp_path / "run"
    status, stdout, _ = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, "--out", out, *SMALL,
                                "--set", "schedule.max_steps=12", "--set", "optim.ema_halflife=4")
    assert status == 0
    scores = json.loads((out / "eval.json").read_text())
    assert scores["weights"] == "average"
    valid = (out / "tokens" / "valid.npy", data / "valid.txt")
    assert scores["val_loss"] == pytest.approx(evaluate_run(out, *valid)["val_loss"])
    trained = evaluate_run(out, *valid, average=False)
    assert trained["weights"] == "trained" and scores["trained_val_loss"] == pytest.approx(trained["val_loss"])
    assert scores["trained_val_loss"] != scores["val_loss"]
    assert "the weight average" in stdout and "trained weights:" in stdout


def test_rerun_skips_every_stage_then_resumes_a_longer_run(smoke_run, capsys):
    data, out = smoke_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    status, report, err = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, "--out", out, *SMALL,
                                  "--set", "schedule.max_steps=20")
    assert status == 0
    assert err.count("skipped") == 6
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != ".lock"} == before
    assert "bits/byte" in report and "sample:" in report

    # more steps: the tokenizer and token files are reused, training resumes, the rest is redone
    status, report, err = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, "--out", out, *SMALL,
                                  "--set", "schedule.max_steps=30")
    assert status == 0
    assert "[tokenizer] skipped" in err and "[tokenize] skipped" in err and "resuming at step 20" in err
    assert json.loads((out / "eval.json").read_text())["step"] == 30

    # another model in the same run directory: refused, with the difference named
    status, _, err = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, "--out", out, *SMALL,
                             "--set", "schedule.max_steps=30", "--set", "model.d_model=32")
    assert status == 2 and "d_model: 64 -> 32" in err
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 30


def test_generate_streams_a_reproducible_sample(smoke_run, capsys):
    _, out = smoke_run
    args = ["generate", "--run", out, "--prompt", "Once upon a time", "--max-new-tokens", 20, "--seed", 3]
    status, first, _ = run_cli(capsys, *args)
    assert status == 0 and first.startswith("Once upon a time") and len(first) > len("Once upon a time\n")
    _, again, _ = run_cli(capsys, *args)
    _, uncached, _ = run_cli(capsys, *args, "--no-kv-cache")
    assert first == again == uncached
    _, greedy, _ = run_cli(capsys, *args, "--temperature", 0)
    assert greedy.startswith("Once upon a time")


def test_generate_errors(smoke_run, tmp_path, capsys):
    _, out = smoke_run
    status, _, err = run_cli(capsys, "generate", "--run", tmp_path / "nope")
    assert status == 2 and "config.toml" in err
    status, _, err = run_cli(capsys, "generate", "--run", out, "--top-p", 0)
    assert status == 2 and "--top-p" in err
    status, _, err = run_cli(capsys, "generate", "--run", out, "--tokenizer", tmp_path / "none")
    assert status == 2 and "tokenizer" in err


def test_pipeline_bad_paths_and_settings_are_clear_errors(tmp_path, capsys):
    data = write_corpus(tmp_path / "data", n_train=5, n_valid=2)
    status, _, err = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", tmp_path / "missing", *SMALL)
    assert status == 2 and "train.txt not found" in err
    status, _, err = run_cli(capsys, "pipeline", "--preset", "nope", "--data", data)
    assert status == 2 and "no preset 'nope'" in err and "smoke" in err
    status, _, err = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, "--out", tmp_path / "r",
                             "--set", "model.vocab_size=256")
    assert status == 2 and "model.vocab_size" in err  # 256 bytes leave no room for <|endoftext|>
    status, _, err = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, "--out", tmp_path / "r",
                             *SMALL, "--set", "optim.nonsense=1")
    assert status == 2 and "nonsense" in err
    status, _, err = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, *SMALL, "--top-p", 1.5)
    assert status == 2 and "--top-p" in err
    (data / "valid.txt").write_text("")
    status, _, err = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, "--out", tmp_path / "r", *SMALL)
    assert status == 2 and "empty" in err


def test_default_data_is_downloaded_and_offline_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on: the "network" is unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CS336_DATA_URL", f"http://127.0.0.1:{port}/")
    status, _, err = run_cli(capsys, "pipeline", "--preset", "smoke", *SMALL)
    assert status == 2
    assert "network is unreachable" in err and "--data DIR" in err
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_run_tokenizer_is_found_when_the_config_path_is_relative_to_elsewhere(smoke_run, tmp_path, monkeypatch):
    import dataclasses

    from cs336_basics.config import load_config
    from cs336_basics.runs import load_run_tokenizer

    _, out = smoke_run
    config = load_config(out / "config.toml")
    moved = dataclasses.replace(config, data=dataclasses.replace(config.data, tokenizer="runs/elsewhere/tokenizer"))
    monkeypatch.chdir(tmp_path)  # as from a notebook folder: the relative path does not resolve here
    tok = load_run_tokenizer(out, moved)
    assert tok.vocab_size == 320
    with pytest.raises(FileNotFoundError, match="--tokenizer DIR"):
        load_run_tokenizer(tmp_path, moved)



def test_ctrl_c_during_training_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import cs336_basics.train as train_module

    def interrupted(config, resume=False):
        raise train_module.TrainingInterrupted(7, tmp_path / "run" / "checkpoints" / "latest.pt")

    monkeypatch.setattr(train_module, "train", interrupted)
    data = write_corpus(tmp_path / "data", n_train=40, n_valid=10)
    status, _, err = run_cli(capsys, "pipeline", "--preset", "smoke", "--data", data, "--out", tmp_path / "run", *SMALL)
    assert status == 130
    assert "interrupted at step 7" in err and "run the same command again to resume" in err
