"""`cs336_basics.experiments` and `cs336 experiments`: committed sweep results read back, one figure per
group, the experiment log (experiments/LOG.md), and the spec keys `question` and `conclusion`.

Every test builds small synthetic result folders in tmp_path, shaped like those `cs336 sweep` commits
(config.toml from a real config, metrics.jsonl, eval.json, env.json, status.json); nothing trains.
"""

import json
import math
import shutil
from pathlib import Path

import pytest

from cs336_basics import experiments as E
from cs336_basics.accounting import parameter_counts
from cs336_basics.config import config_to_toml, load_config
from cs336_basics.sweep import SweepError, load_spec
from test_pipeline import run_cli

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.toml"
BYTES_PER_TOKEN = 3.5
PNG = b"\x89PNG\r\n\x1a\n"
CARD = (700, 220)  # pixels of the "not run yet" card (7 x 2.2 inches at 100 dpi)


def size(png):
    """(width, height) of a PNG file, in pixels."""
    from PIL import Image

    with Image.open(png) as image:
        return image.size


def make_run(root, group, variant, overrides=(), *, final=4.0, steps=100, diverge_at=None, failed=False,
             bytes_per_token=BYTES_PER_TOKEN):
    """experiments/<group>/<variant>/ as a sweep leaves it: a loss curve that falls to ``final`` (or a run
    that diverges at step ``diverge_at``, or one that failed), logged every 10 steps, validated every 50."""
    folder = root / group / variant
    folder.mkdir(parents=True)
    config = load_config(SMOKE, list(overrides))
    (folder / "config.toml").write_text(config_to_toml(config))
    last = diverge_at or steps
    records = []
    for step in range(0, last + 1, 10):
        if diverge_at and step >= diverge_at:
            break
        loss = final + 4.0 * math.exp(-step / 25)
        record = {"step": step, "tokens": step * 512, "wallclock_s": 0.5 * step}
        if step:
            record |= {"train/loss": loss + 0.1, "lr": 1e-3}
        if step % 50 == 0:
            record |= {"val/loss": loss, "val/ema_loss": loss}
        records.append(record)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    status = {"group": group, "variant": variant, "status": "finished", "step": last, "val_loss": final,
              "bits_per_byte": final / math.log(2) / bytes_per_token, "wallclock_s": 0.5 * last,
              "command": f"cs336 train --config {SMOKE}", "message": ""}
    if diverge_at:
        status |= {"status": "diverged", "val_loss": None, "bits_per_byte": None,
                   "last_finite_loss": records[-1].get("train/loss"),
                   "message": f"loss became nan at step {diverge_at}; stopping"}
    elif failed:
        status |= {"status": "failed", "val_loss": None, "bits_per_byte": None,
                   "message": "out of memory (exit status 1; see runs/x/train.log)"}
    else:
        (folder / "eval.json").write_text(json.dumps({
            "val_loss": final, "bits_per_byte": final / math.log(2) / bytes_per_token,
            "bytes_per_token": bytes_per_token, "step": last}))
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "env.json").write_text(json.dumps({"device": "cpu", "cpu": "Test CPU", "torch_threads": 1,
                                                 "torch": "2.x", "date": "2026-12-07 08:00:00 UTC"}))
    return folder


def write_spec(root, name, group, variants, *, question=None, conclusion=None, base=SMOKE, common=()):
    lines = [f"group = {json.dumps(group)}", f"base = {json.dumps(str(base))}", f"set = {json.dumps(list(common))}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in (("question", question), ("conclusion", conclusion))
              if value is not None]
    lines += ["", "[variants]"] + [f"{v} = {json.dumps(list(o))}" for v, o in variants.items()]
    path = root / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


