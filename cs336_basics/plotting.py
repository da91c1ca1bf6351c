# Hand-written plumbing (not exported from a notebook): learning curves from metrics.jsonl files.
"""Learning curves from one or more runs' ``metrics.jsonl``.

A training run appends one JSON object per line, with namespaced keys (``step``, ``wallclock_s``,
``train/loss``, ``val/loss``, ...); a line may hold only some keys. ``plot_learning_curves`` draws
train and validation loss against the step (left) and against wallclock time (right), one colour
per run, into a PNG::

    >>> plot_learning_curves(["runs/cpu", "runs/smoke"], "figures/curves.png")  # doctest: +SKIP
    PosixPath('figures/curves.png')

``cs336 plot RUN... --out FILE.png`` is the same from the command line.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

from cs336_basics.files import atomic_path
from cs336_basics.runs import RunFolder


def metrics_path(run_or_file: str | os.PathLike) -> Path:
    """A run directory or a metrics file -> the metrics file; a clear error when there is none."""
    path = Path(run_or_file)
    if path.is_dir():
        path = RunFolder(path).metrics
    if not path.is_file():
        raise FileNotFoundError(
            f"no metrics file at {path}; pass a run directory that holds {RunFolder(path).metrics.name} "
            "(made by `cs336 train`) or the path of such a file")
    return path


def read_metrics(run_or_file: str | os.PathLike) -> list[dict]:
    """Every record of a metrics file, in order. A malformed line is an error naming file and line.

    A last line without its newline is skipped: the run may still be writing it.
    """
    path = metrics_path(run_or_file)
    records = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):  # partial last line of a live run
                break
            raise ValueError(f"{path}, line {number}: not a JSON object ({err.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def is_finite_number(x: object) -> bool:
    """True for an int or float that is neither NaN nor infinite (JSON gives None, bools and strings too).

    >>> [is_finite_number(v) for v in (1, 2.5, float("nan"), None, True, "3")]
    [True, True, False, False, False, False]
    """
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def series(records: Sequence[dict], key: str, x: str = "step") -> tuple[list[float], list[float]]:
    """The (x, y) points of ``key`` over records that have both, skipping values that are not finite numbers.

    >>> series([{"step": 0, "train/loss": 9.0}, {"step": 1}, {"step": 2, "train/loss": float("nan")},
    ...         {"step": 3, "train/loss": "7.5"}, {"step": 4, "train/loss": 7.5}], "train/loss")
    ([0, 4], [9.0, 7.5])
    """
    points = [(r[x], r[key]) for r in records if is_finite_number(r.get(x)) and is_finite_number(r.get(key))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_learning_curves(
    metrics_paths: Sequence[str | os.PathLike] | str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    keys: Sequence[str] = ("train/loss", "val/loss", "val/ema_loss"),
    title: str | None = None,
    log_y: bool = False,
) -> Path:
    """Draw ``keys`` vs step and vs wallclock for each run into ``out_png`` (written atomically).

    ``metrics_paths``: run directories or metrics files. ``labels`` default to the run names.
    Train curves are thin lines, validation curves lines with dots (dashed for the weight average,
    ``val/ema_loss``, which only runs with optim.ema_halflife > 0 log), one colour per run. A key a
    run never logged is left out.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if isinstance(metrics_paths, (str, os.PathLike)):
        metrics_paths = [metrics_paths]
    paths = [metrics_path(p) for p in metrics_paths]
    if not paths:
        raise ValueError("no runs to plot; pass at least one run directory or metrics.jsonl")
    if labels is None:
        labels = [p.parent.name or str(p) for p in paths]
    if len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} runs; give one label per run")

    runs = [read_metrics(p) for p in paths]
    longest_s = max((r.get("wallclock_s") or 0 for recs in runs for r in recs), default=0)
    minutes = longest_s > 600
    fig, (ax_step, ax_time) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    plotted = 0
    for i, (records, label) in enumerate(zip(runs, labels)):
        colour = f"C{i % 10}"
        for key in keys:
            is_val = key.startswith("val")
            style = dict(color=colour, lw=1.6 if is_val else 0.8, alpha=1.0 if is_val else 0.6,
                         marker="o" if is_val else None, ms=3, label=f"{label} {key}",
                         ls="--" if key.endswith("ema_loss") else "-")
            xs, ys = series(records, key, "step")
            if xs:
                ax_step.plot(xs, ys, **style)
                plotted += 1
            ts, ys = series(records, key, "wallclock_s")
            if ts:
                ax_time.plot([t / 60 if minutes else t for t in ts], ys, **style)
    if not plotted:
        raise ValueError(f"none of {list(keys)} with a 'step' in {', '.join(map(str, paths))}; "
                         "is this a metrics file written by `cs336 train`?")
    ax_step.set_xlabel("step")
    ax_time.set_xlabel("wallclock (min)" if minutes else "wallclock (s)")
    ax_step.set_ylabel("loss (nats/token)")
    for ax in (ax_step, ax_time):
        ax.grid(alpha=0.3)
        if log_y:
            ax.set_yscale("log")
    ax_step.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    out = Path(out_png)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=120)
    finally:
        plt.close(fig)
    return out
