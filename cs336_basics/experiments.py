# Hand-written plumbing (not exported from a notebook): reading and plotting the committed sweep results.
"""The results of the handout's section-7 experiments, as `cs336 sweep` commits them, read and drawn.

Each sweep copies its runs' small files into ``experiments/<group>/<variant>/``: ``config.toml``,
``metrics.jsonl`` (one JSON object a line: ``step``, ``tokens``, ``wallclock_s``, ``train/loss``,
``lr``, and at evaluations ``val/loss``, ``val/ema_loss``), ``eval.json`` (the whole validation
file: ``val_loss``, ``bits_per_byte``, ``bytes_per_token``), ``env.json`` and ``status.json``
(finished, diverged or failed; steps, losses, wall-clock). This module reads them back::

    >>> runs = load_group("learning_rate")                  # doctest: +SKIP
    >>> runs["lr_5e-3"].state, round(runs["lr_5e-3"].val_loss, 3)     # doctest: +SKIP
    ('finished', 4.309)
    >>> xs, ys = curve(runs["lr_5e-3"], "val/loss", x="tokens")   # doctest: +SKIP
    >>> xs, [round(y, 2) for y in ys]                                # doctest: +SKIP
    ([0, 614400, 1228800, 1843200, 2457600], [8.35, 4.87, 4.62, 4.36, 4.28])

draws one figure per group (``plot_learning_rate``, ``plot_batch_size``, ``plot_ablations``,
``plot_main_experiment``; ``plot_curves`` for any other group), and writes the experiment log,
``experiments/LOG.md``: per group the question and conclusion of its spec (``experiments/*.toml``),
the command, a table of results and the figure. ``cs336 experiments`` redraws every figure into
``figures/07_<group>.png`` and rewrites the log from the committed files, in seconds. A group or a
variant that has not run yet is shown as such, never an error.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cs336_basics.files import atomic_path, atomic_write, read_json_object
from cs336_basics.plotting import is_finite_number, read_metrics, series

__all__ = ["Result", "load_result", "load_group", "load_specs", "group_results", "curve", "smooth",
           "bits_per_byte", "parameter_count", "best_per_batch_size", "ablation_panel", "ablation_baselines",
           "plot_learning_rate", "plot_batch_size", "plot_ablations", "plot_main_experiment", "plot_curves",
           "plot_group", "draw_figures", "format_table", "format_log", "write_log", "GROUPS", "ABLATIONS", "OTHER",
           "NOT_RUN"]

NOT_RUN = "not run yet"
PathLike = str | os.PathLike
# The groups of the handout's section 7, in its order: the problems each answers
GROUPS = {
    "learning_rate": "learning_rate",
    "batch_size": "batch_size_experiment",
    "ablations": "layer_norm_ablation, pre_norm_ablation, no_pos_emb, swiglu_ablation",
    "main_experiment": "main_experiment",
    "leaderboard": "leaderboard",
}


# ------------------------------------------------------------------------------------ reading
@dataclass
class Result:
    """One variant's committed files (each empty when absent) and what the log and figures need of them."""
    group: str
    variant: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict)   # config.toml: model, optim, schedule, data, run
    metrics: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, Any] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """finished | diverged | failed | interrupted (from status.json), or 'not run yet'."""
        if not self.status and not self.metrics:
            return NOT_RUN
        return self.status.get("status", "unknown")

    def _number(self, *values: Any) -> float | None:
        return next((v for v in values if is_finite_number(v)), None)

    @property
    def val_loss(self) -> float | None:
        """The final validation loss (nats/token) on the whole validation file; None unless finished."""
        return self._number(self.eval.get("val_loss"), self.status.get("val_loss"))

    @property
    def bits_per_byte(self) -> float | None:
        return self._number(self.eval.get("bits_per_byte"), self.status.get("bits_per_byte"))

    @property
    def steps(self) -> int:
        return self.status.get("step") or (self.metrics[-1].get("step", 0) if self.metrics else 0)

    @property
    def tokens(self) -> int | None:
        seen = [r["tokens"] for r in self.metrics if is_finite_number(r.get("tokens"))]
        return seen[-1] if seen else None

    @property
    def wallclock_s(self) -> float | None:
        seen = [r["wallclock_s"] for r in self.metrics if is_finite_number(r.get("wallclock_s"))]
        return self._number(self.status.get("wallclock_s"), seen[-1] if seen else None)

    def setting(self, dotted: str, default: Any = None) -> Any:
        """A setting of the run's config: ``result.setting("optim.lr")``."""
        section, key = dotted.split(".", 1)
        return self.config.get(section, {}).get(key, default)


def load_result(folder: PathLike, group: str | None = None) -> Result:
    """The files of one ``experiments/<group>/<variant>/`` folder (a missing folder: a 'not run yet' result)."""
    folder = Path(folder)
    result = Result(group or folder.parent.name, folder.name, folder)
    if (folder / "config.toml").is_file():
        result.config = tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
    if (folder / "metrics.jsonl").is_file():
        result.metrics = read_metrics(folder / "metrics.jsonl")
    result.eval, result.status, result.env = (read_json_object(folder / name) for name in ("eval.json", "status.json",
                                                                                         "env.json"))
    return result


