"""`cs336 sweep`: the variants of a preset trained side by side, a diverged run kept as a result,
re-runs that skip, resume or refuse, and the small files copied to the experiments folder.

The runs are real `cs336 train` processes on a tiny model and random token ids (the `token_files`
of test_time_budget); each process spends most of its few seconds importing torch.
"""

import io
import json
import math
import shutil
import time
from pathlib import Path

import pytest

from cs336_basics import sweep
from test_pipeline import run_cli
from test_time_budget import token_files  # noqa: F401  (a fixture: train.npy and valid.npy, ids < 256)

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.toml"
TINY = ["model.d_model=32", "model.num_layers=1", "model.d_ff=64", "model.num_heads=2",
        "model.context_length=16", "data.batch_size=4", "run.eval_batches=1"]
VARIANTS = {"lr_3e-3": ["optim.lr=3e-3"], "lr_1e-2": ["optim.lr=1e-2"], "lr_1e30": ["optim.lr=1e30"]}


def write_spec(path, *, group="lr", data=None, valid_text=None, runs=None, common=(), variants=VARIANTS,
               base=SMOKE, extra=""):
    """A spec file (TOML) with these keys; returns its path."""
    q = json.dumps  # a TOML basic string is a JSON string
    lines = [f"group = {q(group)}", f"base = {q(str(base))}"]
    lines += [f"{key} = {q(str(value))}" for key, value in (("data", data), ("valid_text", valid_text),
                                                           ("runs", runs)) if value is not None]
    lines += [f"set = {q([*TINY, *common])}", extra, "", "[variants]"]
    lines += [f"{name} = {q(overrides)}" for name, overrides in variants.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def files_in(folder):
    """{relative path: (bytes, mtime)} of every file under folder (the writer locks aside)."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != ".lock"}


def metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def status(run_dir):
    return json.loads((Path(run_dir) / "status.json").read_text())


@pytest.fixture
def no_training(monkeypatch):
    """Starting any process fails the test: a sweep with nothing to do must not train."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args[0]}")
    monkeypatch.setattr(sweep.subprocess, "Popen", refuse)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, token_files):  # noqa: F811
    """One sweep of three variants (6 steps; lr 1e30 diverges), three runs side by side."""
    root = tmp_path_factory.mktemp("sweep")
    valid_text = root / "valid.txt"
    valid_text.write_text("x" * 3000, encoding="utf-8")  # only its size matters: bits per byte
    spec = write_spec(root / "lr.toml", data=token_files, valid_text=valid_text, runs=root / "runs",
                      common=["schedule.max_steps=6", "run.log_every=2", "run.eval_every=6",
                              "run.checkpoint_every=2"])
    out = io.StringIO()
    results = sweep.run_sweep(spec, jobs=3, experiments=root / "experiments", out=out)
    return spec, root / "runs" / "lr", root / "experiments" / "lr", results, out.getvalue()


