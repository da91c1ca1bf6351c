"""Learning curves from metrics.jsonl: reading, plotting, `cs336 plot`, and clear errors."""

import json

import matplotlib
import pytest

from cs336_basics import cli
from cs336_basics.plotting import plot_learning_curves, read_metrics, series

matplotlib.use("Agg")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(folder, steps=20, wall_per_step=0.5, start_loss=9.0):
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(steps):
        rec = {"step": step, "wallclock_s": step * wall_per_step, "train/loss": start_loss - 0.2 * step,
               "lr": 1e-3}
        lines.append(json.dumps(rec))
        if step % 5 == 0:
            lines.append(json.dumps({"step": step, "wallclock_s": step * wall_per_step,
                                     "val/loss": start_loss - 0.18 * step, "val/ppl": 1.0}))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_series_picks_points_that_have_the_key():
    recs = [{"step": 0, "train/loss": 3.0}, {"step": 1, "val/loss": 2.0},
            {"step": 2, "train/loss": float("nan")}, {"step": 3, "train/loss": 1.0}]
    assert series(recs, "train/loss") == ([0, 3], [3.0, 1.0])
    assert series(recs, "val/loss") == ([1], [2.0])


def test_plot_two_runs_writes_a_png_and_no_temporary(tmp_path):
    a = _write_run(tmp_path / "a")
    b = _write_run(tmp_path / "b", wall_per_step=60.0, start_loss=8.0)  # minutes on the time axis
    out = plot_learning_curves([a, b / "metrics.jsonl"], tmp_path / "fig" / "curves.png", title="t")
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in out.parent.iterdir()) == ["curves.png"]


def test_partial_last_line_of_a_live_run_is_skipped(tmp_path):
    run = _write_run(tmp_path / "r", steps=3)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "train/lo')
    assert len(read_metrics(run)) == 4


def test_malformed_line_names_file_and_line(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 0, "train/loss": 1}\nnot json\n{"step": 1}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2"):
        read_metrics(run)


def test_missing_run_and_empty_metrics_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="run directory"):
        plot_learning_curves([tmp_path / "nope"], tmp_path / "x.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text('{"lr": 1}\n')
    with pytest.raises(ValueError, match="none of"):
        plot_learning_curves([tmp_path / "empty"], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_cli_plot_default_output_and_errors(tmp_path, capsys):
    run = _write_run(tmp_path / "run")
    assert cli.main(["plot", str(run)]) == 0
    assert (run / "learning_curves.png").read_bytes().startswith(PNG_MAGIC)
    assert cli.main(["plot", str(run), str(run)]) == 2
    assert "--out" in capsys.readouterr().err
    assert cli.main(["plot", str(tmp_path / "missing")]) == 2
    assert "no metrics file" in capsys.readouterr().err