def load_group(group: str, experiments: PathLike = "experiments",
               variants: list[str] | None = None) -> dict[str, Result]:
    """{variant: Result} of ``experiments/<group>/``: the given variants in that order (those without
    results as 'not run yet'), then any other result folders by name. No folder: {} (or all 'not run yet')."""
    folder = Path(experiments) / group
    found = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    names = list(variants or []) + [name for name in found if name not in (variants or [])]
    return {name: load_result(folder / name, group) for name in names}


def load_specs(experiments: PathLike = "experiments") -> dict[str, list[Any]]:
    """{group: [sweep.Spec, ...]} of the sweep specs ``experiments/*.toml`` (one group may have several).

    A malformed spec raises ``sweep.SweepError`` naming the file and the fix.
    """
    from cs336_basics.sweep import load_spec

    specs: dict[str, list[Any]] = {}
    for path in sorted(Path(experiments).glob("*.toml")):
        spec = load_spec(path)
        specs.setdefault(spec.group, []).append(spec)
    return specs


def group_results(group: str, experiments: PathLike = "experiments",
                  specs: dict[str, list[Any]] | None = None) -> dict[str, Result]:
    """``load_group`` with the variants of the group's specs first, in their order (so that those still to
    run are listed too, each with the config it would run with), then any other result folders."""
    from cs336_basics.config import ConfigError, load_config

    specs = load_specs(experiments) if specs is None else specs
    results = load_group(group, experiments, [v for spec in specs.get(group, []) for v in spec.variants])
    for spec in specs.get(group, []):
        for name, overrides in spec.variants.items():
            if results[name].state == NOT_RUN and not results[name].config:
                try:  # (as config.toml would hold it)
                    results[name].config = dataclasses.asdict(load_config(spec.base, spec.common + overrides))
                except ConfigError:
                    pass
    return results


# ------------------------------------------------------------------------------------ curves
def smooth(values: list[float], weight: float = 0.0) -> list[float]:
    """An exponential moving average, debiased so that it starts at the first value (weight 0: unchanged).

    >>> smooth([4.0, 2.0, 2.0], 0.5)
    [4.0, 2.666..., 2.285...]
    """
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i) if weight else v)
    return out


def curve(result: Result, key: str = "val/loss", x: str = "step", smoothing: float = 0.0
          ) -> tuple[list[float], list[float]]:
    """(xs, ys) of ``key`` against ``x`` (``step``, ``tokens`` or ``wallclock_s``), non-finite values left out.

    >>> r = Result("g", "v", Path("."), metrics=[{"step": 0, "tokens": 0, "val/loss": 8.0},
    ...                                          {"step": 10, "tokens": 5120, "train/loss": 6.0, "val/loss": 5.5}])
    >>> curve(r, "val/loss", x="tokens")
    ([0, 5120], [8.0, 5.5])
    """
    xs, ys = series(result.metrics, key, x)
    return xs, smooth(ys, smoothing)


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    """nats/token -> bits/byte, which does not depend on the tokenizer: loss / ln 2 / bytes per token.

    >>> round(bits_per_byte(4.3095, 3.5963), 4)
    1.7288
    """
    return loss / math.log(2) / bytes_per_token


def parameter_count(config: dict[str, Any]) -> int | None:
    """Trainable parameters of the model a run's config.toml describes (``accounting.parameter_counts``);
    None when its [model] section cannot be read."""
    from cs336_basics.accounting import parameter_counts
    from cs336_basics.model import ModelConfig

    try:
        return parameter_counts(ModelConfig(**config["model"]).check().as_kwargs())["total"]
    except (KeyError, TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------------ figures
def _figure(panels: int, width: float = 5.6, height: float = 4.2, columns: int | None = None, **share):
    """A matplotlib Figure with ``panels`` axes, ``columns`` a row (default: all in one row); no pyplot, so
    no backend is chosen and nothing is left open."""
    from matplotlib.figure import Figure

    columns = columns or panels
    rows = -(-panels // columns)
    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = list(fig.subplots(rows, columns, squeeze=False, **share).flat)
    for ax in axes[panels:]:
        ax.remove()
    for ax in axes[:panels]:
        ax.grid(alpha=0.3)
    return fig, axes[:panels]


def _save(fig, out: PathLike) -> Path:
    """Write the figure (atomically); a PNG with a 256-colour palette, a third of the bytes of full colour
    for these line plots, which matters in notebooks and in git."""
    import io

    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if out.suffix.lower() != ".png":
            fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=100)
        else:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=100)
            Image.open(buffer).convert("RGB").quantize(256).save(tmp, format="png", optimize=True)
    return out


def _not_run_figure(group: str, experiments: PathLike, out: PathLike) -> Path:
    fig, (ax,) = _figure(1, 7, 2.2)
    ax.axis("off")
    ax.text(0.5, 0.5, f"{group}: not run yet\n(no results in {Path(experiments) / group})", ha="center",
            va="center", fontsize=12, color="0.4", transform=ax.transAxes)
    return _save(fig, out)


def _lr_label(lr: float) -> str:
    """A learning rate as the specs write it: 5e-3, 1.5e-3, 1.

    >>> [_lr_label(x) for x in (0.005, 0.0015, 1.0, 0.3)]
    ['5e-3', '1.5e-3', '1', '3e-1']
    """
    mantissa, exponent = f"{lr:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}" if int(exponent) else mantissa