@pytest.mark.slow  # three training processes
def test_a_sweep_trains_every_variant_and_records_the_diverged_one(swept):
    spec, runs, _, results, out = swept
    assert [r["variant"] for r in results] == list(VARIANTS)
    assert [r["status"] for r in results] == ["finished", "finished", "diverged"], out
    for name in ("lr_3e-3", "lr_1e-2"):
        run = runs / name
        scores = json.loads((run / "eval.json").read_text())
        assert math.isfinite(scores["val_loss"]) and math.isfinite(scores["bits_per_byte"])
        done = status(run)
        assert done["step"] == 6 == metrics(run)[-1]["step"]
        assert (done["val_loss"], done["bits_per_byte"]) == (scores["val_loss"], scores["bits_per_byte"])
        assert f"optim.lr={name[3:]}" in done["command"]
        # one thread each, whatever the preset says
        assert json.loads((run / "env.json").read_text())["torch_threads"] == 1
        assert "num_threads = 1" in (run / "config.toml").read_text()
        assert f"{name}: finished at step 6, val loss {scores['val_loss']:.3f}" in out

    diverged = runs / "lr_1e30"
    record = status(diverged)
    losses = [r["train/loss"] for r in metrics(diverged) if "train/loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)  # metrics.jsonl stops before the NaN
    assert record["step"] > 2 and record["last_finite_loss"] == losses[-1]
    assert "loss became" in record["message"] and record["val_loss"] is None
    assert not (diverged / "eval.json").exists()
    assert f"lr_1e30: diverged at step {record['step']} (last finite loss {losses[-1]:.3f})" in out
    assert "3 run(s), 3 at a time" in out and out.rstrip().splitlines()[-1].split()[:3] == [
        "lr_1e30", "diverged", str(record["step"])]


@pytest.mark.slow
def test_the_experiments_folder_holds_exactly_the_small_files(swept):
    _, runs, kept, _, _ = swept
    assert sorted(p.name for p in kept.iterdir()) == sorted(VARIANTS)
    for name in VARIANTS:
        expected = set(sweep.RESULT_FILES) - ({"eval.json"} if name == "lr_1e30" else set())
        assert {p.name for p in (kept / name).iterdir()} == expected
        for file in expected:
            assert (kept / name / file).read_bytes() == (runs / name / file).read_bytes()
    assert (runs / "lr_3e-3" / "checkpoints" / "latest.pt").is_file()  # (the run folder keeps them)
    assert not [p for p in kept.rglob("*") if p.suffix in (".pt", ".npy", ".log")]


@pytest.mark.slow
def test_running_it_again_skips_the_finished_and_diverged_runs(swept, capsys, no_training, tmp_path):
    spec, runs, kept, _, _ = swept
    before = files_in(runs), files_in(kept)
    start = time.perf_counter()
    code, out, err = run_cli(capsys, "sweep", spec, "--experiments", kept.parent)
    assert code == 0, err
    assert time.perf_counter() - start < 10
    assert out.count("skipped (finished before)") == 2 and "lr_1e30: skipped (diverged before)" in out
    assert (files_in(runs), files_in(kept)) == before  # nothing trained, evaluated or copied again
    # another experiments folder gets the results of the skipped runs too
    code, _, err = run_cli(capsys, "sweep", spec, "--experiments", tmp_path / "elsewhere")
    assert code == 0, err
    elsewhere = {p: data for p, (data, _) in files_in(tmp_path / "elsewhere" / "lr").items()}
    assert elsewhere == {p: data for p, (data, _) in before[1].items()}


@pytest.mark.slow
def test_a_fresh_clone_with_the_committed_results_runs_only_what_is_missing(swept, capsys, no_training, tmp_path):
    spec, runs, kept, _, _ = swept
    before = files_in(kept)
    # no run folders (they are never committed); a changed variant is not taken for its old result
    text = spec.read_text().replace(str(runs.parent), str(tmp_path / "fresh_runs"))
    (tmp_path / "lr.toml").write_text(text.replace('["optim.lr=1e-2"]', '["optim.lr=2e-2"]'))
    with pytest.raises(AssertionError, match="a process was started"):
        run_cli(capsys, "sweep", tmp_path / "lr.toml", "--experiments", kept.parent)
    out = capsys.readouterr().out
    assert f"lr_3e-3: skipped (its result is in {kept / 'lr_3e-3'}" in out
    assert f"lr_1e30: skipped (its result is in {kept / 'lr_1e30'}" in out and "lr_1e-2: skipped" not in out
    assert files_in(kept) == before


@pytest.mark.slow  # one training process
def test_reproduce_trains_a_variant_again_and_compares_it_with_the_committed_result(swept, capsys, tmp_path,
                                                                                    monkeypatch):
    spec, runs, kept, _, _ = swept
    monkeypatch.chdir(tmp_path)  # runs/reproduce/ is relative to the current folder
    before = files_in(runs), files_in(kept)
    code, out, err = run_cli(capsys, "sweep", spec, "--experiments", kept.parent, "--reproduce", "lr_3e-3")
    assert code == 0, err
    assert "lr_3e-3: committed" in out and ": reproduced" in out, out
    assert (tmp_path / "runs" / "reproduce" / "lr" / "lr_3e-3" / "eval.json").is_file()
    assert (files_in(runs), files_in(kept)) == before  # the sweep's runs and the committed results untouched
    # a committed result that the run does not reproduce: exit status 1 (the finished re-run is reused)
    tampered = tmp_path / "tampered"
    shutil.copytree(kept, tampered / "lr")
    record_path = tampered / "lr" / "lr_3e-3" / "eval.json"
    record = json.loads(record_path.read_text())
    record["bits_per_byte"] += 0.05
    record_path.write_text(json.dumps(record))

    def refuse(*args, **kwargs):
        raise AssertionError("the finished re-run should have been reused")
    monkeypatch.setattr(sweep.subprocess, "Popen", refuse)
    code, out, _ = run_cli(capsys, "sweep", spec, "--experiments", tampered, "--reproduce", "lr_3e-3")
    assert code == 1 and "(-0.0500): NOT reproduced" in out, out


def test_reproduce_names_the_variants_a_spec_has(swept_spec_only, capsys, no_training):
    code, _, err = run_cli(capsys, "sweep", swept_spec_only, "--reproduce", "lr_5e-3")
    assert code == 2 and "no variant 'lr_5e-3'; it has lr_3e-3, lr_1e-2, lr_1e30" in err, err


@pytest.fixture
def swept_spec_only(tmp_path):
    return write_spec(tmp_path / "lr.toml", runs=tmp_path / "runs")


@pytest.mark.slow
def test_a_variant_whose_settings_changed_is_refused_and_nothing_runs(swept, capsys, no_training):
    spec, runs, kept, _, _ = swept
    before = files_in(runs), files_in(kept)
    changed = VARIANTS | {"lr_1e30": ["optim.lr=2e-2"], "lr_5e-3": ["optim.lr=5e-3"]}  # + a new one
    other = spec.parent / "changed.toml"
    other.write_text(spec.read_text().split("[variants]")[0] + "[variants]\n"
                     + "".join(f"{k} = {json.dumps(v)}\n" for k, v in changed.items()))
    code, out, err = run_cli(capsys, "sweep", other, "--experiments", kept.parent)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("cs336 sweep: error: variant lr_1e30 (optim.lr: 1e+30 -> 0.02)")
    assert f"Delete {runs / 'lr_1e30'} to run it again" in err and "new variant name" in err
    assert "lr_3e-3" not in err and "lr_1e-2" not in err
    assert (files_in(runs), files_in(kept)) == before and not (runs / "lr_5e-3").exists()


@pytest.mark.slow
def test_list_prints_the_table_and_runs_nothing(swept, capsys, no_training, tmp_path):
    spec, runs, kept, _, _ = swept
    code, out, err = run_cli(capsys, "sweep", spec, "--list", "--experiments", kept.parent)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "sweep lr:" and lines[1].split() == ["variant", "status", "steps", "val", "loss",
                                                             "bits/byte", "wall-clock", "s"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    finished = json.loads((runs / "lr_3e-3" / "eval.json").read_text())
    assert rows["lr_3e-3"][1:4] == ["finished", "6", f"{finished['val_loss']:.4f}"]
    assert rows["lr_1e30"][1:5] == ["diverged", str(status(runs / "lr_1e30")["step"]), "-", "-"]
    # without the run folders (a fresh clone): from the experiments folder; a new variant: not run
    text = spec.read_text().replace(str(runs.parent), str(tmp_path / "no_runs"))
    (tmp_path / "lr.toml").write_text(text + 'lr_5e-3 = ["optim.lr=5e-3"]\n')
    code, out2, _ = run_cli(capsys, "sweep", tmp_path / "lr.toml", "--list", "--experiments", kept.parent)
    assert code == 0 and out2.splitlines()[2:5] == lines[2:5]
    assert out2.splitlines()[5].split()[:3] == ["lr_5e-3", "not", "run"]


@pytest.mark.slow  # two sweeps, three training processes
def test_ctrl_c_stops_the_runs_with_a_checkpoint_and_the_same_command_resumes(token_files, tmp_path,  # noqa: F811
                                                                              monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the defaults: runs/sweeps/ and experiments/ here
    spec = write_spec(tmp_path / "long.toml", group="long", data=token_files,
                      common=["schedule.max_steps=300", "run.log_every=10", "run.eval_every=300",
                              "run.checkpoint_every=10"],
                      variants={"long": ["optim.lr=3e-3"], "later": ["optim.lr=1e-2"]})
    run = tmp_path / "runs" / "sweeps" / "long" / "long"
    # Ctrl-C: a KeyboardInterrupt in the sweep's main thread while it waits for its runs, once the
    # first run has a checkpoint (raised there, not sent as a signal, so it cannot land elsewhere)
    pressed, watch = [], sweep._Runner.watch

    def watch_then_ctrl_c(self, positions):
        watch(self, positions)
        if not pressed and (run / "checkpoints" / "latest.pt").exists():
            pressed.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "POLL_S", 0.02)
    monkeypatch.setattr(sweep._Runner, "watch", watch_then_ctrl_c)
    code, out, err = run_cli(capsys, "sweep", spec, "--jobs", "1")
    assert code == 130 and pressed, out + err
    assert "Ctrl-C: every run saves a checkpoint and stops" in out
    stopped = status(run)
    assert stopped["status"] == "interrupted" and 10 <= stopped["step"] < 300, stopped
    assert "checkpoint saved" in stopped["message"]
    assert status(tmp_path / "experiments" / "long" / "long") == stopped
    assert not (run.parent / "later").exists()  # started no more runs after the Ctrl-C
    assert [line.split()[:2] for line in out.splitlines()[-2:]] == [["long", "interrupted"], ["later", "not"]]
    before = metrics(run)

    monkeypatch.setattr(sweep._Runner, "watch", watch)
    code, out, err = run_cli(capsys, "sweep", spec, "--jobs", "2")
    assert code == 0, out + err
    assert f"long: resuming from step {stopped['step']}" in out and "later: starting" in out
    assert status(run)["status"] == "finished" and status(run)["step"] == 300
    assert status(run.parent / "later")["status"] == "finished"
    attempts = [line for line in (run / "train.log").read_text().splitlines() if line.startswith("$ ")]
    assert len(attempts) == 2 and "--resume" not in attempts[0] and attempts[1].endswith("--resume")
    after = metrics(run)
    assert after[:len(before)] == before  # the first part kept as it was, then on from the checkpoint
    steps = [r["step"] for r in after]
    assert steps == sorted(set(steps)) and steps[-1] == 300


@pytest.mark.parametrize("spec_text, message", [
    ('group = "g"\nbase = "smoke"\nsett = []\n[variants]\na = []\n', "unknown key 'sett'; a spec has group, base"),
    ('group = "g"\n[variants]\na = []\n', '`base = "..."` is missing (e.g. base = "cpu")'),
    ('group = "g"\nbase = "no_such_preset"\n[variants]\na = []\n', "base: no preset 'no_such_preset'"),
    ('group = "g"\nbase = "smoke"\n[variants]\na = []\nset = ["optim.lr=1"]\n',
     "'set' is in [variants]: move `set = ...` above the [variants] line"),
    ('group = "g"\nbase = "smoke"\n', "no [variants]"),
    ('group = "g"\nbase = "smoke"\n[variants]\na = "optim.lr=1e-3"\n', 'variant a must be a list of "section.key=value"'),
    ('group = "g"\nbase = "smoke"\n[variants]\na = ["optim.nope=1"]\n', "variant a: "),
    ('group = "g/../x"\nbase = "smoke"\n[variants]\na = []\n', "must be a plain name"),
    ('group = "g"\nbase = "smoke"\n[variants\n', "not valid TOML"),
], ids=["unknown_key", "no_base", "unknown_preset", "set_below_variants", "no_variants", "variant_not_a_list",
        "unknown_setting", "group_not_a_name", "not_toml"])
def test_a_malformed_spec_is_one_clear_error(spec_text, message, tmp_path, monkeypatch, capsys, no_training):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.toml").write_text(spec_text)
    code, out, err = run_cli(capsys, "sweep", "spec.toml")
    assert code == 2 and message in err, err
    assert err.startswith("cs336 sweep: error: spec.toml") or err.startswith("cs336 sweep: error: variant a: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]  # nothing written


def test_missing_token_files_and_bad_jobs_are_refused_before_anything_runs(tmp_path, monkeypatch, capsys,
                                                                           no_training):
    monkeypatch.chdir(tmp_path)  # the smoke preset's token files (data/smoke/tokens/) are not here
    write_spec(tmp_path / "spec.toml", base="smoke", variants={"a": []})
    code, _, err = run_cli(capsys, "sweep", "spec.toml")
    assert code == 2 and "data/smoke/tokens/train.npy does not exist (data.train_tokens of variant a)" in err
    assert "`cs336 prepare smoke`" in err
    code, _, err = run_cli(capsys, "sweep", "spec.toml", "--jobs", "0")
    assert code == 2 and "--jobs 0 must be at least 1" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_a_data_folder_in_the_prepare_layout_is_found(tmp_path):
    (tmp_path / "data" / "tokens").mkdir(parents=True)
    for name in ("train.npy", "valid.npy"):
        (tmp_path / "data" / "tokens" / name).write_bytes(b"")
    spec = sweep.load_spec(write_spec(tmp_path / "spec.toml", data=tmp_path / "data", runs=tmp_path / "runs"))
    config = sweep.plan_runs(spec, cuda=False)[0].config
    assert config.data.train_tokens == str(tmp_path / "data" / "tokens" / "train.npy")
    assert config.data.valid_tokens == str(tmp_path / "data" / "tokens" / "valid.npy")