LR = {"lr_1e-3": ["optim.lr=1e-3"], "lr_1e-2": ["optim.lr=1e-2"], "lr_1": ["optim.lr=1"], "lr_3": ["optim.lr=3"]}
BATCH = {"b4_lr1e-3": ["data.batch_size=4", "optim.lr=1e-3"], "b4_lr3e-3": ["data.batch_size=4", "optim.lr=3e-3"],
         "b16_lr3e-3": ["data.batch_size=16", "optim.lr=3e-3"]}
ABLATIONS = {"baseline_seed1": ["optim.lr=1e-2", "run.seed=1"],
             "no_norm": ["model.norm=\"none\"", "optim.lr=1e-2"],
             "post_norm": ["model.norm=\"post\"", "optim.lr=1e-2"],
             "nope": ["model.positional=\"none\"", "optim.lr=1e-2"],
             "silu": ["model.ffn=\"silu\"", "model.d_ff=192", "optim.lr=1e-2"]}


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A folder like experiments/: five specs (a group with two) and their results, some missing; and
    their figures, drawn once (figures/07_<group>.png)."""
    root = tmp_path_factory.mktemp("repo") / "experiments"
    root.mkdir()
    write_spec(root, "learning_rate", "learning_rate", LR, question="Which learning rate is best?",
               conclusion="")
    for name, final in (("lr_1e-3", 4.4), ("lr_1e-2", 4.1)):
        make_run(root, "learning_rate", name, LR[name], final=final)
    make_run(root, "learning_rate", "lr_1", LR["lr_1"], diverge_at=40)  # lr_3: not run yet
    write_spec(root, "batch_size", "batch_size", BATCH, question="Which batch size?",
               conclusion="Batch 4 at lr 3e-3 reaches the lowest loss.")
    for (name, overrides), final in zip(BATCH.items(), (4.5, 4.3, 4.6)):
        make_run(root, "batch_size", name, overrides, final=final)
    write_spec(root, "ablations", "ablations", ABLATIONS, question="What does each piece do?")
    make_run(root, "ablations", "baseline_seed1", ABLATIONS["baseline_seed1"], final=4.15)
    make_run(root, "ablations", "no_norm", ABLATIONS["no_norm"], diverge_at=30)
    make_run(root, "ablations", "post_norm", ABLATIONS["post_norm"], failed=True, steps=20)
    make_run(root, "ablations", "nope", ABLATIONS["nope"], final=4.3)  # silu: not run yet
    write_spec(root, "main_experiment", "main_experiment", {"web": []}, question="How does web text compare?")
    write_spec(root, "main_experiment_english", "main_experiment", {"english": []},
               question="How does web text compare?")
    make_run(root, "main_experiment", "web", final=5.0, bytes_per_token=4.4)
    make_run(root, "main_experiment", "english", final=4.0, bytes_per_token=3.6)
    drawn = E.draw_figures(root, root.parent / "figures")
    return root, drawn


@pytest.fixture
def results(committed, tmp_path):
    """A copy of the committed folder that a test may change."""
    return Path(shutil.copytree(committed[0], tmp_path / "experiments"))


def test_load_group_reads_every_file_and_lists_the_variants_not_run_yet(results):
    runs = E.load_group("learning_rate", results, variants=list(LR))
    assert list(runs) == list(LR)
    assert [r.state for r in runs.values()] == ["finished", "finished", "diverged", E.NOT_RUN]
    lr = runs["lr_1e-2"]
    assert (lr.val_loss, lr.steps, lr.tokens, lr.wallclock_s) == (4.1, 100, 51_200, 50.0)
    assert lr.setting("optim.lr") == 1e-2 and lr.setting("data.batch_size") == 16
    assert lr.env["cpu"] == "Test CPU" and lr.eval["bytes_per_token"] == BYTES_PER_TOKEN
    assert lr.bits_per_byte == pytest.approx(4.1 / math.log(2) / BYTES_PER_TOKEN)
    diverged = runs["lr_1"]
    assert (diverged.val_loss, diverged.steps) == (None, 40) and diverged.status["last_finite_loss"] > 4
    missing = runs["lr_3"]
    assert (missing.config, missing.metrics, missing.steps, missing.val_loss) == ({}, [], 0, None)
    # without the spec's list: the result folders by name; a group without a folder: nothing
    assert list(E.load_group("learning_rate", results)) == ["lr_1", "lr_1e-2", "lr_1e-3"]
    assert E.load_group("leaderboard", results) == {}
    # with the specs: their variants in their order, those not run yet with the config they would run with
    planned = E.group_results("learning_rate", results)
    assert list(planned) == list(LR) and planned["lr_3"].state == E.NOT_RUN
    assert planned["lr_3"].setting("optim.lr") == 3 and planned["lr_3"].setting("model.d_model") == 64


def test_curves_against_step_tokens_and_wallclock_and_smoothing(results):
    run = E.load_result(results / "learning_rate" / "lr_1e-2")
    steps, vals = E.curve(run, "val/loss")
    assert steps == [0, 50, 100]
    assert vals[0] == pytest.approx(8.1) and vals[-1] == pytest.approx(4.1 + 4 * math.exp(-4))
    assert E.curve(run, "val/loss", x="tokens")[0] == [0, 25_600, 51_200]
    assert E.curve(run, "val/loss", x="wallclock_s")[0] == [0, 25.0, 50.0]
    xs, train = E.curve(run, "train/loss")
    assert xs[0] == 10 and len(xs) == 10  # step 0 has no training loss
    smoothed = E.curve(run, "train/loss", smoothing=0.9)[1]
    assert smoothed[0] == train[0] and all(s > t for s, t in zip(smoothed[1:], train[1:]))  # lags a falling curve
    assert E.smooth([4.0, 2.0, 2.0], 0.5) == pytest.approx([4.0, 8 / 3, 16 / 7])
    assert E.bits_per_byte(4.1, BYTES_PER_TOKEN) == pytest.approx(run.bits_per_byte)


def test_ablation_baselines_and_panels_are_found_from_the_configs(results):
    runs = E.load_group("ablations", results)
    assert {name: E.ablation_panel(r) for name, r in runs.items()} == {
        "baseline_seed1": None, "no_norm": "layer_norm", "post_norm": "pre_norm", "nope": "no_pos_emb"}
    # the learning_rate run with the same recipe (lr 1e-2, seed 0) joins the seed-1 baseline, first
    assert [(b.group, b.variant) for b in E.ablation_baselines(results)] == [
        ("learning_rate", "lr_1e-2"), ("ablations", "baseline_seed1")]
    # before any baseline of its own has run, the spec says what the baseline is
    (results / "ablations" / "baseline_seed1" / "config.toml").unlink()
    (results / "ablations" / "baseline_seed1" / "status.json").unlink()
    (results / "ablations" / "baseline_seed1" / "metrics.jsonl").unlink()
    assert [(b.group, b.variant) for b in E.ablation_baselines(results)][0] == ("learning_rate", "lr_1e-2")


def test_a_run_with_another_switch_is_neither_a_baseline_nor_hidden(results, tmp_path):
    make_run(results, "ablations", "qk_norm", ["model.qk_norm=true", "optim.lr=1e-2"], final=4.12)
    runs = E.load_group("ablations", results)
    assert E.ablation_panel(runs["qk_norm"]) == E.OTHER
    assert "qk_norm" not in [b.variant for b in E.ablation_baselines(results)]
    both = E.plot_ablations(results, tmp_path / "five.png")  # a fifth panel, "other switches"
    four = E.plot_ablations(results, tmp_path / "four.png", panels=tuple(E.ABLATIONS))
    assert size(both)[1] == size(four)[1] * 3 // 2  # three rows of panels instead of two


def test_best_learning_rate_per_batch_size(results):
    runs = list(E.load_group("batch_size", results).values())
    assert {b: r.variant for b, r in E.best_per_batch_size(runs).items()} == {4: "b4_lr3e-3", 16: "b16_lr3e-3"}


def test_each_group_gets_its_figure(committed, results, tmp_path):
    root, drawn = committed
    figures = root.parent / "figures"
    groups = ("learning_rate", "batch_size", "ablations", "main_experiment")
    assert drawn == {g: figures / f"07_{g}.png" for g in groups}
    assert sorted(p.name for p in figures.iterdir()) == sorted(p.name for p in drawn.values())  # no temporaries
    make_run(results, "other", "a", final=4.2)  # any other group: the generic curves
    other = E.plot_group("other", results, tmp_path / "07_other.png")
    for path in [*drawn.values(), other]:
        assert path.read_bytes().startswith(PNG) and size(path)[0] >= 1000, path  # panels, not a "not run yet" card


def test_a_group_not_run_yet_is_a_card_not_an_error(results, tmp_path):
    empty = E.plot_group("leaderboard", results, tmp_path / "leaderboard.png")
    assert empty.read_bytes().startswith(PNG) and size(empty) == CARD
    for name in ("web", "english"):
        for file in (results / "main_experiment" / name).iterdir():
            file.unlink()
    assert size(E.plot_main_experiment(results, tmp_path / "main.png")) == CARD
    assert E.draw_figures(results, tmp_path / "figures", ["main_experiment", "leaderboard"]) == {
        "main_experiment": None, "leaderboard": None}
    assert not (tmp_path / "figures").exists()  # a group without results gets no figure


def section(log, group):
    """One group's part of the log."""
    start = log.index(f"\n## {group}")
    end = log.find("\n## ", start + 1)
    return log[start:end if end > 0 else None]