def _limits(ax, values: list[float], span: float, highs: list[float] = ()) -> None:
    """y from just below the lowest value to ``span`` above it (the first losses of a run are off the top),
    or higher if needed to show ``highs`` (say, the final loss of a run far behind the others)."""
    if values:
        low = min(values)
        high = max([low + span, *[h + 0.08 * (h - low) for h in highs if is_finite_number(h)]])
        ax.set_ylim(low - 0.03 * (high - low), high)


STOPPED = ("diverged", "failed", "interrupted")  # runs that ended before their last step
ZOOM = 0.25  # plot_learning_rate's middle panel: the rates whose final loss is this close to the best


def _final(r: Result) -> str:
    """A legend's ending: the final loss on the whole validation file, the last logged one when the run has
    no eval.json, or the run's state."""
    if r.val_loss is None:
        return f" ({r.state})"
    return f": {r.val_loss:.3f}" + ("" if is_finite_number(r.eval.get("val_loss")) else " (last logged: no eval.json)")


def _mark_stopped(ax, result: Result, x: float, colour: str) -> None:
    """A cross where a diverged (or failed) run stopped: at its last finite loss, kept inside the axis (at the
    top when the run has none)."""
    bottom, top = ax.get_ylim()
    y = result.status.get("last_finite_loss")
    y = min(max(y, bottom), top) if is_finite_number(y) else top
    ax.plot([x], [y], marker="x", ms=10, mew=2.5, color=colour, clip_on=False, zorder=5)
    ax.annotate(f"{result.variant}\n{result.state} at step {result.steps}", (x, y), xytext=(0, -9),
                textcoords="offset points", ha="center", va="top", fontsize=7, color=colour)


def plot_learning_rate(experiments: PathLike = "experiments", out: PathLike = "figures/07_learning_rate.png",
                       group: str = "learning_rate") -> Path:
    """Left: validation loss (dots) and smoothed training loss (thin) against the step, one colour per
    learning rate, diverged runs crossed where they stopped. Middle: the same for the rates whose final
    loss is within ``ZOOM`` of the best, from a quarter of the run on. Right: the final validation loss
    against the learning rate (log axis; bits per byte on the right axis), diverged runs at the top."""
    from matplotlib import colormaps

    runs = [r for r in group_results(group, experiments).values() if r.state != NOT_RUN and r.setting("optim.lr")]
    if not runs:
        return _not_run_figure(group, experiments, out)
    runs.sort(key=lambda r: r.setting("optim.lr"))
    fig, (ax, ax_zoom, ax_lr) = _figure(3, 5.0)
    cmap = colormaps["viridis"]
    colours = {r.variant: cmap(i / max(1, len(runs) - 1) * 0.9) for i, r in enumerate(runs)}
    finals = [r.val_loss for r in runs if r.val_loss is not None]
    near = [r for r in runs if r.val_loss is not None and r.val_loss <= min(finals) + ZOOM]
    start = max((r.steps for r in runs), default=0) / 4
    for r in runs:
        label = f"lr {_lr_label(r.setting('optim.lr'))}{_final(r)}"
        for axis, shown in ((ax, True), (ax_zoom, r in near)):
            if not shown:
                continue
            xs, ys = curve(r, "val/loss")
            tx, ty = curve(r, "train/loss", smoothing=0.6)
            if axis is ax_zoom:
                xs, ys = [x for x in xs if x >= start], [y for x, y in zip(xs, ys) if x >= start]
                tx, ty = [x for x in tx if x >= start], [y for x, y in zip(tx, ty) if x >= start]
            axis.plot(xs, ys, marker="o", ms=3.5, lw=1.6, color=colours[r.variant],
                      label=label if axis is ax else None)
            axis.plot(tx, ty, lw=0.8, alpha=0.45, color=colours[r.variant])
    _limits(ax, finals, 4.3)
    for r in runs:
        if r.state in STOPPED:
            _mark_stopped(ax, r, r.steps, "red")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title="validation (dots), training (thin, smoothed)")
    ax_zoom.legend(*ax.get_legend_handles_labels(), fontsize=7, title="final val loss (whole file)",
                   title_fontsize=7, loc="upper right")  # (the zoom's upper right corner is empty: losses fall)
    ax_zoom.set(xlabel="step", title=f"zoom: the rates within {ZOOM} of the best")

    done = [r for r in runs if r.val_loss is not None]
    ax_lr.set_xscale("log")
    if done:
        ax_lr.plot([r.setting("optim.lr") for r in done], [r.val_loss for r in done], "o-", color="C0",
                   label="finished: final val loss")
        best = min(done, key=lambda r: r.val_loss)
        ax_lr.plot([best.setting("optim.lr")], [best.val_loss], "*", ms=16, color="gold", mec="k",
                   label=f"best: lr {_lr_label(best.setting('optim.lr'))} ({best.val_loss:.3f})")
        top = max(r.val_loss for r in done)
        ax_lr.set_ylim(min(finals) - 0.1, top + 0.15 * (top - min(finals)) + 0.2)
        bpt = [r.eval["bytes_per_token"] for r in done if is_finite_number(r.eval.get("bytes_per_token"))]
        if bpt and max(bpt) - min(bpt) < 1e-9:  # one tokenizer: bits per byte is the same axis rescaled
            ratio = math.log(2) * bpt[0]
            sec = ax_lr.secondary_yaxis("right", functions=(lambda y: y / ratio, lambda b: b * ratio))
            sec.set_ylabel("bits per byte")
    for r in runs:
        if r.state in STOPPED:
            y = ax_lr.get_ylim()[1]
            ax_lr.plot([r.setting("optim.lr")], [y], "x", ms=11, mew=2.5, color="red", clip_on=False)
            ax_lr.annotate(r.state, (r.setting("optim.lr"), y), xytext=(0, -12), textcoords="offset points",
                           ha="center", fontsize=8, color="red")
    ax_lr.set(xlabel="learning rate (log scale)", ylabel="final validation loss (nats/token)",
              title="final loss against learning rate")
    ax_lr.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{group}: {len(runs)} learning rates")
    return _save(fig, out)


def best_per_batch_size(results: list[Result]) -> dict[int, Result]:
    """{batch size: its run with the lowest final validation loss} (runs without one left out).

    >>> runs = [Result("b", name, Path("."), config={"data": {"batch_size": b}}, eval={"val_loss": v})
    ...         for name, b, v in (("b8_lr1", 8, 4.5), ("b8_lr2", 8, 4.4), ("b32", 32, 4.6))]
    >>> {b: r.variant for b, r in best_per_batch_size(runs).items()}
    {8: 'b8_lr2', 32: 'b32'}
    """
    best: dict[int, Result] = {}
    for r in results:
        b = r.setting("data.batch_size")
        if r.val_loss is not None and (b not in best or r.val_loss < best[b].val_loss):
            best[b] = r
    return best


def plot_batch_size(experiments: PathLike = "experiments", out: PathLike = "figures/07_batch_size.png",
                    group: str = "batch_size") -> Path:
    """Smoothed training loss against tokens (left) and wall-clock (right), one colour per batch size;
    the best learning rate of each batch size (lowest final validation loss) bold, the others dashed."""
    from matplotlib import colormaps

    runs = [r for r in group_results(group, experiments).values()
            if r.state != NOT_RUN and r.setting("data.batch_size")]
    if not runs:
        return _not_run_figure(group, experiments, out)
    sizes = sorted({r.setting("data.batch_size") for r in runs})
    cmap = colormaps["plasma"]
    colour = {b: cmap(0.85 * i / max(1, len(sizes) - 1)) for i, b in enumerate(sizes)}
    best = best_per_batch_size(runs)
    fig, (ax_tok, ax_time) = _figure(2)
    finals = [r.val_loss for r in best.values()]
    stopped = []  # (axes, run, x) of the runs that diverged or failed: crossed once the y axis is set
    for r in sorted(runs, key=lambda r: (r.setting("data.batch_size"), r.setting("optim.lr"))):
        b = r.setting("data.batch_size")
        is_best = best.get(b) is r
        name = f"batch {b}, lr {_lr_label(r.setting('optim.lr'))}"
        label = name + _final(r)
        style = dict(color=colour[b], lw=1.8 if is_best else 0.9, ls="-" if is_best else "--",
                     alpha=1.0 if is_best else 0.55)
        for ax, x in ((ax_tok, "tokens"), (ax_time, "wallclock_s")):
            xs, ys = curve(r, "train/loss", x=x, smoothing=0.9)
            ax.plot([v / 1e6 for v in xs] if x == "tokens" else xs, ys, label=label if ax is ax_tok else None,
                    **style)
            end = r.tokens / 1e6 if x == "tokens" and r.tokens else r.wallclock_s
            if r.val_loss is not None and end:  # the final validation loss where the run ended
                ax.plot([end], [r.val_loss], "o", ms=6 if is_best else 4, color=colour[b],
                        mec="k" if is_best else None)
            elif r.state in STOPPED and xs:
                stopped.append((ax, r, xs[-1] / 1e6 if x == "tokens" else xs[-1]))
    lows = finals + [min(line.get_ydata(), default=math.inf) for line in ax_tok.get_lines()]
    ends = [y for r in best.values() for y in curve(r, "train/loss", smoothing=0.9)[1][-1:]]  # best runs: in view
    for ax in (ax_tok, ax_time):
        _limits(ax, [v for v in lows if is_finite_number(v)], 2.2, finals + ends)
    for ax, r, x in stopped:
        _mark_stopped(ax, r, x, colour[r.setting("data.batch_size")])
    ax_tok.set_xscale("log")  # (batch 1 sees a hundredth of the tokens batch 128 sees in the same time)
    ax_tok.set(xlabel="tokens (millions, log scale)", ylabel="training loss, smoothed (nats/token)",
               title="loss against tokens seen")
    ax_time.set(xlabel="wall-clock (s)", title="loss against wall-clock (dots: final validation loss)")
    ax_tok.legend(fontsize=6.5, ncol=2, title="bold: best lr of its batch size; final val loss", title_fontsize=7)
    fig.suptitle(f"{group}: {len(sizes)} batch sizes, {len(runs)} runs")
    return _save(fig, out)