def test_the_log_has_question_command_table_figure_and_conclusion(committed, tmp_path):
    results = committed[0]
    log_path = E.write_log(results, tmp_path / "LOG.md", results.parent / "figures")
    assert log_path == tmp_path / "LOG.md" and log_path.is_file()
    log = E.format_log(results, results.parent / "figures")  # (links relative to experiments/)
    assert log.startswith("# Experiment log")
    assert [line[3:].split(" (")[0] for line in log.splitlines() if line.startswith("## ")] == [
        "learning_rate", "batch_size", "ablations", "main_experiment"]  # the handout's order

    lr = section(log, "learning_rate")
    assert "**Question.** Which learning rate is best?" in lr
    assert f"**Command.** `uv run cs336 sweep {(results / 'learning_rate.toml').as_posix()} --experiments" in lr
    assert "| lr_1e-2 | finished | 100 | 0.05 M | 4.1000 | " in lr
    assert "| lr_1 | diverged | 40 | " in lr and "diverged at step 40, last finite loss " in lr
    assert "| lr_3 | not run yet | - |" in lr
    assert "![learning_rate](../figures/07_learning_rate.png)" in lr
    assert "**Conclusion.** *to be written.*" in lr
    assert "**Machine.** Test CPU (cpu, 1 thread(s) a run" in lr

    assert "**Conclusion.** Batch 4 at lr 3e-3 reaches the lowest loss." in section(log, "batch_size")

    ab = section(log, "ablations")
    assert "(layer_norm_ablation, pre_norm_ablation, no_pos_emb, swiglu_ablation)" in ab
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in ab.splitlines() if line.startswith("| ")}
    assert list(rows)[1:] == ["learning_rate/lr_1e-2", *ABLATIONS]  # the baseline from learning_rate first
    counts = {name: parameter_counts(load_config(SMOKE, ABLATIONS[name]).model.as_kwargs())["total"]
              for name in ABLATIONS}
    assert len(set(counts.values())) > 2  # (no norm, post-norm's missing final norm, SiLU's own width)
    for name in ABLATIONS:  # silu from its spec: not run yet
        assert rows[name][7] == f"{counts[name]:,}"
    assert rows["post_norm"][1] == "failed" and "out of memory" in rows["post_norm"][8]
    assert rows["silu"][1:3] == ["not run yet", "-"]

    main = section(log, "main_experiment")
    assert "main_experiment.toml" in main and "main_experiment_english.toml" in main
    assert main.count("**Question.** How does web text compare?") == 1  # the same question once