# The four ablations of section 7.3: panel -> (problem and title, which runs it holds, by their [model] section)
ABLATIONS: dict[str, tuple[str, Callable[[dict], bool]]] = {
    "layer_norm": ("layer_norm_ablation: no RMSNorm", lambda m: m.get("norm") == "none"),
    "pre_norm": ("pre_norm_ablation: post-norm", lambda m: m.get("norm") == "post"),
    "no_pos_emb": ("no_pos_emb: NoPE (no position information)", lambda m: m.get("positional") == "none"),
    "swiglu": ("swiglu_ablation: SiLU FFN instead of SwiGLU", lambda m: m.get("ffn") == "silu"),
}
OTHER = "other"  # the panel of runs with another switch changed (say, the leaderboard's qk_norm)
_NOT_SWITCHES = ("d_ff", "rope_theta")  # model settings that are sizes, not ablation switches
_PATHS = ("train_tokens", "valid_tokens", "tokenizer")  # where the data was, not what it is


def _recipe(config: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same experiment: the model, optimizer, schedule and data settings (not the
    seed, the threads or where the files were)."""
    data = {k: v for k, v in config.get("data", {}).items() if k not in _PATHS}
    return {"model": config.get("model"), "optim": config.get("optim"), "schedule": config.get("schedule"),
            "data": data}


def ablation_panel(result: Result) -> str | None:
    """Which ablation a run belongs to (by its [model] section): one of ABLATIONS, OTHER when another
    switch differs from the model's default, None for a baseline (every switch at its default).

    >>> [ablation_panel(Result("ablations", "v", Path("."), config={"model": m}))
    ...  for m in ({"norm": "post"}, {"qk_norm": True}, {"norm": "pre", "d_ff": 768})]
    ['pre_norm', 'other', None]
    """
    from cs336_basics.model import ModelConfig

    model = result.config.get("model", {})
    panel = next((name for name, (_, test) in ABLATIONS.items() if test(model)), None)
    switches = [f for f in dataclasses.fields(ModelConfig) if f.name not in ModelConfig.SIZES + _NOT_SWITCHES]
    if panel is None and any(model.get(f.name, f.default) != f.default for f in switches):
        return OTHER
    return panel


def ablation_baselines(experiments: PathLike = "experiments", group: str = "ablations",
                       reference: str = "learning_rate") -> list[Result]:
    """The baseline runs: those of ``group`` with no ablation switched on (run or not yet), and the run of
    ``reference`` with the same recipe (model, optim, schedule, data settings; the seed may differ) first."""
    own = [r for r in group_results(group, experiments).values() if r.config and ablation_panel(r) is None]
    recipes = [_recipe(r.config) for r in own]
    same = [r for r in load_group(reference, experiments).values() if r.config and _recipe(r.config) in recipes]
    return same + own


def _baseline_label(r: Result) -> str:
    return f"baseline ({r.group}/{r.variant}, seed {r.setting('run.seed', 0)})"


def plot_ablations(experiments: PathLike = "experiments", out: PathLike = "figures/07_ablations.png",
                   group: str = "ablations", panels: tuple[str, ...] | None = None) -> Path:
    """One panel per ablation (``panels``: some of ABLATIONS' keys or OTHER; default all four, and OTHER when a
    run changes another switch): its runs' validation loss
    against the step next to the baselines, whose seeds span the grey band (the run-to-run spread);
    smoothed training loss thin; the final validation loss in the legend; diverged runs crossed."""
    results = [r for r in group_results(group, experiments).values() if r.state != NOT_RUN]
    if not results:
        return _not_run_figure(group, experiments, out)
    baselines = [r for r in ablation_baselines(experiments, group) if r.state != NOT_RUN]
    panels = tuple(panels or [*ABLATIONS, *([OTHER] if any(ablation_panel(r) == OTHER for r in results) else [])])
    fig, axes = _figure(len(panels), 5.6, 4.0, columns=2 if len(panels) >= 4 else None, sharex=True)
    # the y axis: from the lowest validation loss (final, or on the way) up; the first steps are off the top
    lows = [r.val_loss for r in results + baselines if r.val_loss is not None]
    lows += [y for r in results + baselines for x, y in zip(*curve(r, "val/loss")) if x > 0]
    lows += [min(curve(r, "train/loss", smoothing=0.6)[1] or [math.inf]) for r in results + baselines]
    lows = lows or [min(curve(r, "val/loss")[1] or [math.inf]) for r in results + baselines]
    for ax, panel in zip(axes, panels):
        curves = [curve(b, "val/loss") for b in baselines]
        steps = sorted(set.intersection(*(set(xs) for xs, _ in curves))) if curves else []
        if len(curves) > 1 and steps:
            at = [dict(zip(xs, ys)) for xs, ys in curves]
            ax.fill_between(steps, [min(c[s] for c in at) for s in steps], [max(c[s] for c in at) for s in steps],
                            color="0.6", alpha=0.35, lw=0, label=f"baseline seed spread ({len(curves)} seeds)")
        for b, (xs, ys) in zip(baselines, curves):
            final = _final(b)
            ax.plot(xs, ys, color="0.35", lw=1.0, marker=".", label=_baseline_label(b) + final)
            ax.plot(*curve(b, "train/loss", smoothing=0.6), color="0.35", lw=0.7, alpha=0.4)
        runs = [r for r in results if ablation_panel(r) == panel]
        colours = {r.variant: f"C{(i + 1) % 10}" if i else "C3" for i, r in enumerate(runs)}
        for r in runs:
            c = colours[r.variant]
            final = _final(r)
            ax.plot(*curve(r, "val/loss"), color=c, marker="o", ms=3.5, lw=1.6,
                    label=f"{r.variant} (lr {_lr_label(r.setting('optim.lr'))}){final}")
            ax.plot(*curve(r, "train/loss", smoothing=0.6), color=c, lw=0.8, alpha=0.45)
        ends = [curve(r, "val/loss")[1][-1:] for r in runs if r.state not in STOPPED]
        highs = [r.val_loss for r in runs] + [y for e in ends for y in e]  # (a run far behind stays in view)
        _limits(ax, [v for v in lows if is_finite_number(v)], 1.7, highs)
        for r in runs:
            if r.state in STOPPED:
                _mark_stopped(ax, r, r.steps, colours[r.variant])
        if not runs:
            ax.text(0.5, 0.72, NOT_RUN, transform=ax.transAxes, ha="center", color="0.4", fontsize=12,
                    bbox=dict(facecolor="white", edgecolor="0.8"))
        ax.set_title(ABLATIONS[panel][0] if panel in ABLATIONS else "other switches")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    for ax in axes:
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel("step")
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel("loss (nats/token)")
    if len(panels) > 1:  # (one panel: its title says it)
        fig.suptitle(f"{group}: validation loss (dots) and training loss (thin) against the baseline\n"
                     "(final loss on the whole validation file in the legend)")
    return _save(fig, out)


def plot_main_experiment(experiments: PathLike = "experiments",
                         out: PathLike = "figures/07_main_experiment.png", group: str = "main_experiment"
                         ) -> Path:
    """Each variant's (web, english) loss against the step: nats per token (left; their tokenizers differ,
    so not comparable) and bits per byte (right; bpb = loss / ln 2 / bytes per token of its eval.json)."""
    runs = [r for r in group_results(group, experiments).values() if r.state != NOT_RUN]
    if not runs:
        return _not_run_figure(group, experiments, out)
    fig, (ax_nats, ax_bpb) = _figure(2)
    nats, bpbs = [], []  # what the y axes must show
    for i, r in enumerate(runs):
        c = f"C{i}"
        bpt = r.eval.get("bytes_per_token")
        panels = [(ax_nats, lambda y: y, nats)]
        if is_finite_number(bpt):
            panels.append((ax_bpb, lambda y, bpt=bpt: bits_per_byte(y, bpt), bpbs))
        else:
            ax_bpb.plot([], [], color=c, label=f"{r.variant}: no eval.json (bytes per token unknown)")
        for ax, scale, shown in panels:
            xs, ys = curve(r, "val/loss")
            tx, ty = curve(r, "train/loss", smoothing=0.6)
            label = f"{r.variant}{_final(r)}" if ax is ax_nats else f"{r.variant}: {bpt:.2f} bytes/token"
            ax.plot(xs, [scale(y) for y in ys], marker="o", ms=3, lw=1.6, color=c, label=label)
            ax.plot(tx, [scale(y) for y in ty], lw=0.8, alpha=0.45, color=c)
            shown += [scale(y) for x, y in zip(xs, ys) if x > 0] + [scale(y) for y in ty[-1:]]
            final = r.val_loss if ax is ax_nats else r.bits_per_byte
            if final is not None:  # the whole validation file, after the run
                ax.plot([r.steps], [final], "*", ms=13, color=c, mec="k",
                        label=None if ax is ax_nats else f"{r.variant}, whole validation file: {final:.3f}")
                shown.append(final)
    for ax, values, span in ((ax_nats, nats, 3.0), (ax_bpb, bpbs, 1.2)):
        if values:
            low, high = min(values), max(values)
            ax.set_ylim(low - 0.05 * span, min(high, low + span) + 0.05 * span)
        ax.set_xlabel("step")
        ax.legend(fontsize=7.5)
    ax_nats.set(ylabel="loss (nats/token)", title="per token: depends on the tokenizer")
    ax_bpb.set(ylabel="bits per byte", title="per byte of text: comparable across tokenizers")
    fig.suptitle(f"{group}: {' vs '.join(r.variant for r in runs)} (validation batches: dots; training: thin; "
                 "whole validation file at the end: stars)")
    return _save(fig, out)


def plot_curves(experiments: PathLike = "experiments", out: PathLike = "figures/07_curves.png",
                group: str = "leaderboard") -> Path:
    """Any group: validation loss (dots) and smoothed training loss against the step and the wall-clock."""
    runs = [r for r in group_results(group, experiments).values() if r.state != NOT_RUN]
    if not runs:
        return _not_run_figure(group, experiments, out)
    fig, (ax_step, ax_time) = _figure(2)
    minutes = max((r.wallclock_s or 0) for r in runs) > 600
    finals = []
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors if len(runs) > 10 else [f"C{i}" for i in range(10)]
    for i, r in enumerate(runs):
        c = palette[i % len(palette)]
        final = _final(r)
        for ax, x in ((ax_step, "step"), (ax_time, "wallclock_s")):
            scale = 60 if x == "wallclock_s" and minutes else 1
            xs, ys = curve(r, "val/loss", x=x)
            ax.plot([v / scale for v in xs], ys, marker="o", ms=3, lw=1.6, color=c,
                    label=f"{r.variant}{final}" if ax is ax_step else None)
            tx, ty = curve(r, "train/loss", x=x, smoothing=0.6)
            ax.plot([v / scale for v in tx], ty, lw=0.8, alpha=0.45, color=c)
            finals += ys[-1:]
    for ax in (ax_step, ax_time):
        _limits(ax, finals, 3.0)
    ax_step.set(xlabel="step", ylabel="loss (nats/token)")
    ax_time.set(xlabel=f"wall-clock ({'min' if minutes else 's'})")
    ax_step.legend(fontsize=7.5)
    fig.suptitle(f"{group}: validation (dots) and training loss (thin)")
    return _save(fig, out)


PLOTS: dict[str, Callable[..., Path]] = {"learning_rate": plot_learning_rate, "batch_size": plot_batch_size,
                                         "ablations": plot_ablations, "main_experiment": plot_main_experiment}


def figure_path(figures: PathLike, group: str) -> Path:
    return Path(figures) / f"07_{group}.png"


def plot_group(group: str, experiments: PathLike = "experiments", out: PathLike | None = None) -> Path:
    """The figure of ``group`` (its own kind, or ``plot_curves``) into ``out`` (default figures/07_<group>.png)."""
    plot = PLOTS.get(group, plot_curves)
    return plot(experiments, out or figure_path("figures", group), group=group)


def _groups(experiments: PathLike, specs: dict[str, list[Any]]) -> list[str]:
    """The groups with a spec or results: the handout's first, in its order, then the others by name."""
    folder, found = Path(experiments), set(specs)
    if folder.is_dir():  # result folders: experiments/<group>/<variant>/ with a variant's files in it
        found |= {p.name for p in folder.iterdir() if p.is_dir() and any(
            (q / "status.json").is_file() or (q / "metrics.jsonl").is_file() for q in p.iterdir() if q.is_dir())}
    return [g for g in GROUPS if g in found] + sorted(found - set(GROUPS))


def draw_figures(experiments: PathLike = "experiments", figures: PathLike = "figures",
                 groups: list[str] | None = None) -> dict[str, Path | None]:
    """figures/07_<group>.png for every group with results ({group: path}; None: not run yet, nothing drawn)."""
    drawn: dict[str, Path | None] = {}
    for group in groups or _groups(experiments, load_specs(experiments)):
        has_results = any(r.state != NOT_RUN for r in load_group(group, experiments).values())
        drawn[group] = plot_group(group, experiments, figure_path(figures, group)) if has_results else None
    return drawn


# ------------------------------------------------------------------------------------ the log
def _fmt(x: Any, spec: str, suffix: str = "") -> str:
    return format(x, spec) + suffix if is_finite_number(x) else "-"


def _note(r: Result) -> str:
    if r.state == "diverged":
        loss = r.status.get("last_finite_loss")
        return f"diverged at step {r.steps}" + (f", last finite loss {loss:.4g}" if is_finite_number(loss) else "")
    # a failed run's error, or what went wrong after a finished one (say, its evaluation)
    return (r.status.get("message") or "").replace("|", "\\|").replace("\n", " ")[:160]


def format_table(results: list[Result], group: str = "", parameters: bool = False) -> str:
    """A Markdown table: variant, status, steps, tokens, val loss, bits/byte, wall-clock (parameters), note.
    A run of another group than ``group`` is named group/variant.

    >>> print(format_table([Result("g", "lr_1", Path("."))], "g"))
    | variant | status | steps | tokens | val loss | bits/byte | wall-clock | note |
    |---|---|---|---|---|---|---|---|
    | lr_1 | not run yet | - | - | - | - | - |  |
    """
    head = ["variant", "status", "steps", "tokens", "val loss", "bits/byte", "wall-clock"]
    head += ["parameters"] if parameters else []
    rows = ["| " + " | ".join(head + ["note"]) + " |", "|" + "---|" * (len(head) + 1)]
    for r in results:
        ran = r.state != NOT_RUN
        cells = [r.variant if r.group == group else f"{r.group}/{r.variant}",
                 r.state, str(r.steps) if ran else "-", _fmt(r.tokens / 1e6 if r.tokens else None, ".2f", " M"),
                 _fmt(r.val_loss, ".4f"), _fmt(r.bits_per_byte, ".4f"), _fmt(r.wallclock_s, ".0f", " s")]
        if parameters:
            count = parameter_count(r.config) if r.config else None
            cells.append(f"{count:,}" if count else "-")
        rows.append("| " + " | ".join(cells + [_note(r)]) + " |")
    return "\n".join(rows)