def test_a_finished_run_whose_evaluation_failed_says_so(results, tmp_path):
    run = results / "learning_rate" / "lr_1e-3"
    (run / "eval.json").unlink()
    status = json.loads((run / "status.json").read_text())
    status |= {"bits_per_byte": None, "message": "the evaluation failed: ConfigError: unknown config key x"}
    (run / "status.json").write_text(json.dumps(status))
    row = next(line for line in E.format_log(results, tmp_path).splitlines() if line.startswith("| lr_1e-3 |"))
    assert row.split(" | ")[1:] == ["finished", "100", "0.05 M", "4.4000", "-", "50 s",
                                    "the evaluation failed: ConfigError: unknown config key x |"]


def test_a_group_without_results_is_not_run_yet_in_the_log(results, tmp_path):
    write_spec(results, "leaderboard", "leaderboard", {"mine": []}, question="How low in 1.5 hours?")
    log = E.format_log(results, tmp_path / "figures")
    board = section(log, "leaderboard")
    assert "| mine | not run yet |" in board and "*Not run yet:* no results in" in board
    assert "![" not in board


def test_cs336_experiments_redraws_the_figures_and_rewrites_the_log(results, tmp_path, capsys):
    figures, log = tmp_path / "figures", tmp_path / "out" / "LOG.md"
    log.parent.mkdir()
    for name in ("web", "english"):  # (a group without results: no figure, said so)
        shutil.rmtree(results / "main_experiment" / name)
    code, out, err = run_cli(capsys, "experiments", "--experiments", results, "--figures", figures, "--log", log)
    assert code == 0, err
    assert f"learning_rate: {figures / '07_learning_rate.png'} (3 runs)" in out
    assert "main_experiment: not run yet (no results in" in out
    assert f"log: {log}" in out and "![ablations](../figures/07_ablations.png)" in log.read_text()
    assert sorted(p.name for p in figures.iterdir()) == ["07_ablations.png", "07_batch_size.png",
                                                         "07_learning_rate.png"]
    # one group: one figure; the log is written whole
    log.unlink()
    code, out, _ = run_cli(capsys, "experiments", "--experiments", results, "--figures", tmp_path / "one",
                           "--group", "batch_size", "--log", log)
    assert code == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["07_batch_size.png"]
    assert "## ablations" in log.read_text()
    # a folder that does not exist, a malformed spec: one line each, exit status 2
    code, _, err = run_cli(capsys, "experiments", "--experiments", tmp_path / "nowhere")
    assert code == 2 and "no folder" in err and "--experiments DIR" in err
    (results / "bad.toml").write_text('group = "g"\nbase = "smoke"\nquestion = 3\n[variants]\na = []\n')
    code, _, err = run_cli(capsys, "experiments", "--experiments", results, "--figures", figures)
    assert code == 2 and "question must be a string" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("line, message", [
    ("question = 3", "question must be a string in quotes"),
    ("conclusion = [\"a\"]", "conclusion must be a string in quotes"),
])
def test_the_spec_keys_question_and_conclusion(tmp_path, capsys, line, message):
    spec = write_spec(tmp_path, "ok", "g", {"a": []}, question="  Why?  ", conclusion="Because.")
    loaded = load_spec(spec)
    assert (loaded.question, loaded.conclusion) == ("Why?", "Because.")
    assert load_spec(write_spec(tmp_path, "plain", "g", {"a": []})).question == ""
    bad = tmp_path / "bad.toml"
    bad.write_text(f'group = "g"\nbase = "smoke"\n{line}\n[variants]\na = []\n')
    with pytest.raises(SweepError, match=message):
        load_spec(bad)
    code, _, err = run_cli(capsys, "sweep", bad, "--list")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