def _machine(results: list[Result]) -> str:
    """Where the runs ran, from their env.json: one entry per machine, with its run count and dates
    (wall-clocks compare only within one machine).

    >>> env = {"cpu": "Xeon", "device": "cpu", "torch_threads": 1, "torch": "2.6", "date": "2026-12-03 17:00 UTC"}
    >>> _machine([Result("g", "a", Path("."), env=env), Result("g", "b", Path("."), env=env | {"cpu": "EPYC"})])
    'Xeon (cpu, 1 thread(s) a run, torch 2.6; 1 run, 2026-12-03);
     EPYC (cpu, 1 thread(s) a run, torch 2.6; 1 run, 2026-12-03)'
    """
    machines: dict[str, list[str]] = {}
    for e in (r.env for r in results if r.env):
        where = (f"{e.get('gpu') or e.get('cpu') or e.get('device', '?')} ({e.get('device', '?')}, "
                 f"{e.get('torch_threads', '?')} thread(s) a run, torch {e.get('torch', '?')}")
        machines.setdefault(where, []).append(e["date"][:10] if isinstance(e.get("date"), str) else "")
    parts = []
    for where, dates in machines.items():
        days = sorted(d for d in dates if d)
        when = (f", {days[0]}" + (f" to {days[-1]}" if days[-1] != days[0] else "")) if days else ""
        parts.append(f"{where}; {len(dates)} run{'s' if len(dates) > 1 else ''}{when})")
    return "; ".join(parts)


LOG_INTRO = """\
# Experiment log (handout section 7)

Every training run appends one JSON line per logged step to its `metrics.jsonl` (`step`, `tokens`,
`wallclock_s`, `train/loss`, `lr`, and at evaluations `val/loss` and the weight average's
`val/ema_loss`), so each curve is known against gradient steps, tokens and wall-clock time.
`uv run cs336 sweep experiments/GROUP.toml` trains the variants of one experiment and commits their
small files to `experiments/GROUP/VARIANT/` (config, metrics, `eval.json` on the whole validation
file, `env.json`, `status.json`; a run that diverges is recorded as such). This file and the
figures `figures/07_GROUP.png` are generated from those files by `uv run cs336 experiments` (do not
edit it by hand: the questions and conclusions live in the sweep specs, `experiments/*.toml`).
In the tables, val loss (nats per token) and bits per byte (= loss / ln 2 / bytes per token) are
measured on the whole validation file after the run, with the weights its `eval.json` names (the
`cpu` preset's runs: the moving average of the weights, `optim.ema_halflife`); the figures' curves
are the losses logged during training.
"""


def _from_project_root(path: PathLike) -> str:
    """``path`` as the README's commands name it: relative to the project folder above it (the one with
    pyproject.toml), wherever the log is written from; as given when no such folder is above it.

    >>> _from_project_root("experiments/learning_rate.toml")  # (the doctest runs in the project folder)
    'experiments/learning_rate.toml'
    """
    full = Path(path).resolve()
    for folder in full.parents:
        if (folder / "pyproject.toml").is_file():
            return full.relative_to(folder).as_posix()
    return Path(path).as_posix()


def format_log(experiments: PathLike = "experiments", figures: PathLike = "figures",
               log_dir: PathLike | None = None) -> str:
    """The experiment log (Markdown); figure links relative to ``log_dir`` (default: ``experiments``)."""
    specs = load_specs(experiments)
    log_dir = Path(log_dir if log_dir is not None else experiments)
    parts = [LOG_INTRO.strip()]
    for group in _groups(experiments, specs):
        group_specs = specs.get(group, [])
        results = list(group_results(group, experiments, specs).values())
        problems = GROUPS.get(group)
        parts.append(f"## {group}" + (f" ({problems})" if problems and problems != group else ""))
        questions = list(dict.fromkeys(s.question for s in group_specs if s.question))
        parts.append("**Question.** " + (" ".join(questions) if questions else "(no `question` in its spec)"))
        folder = _from_project_root(experiments)
        elsewhere = "" if folder == "experiments" else f" --experiments {folder}"
        commands = [f"`uv run cs336 sweep {_from_project_root(s.path)}{elsewhere}`" for s in group_specs]
        parts.append("**Command.** " + (", ".join(commands) if commands else "(no spec in experiments/)"))
        for s in group_specs:
            common = ", ".join(f"`{o}`" for o in s.common) or "none"
            parts.append(f"**Setup** ({s.path.name}). Preset `{s.base.stem}`; "
                         f"overrides for every variant: {common}.")
        # the ablations' table starts with their baseline from the learning-rate sweep
        others = [b for b in ablation_baselines(experiments, group) if b.group != group] \
            if group == "ablations" else []
        machine = _machine(others + results)
        if machine:
            parts.append(f"**Machine.** {machine}.")
        parts.append(format_table(others + results, group, parameters=group == "ablations"))
        ran = [r for r in results if r.state != NOT_RUN]
        figure = figure_path(figures, group)
        if ran and figure.is_file():
            link = Path(os.path.relpath(figure, log_dir)).as_posix()
            parts.append(f"![{group}]({link})")
        elif not ran:
            parts.append(f"*Not run yet:* no results in `{Path(experiments) / group}/`.")
        conclusions = list(dict.fromkeys(s.conclusion for s in group_specs if s.conclusion))
        parts.append("**Conclusion.** " + (" ".join(conclusions) if conclusions else "*to be written.*"))
    return "\n\n".join(p for p in parts if p) + "\n"


def write_log(experiments: PathLike = "experiments", out: PathLike | None = None,
              figures: PathLike = "figures") -> Path:
    """Write ``format_log`` to ``out`` (default experiments/LOG.md), atomically; returns its path."""
    out = Path(out) if out is not None else Path(experiments) / "LOG.md"
    return atomic_write(out, format_log(experiments, figures, out.parent))
