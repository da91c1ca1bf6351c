# Hand-written plumbing (not exported from a notebook): `cs336 sweep`, a group of training runs from one spec file.
"""A sweep: one base preset, named variants of it, one training run each, and their results kept.

    $ cs336 sweep experiments/learning_rate.toml            # run (or finish) every variant
    $ cs336 sweep experiments/learning_rate.toml --list     # the table of results, nothing run

**The spec** is a TOML file; paths in it are relative to the current folder, as everywhere in ``cs336``::

    group = "learning_rate"           # the handout's problem: runs/sweeps/<group>/, experiments/<group>/
    base = "cpu"                      # configs/cpu.toml, or a path to a .toml preset
    data = "data/english"             # optional: train.npy and valid.npy in it or its tokens/ (+ valid.txt)
    set = ["schedule.max_steps=2000"] # optional: --set overrides common to every variant

    [variants]                        # name = that variant's overrides, applied after `set`
    lr_1e-3 = ["optim.lr=1e-3"]
    lr_3e-3 = ["optim.lr=3e-3"]
    post_norm = ["model.norm=post", "optim.lr=1e-3"]

Optional keys: ``valid_text`` (the validation text for bits per byte, when it is not ``data``/valid.txt),
``runs`` (the parent of the run folders, default ``runs/sweeps``), and two strings for the experiment
log that ``cs336 experiments`` writes (experiments/LOG.md), which change nothing in the runs::

    question = "How does the final loss depend on the learning rate, and where does training diverge?"
    conclusion = ""                   # what the results say, written once they are in

Without ``data`` the runs read
the preset's token files. The token files must exist before a run starts (``cs336 prepare PRESET``
writes them where a preset looks, in ``data/NAME/tokens/``, which ``data = "data/NAME"`` finds too).

**Each variant** trains with ``cs336 train --config BASE --set ...`` in a process of its own, into
``runs/sweeps/<group>/<variant>/`` (its output goes to ``train.log`` there). On a CPU, up to
``jobs`` runs go side by side (default: one per core) at ``run.num_threads=1`` each (a spec may set
another count); on a GPU one after another. While they run, a short line per run reports its
progress (read from its metrics.jsonl), so a notebook cell that calls ``run_sweep`` shows it too.

**After each run** the sweep writes into its run folder ``eval.json`` (loss, perplexity and bits
per byte on the whole validation file: ``pipeline.evaluate_run``, in the sweep's process, one
run at a time; without a validation text, no bits per byte and a note saying so), ``env.json`` (``runtime.environment``: commit, CPU or GPU,
threads, versions, date) and ``status.json`` (finished, diverged, interrupted or failed; steps,
losses, wall-clock, the command), then copies those small files with config.toml and metrics.jsonl
into ``experiments/<group>/<variant>/`` (never checkpoints or token files; a run skipped as done has
its files copied too, so another ``--experiments`` folder gets every result).

**A diverging run is a result**: ``cs336 train`` stops on a NaN or infinite loss; the sweep records
the run as diverged, with the step and the last finite training loss, and goes on with the others.

**Running the same spec again** skips the finished and diverged runs, resumes the interrupted ones
(``--resume``) and starts those that never saved a checkpoint (or failed). Without its run folder (a fresh
clone), a variant whose finished or diverged result with the same settings is in
``experiments/<group>/<variant>/`` is skipped too: delete that folder to run it again. A variant whose settings
differ from its run folder's config.toml is refused, before anything runs, with the differences
named: delete that run folder to redo it, or give the new settings a new variant name. Ctrl-C (or
SIGTERM) stops every run at its next step with a checkpoint (status interrupted), so the same command
resumes. One sweep of a group runs at a time (a second one is refused, naming the first's process).

**Reproducing a committed result**: ``reproduce(spec, ["lr_5e-3"])`` (``cs336 sweep SPEC --reproduce
VARIANT``) trains the variants again from scratch in ``runs/reproduce/<group>/`` and compares their bits per
byte with ``experiments/<group>/<variant>/eval.json`` (within ``REPRODUCE_TOLERANCE``, 0.01).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cs336_basics.files import atomic_write, read_json_object
from cs336_basics.plotting import is_finite_number
from cs336_basics.runs import RunFolder

__all__ = ["SweepError", "Spec", "Plan", "load_spec", "plan_runs", "run_sweep", "sweep_results", "format_summary", "reproduce"]

SPEC_KEYS = ("group", "base", "data", "valid_text", "set", "runs", "question", "conclusion", "variants")
TEXT_KEYS = ("question", "conclusion")  # the experiment log's prose; no effect on the runs
RESULT_FILES = ("config.toml", "metrics.jsonl", "eval.json", "env.json", "status.json")  # what experiments/ keeps
DONE = ("finished", "diverged")  # statuses a re-run skips
# [run] settings that change how fast a run goes or what it prints, not what it computes: not compared
NOT_COMPARED = {"num_threads", "progress", "wandb", "wandb_project", "wandb_mode"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
_DIVERGED = re.compile(r"cs336 train: error: (?:loss became \S+ at step (\d+)|the weights became NaN or infinite by step (\d+))")
POLL_S = 0.5  # how often the sweep looks at its runs' metrics.jsonl
PROGRESS_EVERY_S = 10.0  # at most one progress line per run this often (validation results always show)


class SweepError(Exception):
    """A bad spec, or variants whose settings changed since their runs; the message says the fix."""


@dataclass
class Spec:
    group: str
    base: Path                              # the preset's TOML file
    variants: dict[str, list[str]]          # name -> overrides
    common: list[str] = field(default_factory=list)
    data: Path | None = None
    valid_text: Path | None = None
    runs: Path = Path("runs/sweeps")
    path: Path | None = None                # the spec file
    question: str = ""                      # what the sweep asks (for experiments/LOG.md)
    conclusion: str = ""                    # what its results answer ("" until written)


@dataclass
class Plan:
    """One variant's run: its overrides of the base preset and its folder."""
    variant: str
    overrides: list[str]
    config: Any                             # config.TrainConfig
    run: RunFolder
    base: Path                              # the preset
    state: str = "new"                      # new | resume | done | kept (done; only its results remain)

    @property
    def command(self) -> list[str]:
        """The ``cs336 train`` command line of this run."""
        return ["cs336", "train", "--config", str(self.base), *[a for o in self.overrides for a in ("--set", o)]]


def load_spec(path: str | os.PathLike) -> Spec:
    """Read and check a sweep spec (see the module's docstring for its keys).

    Nothing is looked up but the preset: the data may be absent (``--list`` on a fresh clone reads
    the results in experiments/); ``run_sweep`` checks it before it starts a run.
    """
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep spec {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"{path}: not valid TOML: {err}") from None
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise SweepError(f"{path}: unknown key {unknown[0]!r}; a spec has {', '.join(SPEC_KEYS)}")
    examples = {"group": "learning_rate", "base": "cpu"}
    for key in ("group", "base"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise SweepError(f"{path}: `{key} = \"...\"` is missing (e.g. {key} = \"{examples[key]}\"), "
                             "above [variants]")
    for key in ("data", "valid_text", "runs"):
        if key in data and (not isinstance(data[key], str) or not data[key]):
            raise SweepError(f"{path}: {key} must be a path in quotes, e.g. {key} = \"data/english\"")
    for key in TEXT_KEYS:
        if key in data and not isinstance(data[key], str):
            raise SweepError(f"{path}: {key} must be a string in quotes, e.g. {key} = \"...\" "
                             f"(got {type(data[key]).__name__} {data[key]!r})")
    if not _NAME.match(data["group"]):
        raise SweepError(f"{path}: group {data['group']!r} must be a plain name (letters, digits, _ . + = -)")

    def overrides(value: Any, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SweepError(f"{path}: {where} must be a list of \"section.key=value\" strings")
        return list(value)

    variants = data.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise SweepError(f"{path}: no [variants]; add e.g. `[variants]` and `lr_1e-3 = [\"optim.lr=1e-3\"]`")
    for name in variants:
        if name in SPEC_KEYS:  # a top-level key written below [variants] lands in it
            raise SweepError(f"{path}: {name!r} is in [variants]: move `{name} = ...` above the [variants] line "
                             "(or give that variant another name)")
        if not _NAME.match(name):
            raise SweepError(f"{path}: variant name {name!r} must be a plain name (letters, digits, _ . + = -)")
    from cs336_basics.pipeline import PipelineError, find_preset

    try:
        base = find_preset(data["base"])
    except PipelineError as err:
        raise SweepError(f"{path}: base: {err}") from None
    data_dir = Path(data["data"]) if "data" in data else None
    valid_text = Path(data["valid_text"]) if "valid_text" in data else None
    if valid_text is None and data_dir is not None and (data_dir / "valid.txt").is_file():
        valid_text = data_dir / "valid.txt"
    return Spec(group=data["group"], base=base, variants={k: overrides(v, f"variant {k}") for k, v in variants.items()},
                common=overrides(data.get("set", []), "set"), data=data_dir, valid_text=valid_text,
                runs=Path(data.get("runs", "runs/sweeps")), path=path,
                question=data.get("question", "").strip(), conclusion=data.get("conclusion", "").strip())


def _token_folder(data_dir: Path) -> Path:
    """Where a spec's ``data`` folder keeps its token files: the folder itself, or its tokens/ (the
    layout of `cs336 prepare` and of a pipeline run folder) when only that one holds them."""
    tokens = data_dir / "tokens"
    if not (data_dir / "train.npy").is_file() and (tokens / "train.npy").is_file():
        return tokens
    return data_dir


def _uses_cuda(spec: Spec) -> bool:
    from cs336_basics.config import ConfigError, load_config
    from cs336_basics.runtime import resolve_device

    try:
        device = load_config(spec.base, spec.common).run.device
        return resolve_device(device).type == "cuda"
    except ConfigError as err:
        raise SweepError(f"{spec.path}: set: {err}") from None


def plan_runs(spec: Spec, cuda: bool | None = None, experiments: str | os.PathLike | None = None) -> list[Plan]:
    """Every variant's overrides, config and run folder, and what to do with it (new, resume, done, kept).

    A variant without a run folder whose finished (or diverged) result, with the same settings, is in
    ``experiments``/<group>/<variant>/ (a fresh clone of a repository that commits its results) is
    ``kept``: not run again. Raises SweepError naming every variant whose settings differ from its run
    folder's config.toml.
    """
    from cs336_basics.config import ConfigError, load_config

    cuda = _uses_cuda(spec) if cuda is None else cuda
    defaults = ["run.progress=false"] + ([] if cuda else ["run.num_threads=1"])
    plans, changed = [], []
    for name, own in spec.variants.items():
        run = RunFolder(spec.runs / spec.group / name)
        forced = [f"run.out_dir={run.path}"]
        if spec.data is not None:
            tokens = _token_folder(spec.data)
            forced += [f"data.train_tokens={tokens / 'train.npy'}", f"data.valid_tokens={tokens / 'valid.npy'}"]
        overrides = defaults + spec.common + own + forced
        try:
            config = load_config(spec.base, overrides)
        except ConfigError as err:
            raise SweepError(f"variant {name}: {err}") from None
        plan = Plan(name, overrides, config, run, spec.base)
        if run.config.is_file():
            try:
                before = load_config(run.config)
            except ConfigError as err:  # damaged, or written by a version with other settings
                raise SweepError(f"variant {name}: its run folder's {run.config} cannot be read ({err}); delete "
                                 f"{run.path} to run it again") from None
            differences = _differences(before, config)
            if differences:
                changed.append((name, run.path, differences))
                continue
            status = read_json_object(run.path / "status.json").get("status")
            plan.state = "done" if status in DONE else ("resume" if run.latest.is_file() else "new")
        elif experiments is not None and _kept(Path(experiments) / spec.group / name, config):
            plan.state = "kept"
        plans.append(plan)
    if changed:
        what = ", ".join(f"{name} ({'; '.join(diff)})" for name, _, diff in changed)
        folders = " ".join(str(folder) for _, folder, _ in changed)
        raise SweepError(
            f"variant{'s' if len(changed) > 1 else ''} {what}: settings changed since the run; nothing was run. "
            f"Delete {folders} to run {'them' if len(changed) > 1 else 'it'} again with the new settings, "
            "or give the new settings a new variant name")
    return plans


def _kept(results: Path, config) -> bool:
    """Whether ``results`` (experiments/<group>/<variant>/) holds a finished or diverged run of ``config``."""
    from cs336_basics.config import ConfigError, load_config

    if read_json_object(results / "status.json").get("status") not in DONE or not (results / "config.toml").is_file():
        return False
    try:
        kept = load_config(results / "config.toml")
    except ConfigError:
        return False
    kept.run.out_dir = config.run.out_dir  # (the results outlive their run folder, wherever it was)
    return not _differences(kept, config)


def _differences(old, new) -> list[str]:
    """'section.key: old -> new' for each setting that differs (NOT_COMPARED [run] keys aside)."""
    found = []
    a, b = dataclasses.asdict(old), dataclasses.asdict(new)
    for section in b:
        for key in b[section]:
            if section == "run" and key in NOT_COMPARED:
                continue
            if a[section].get(key) != b[section][key]:
                found.append(f"{section}.{key}: {a[section].get(key)!r} -> {b[section][key]!r}")
    return found


def _metrics(run: RunFolder) -> list[dict[str, Any]]:
    """The run's metrics records so far (a last line still being written is skipped)."""
    from cs336_basics.plotting import read_metrics

    return read_metrics(run.metrics) if run.metrics.is_file() else []


# ------------------------------------------------------------------------------------ running
class _Runner:
    """Runs plans (run_one, from worker threads), prints their progress to `out`, stops them (interrupt)."""

    def __init__(self, spec: Spec, experiments: Path, out: TextIO):
        self.spec, self.experiments, self.out = spec, experiments, out
        self.lock = threading.RLock()  # (re-entered when a Ctrl-C lands while the main thread prints)
        self.eval_lock = threading.Lock()
        self.procs: dict[str, subprocess.Popen] = {}
        self.active: dict[str, tuple[Plan, int]] = {}  # variant -> (plan, the step it started from)
        self.stopping = False

    def say(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out, flush=True)

    def _spawn(self, plan: Plan, args: list[str], log) -> int | None:
        """Run ``python ARGS`` with its output to ``log``; its exit status (None: not started, the sweep stops)."""
        env = dict(os.environ)
        threads = plan.config.run.num_threads
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        with self.lock:  # (so that interrupt() either sees this process or stops it from starting)
            if self.stopping:
                return None
            # a session of its own: a Ctrl-C in the terminal reaches the sweep, which passes it on once
            proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
            self.procs[plan.variant] = proc
        try:
            return proc.wait()
        finally:
            with self.lock:
                self.procs.pop(plan.variant, None)

    def run_one(self, plan: Plan) -> dict[str, Any]:
        if self.stopping:
            return {}
        from cs336_basics.runtime import environment

        run = plan.run
        run.path.mkdir(parents=True, exist_ok=True)
        resume = plan.state == "resume"
        atomic_write(run.path / "env.json", json.dumps(environment(plan.config.run.num_threads, plan.config.run.device),
                                                       indent=1) + "\n")
        train_args = ["-m", "cs336_basics.cli", "train", "--config", str(plan.base),
                      *[a for o in plan.overrides for a in ("--set", o)]] + (["--resume"] if resume else [])
        records = _metrics(run) if resume else []
        start = records[-1]["step"] if records else 0
        with self.lock:
            self.active[plan.variant] = (plan, start)
        self.say(f"{plan.variant}: {f'resuming from step {start}' if resume else 'starting'}")
        log_path = run.path / "train.log"
        try:
            with open(log_path, "ab") as log:  # (every attempt's output, one after another)
                log.write(f"$ {shlex.join(['python', *train_args])}\n".encode())
                log.flush()
                offset = log.tell()  # this attempt's output starts here
                rc = self._spawn(plan, train_args, log)
        finally:
            with self.lock:
                self.active.pop(plan.variant, None)
        if rc is None:  # the sweep was stopped before this run started
            return {}
        status = self._status(plan, rc, log_path, offset)
        if status["status"] == "finished":
            self._evaluate(plan, status)
        else:
            run.eval.unlink(missing_ok=True)  # (an eval.json of an earlier, finished, run of other settings)
        atomic_write(run.path / "status.json", json.dumps(status, indent=1) + "\n")
        self._keep(plan)
        self.say(f"{plan.variant}: {_describe(status)}")
        return status

    def _status(self, plan: Plan, rc: int, log_path: Path, offset: int = 0) -> dict[str, Any]:
        """The run's status record from its exit status, metrics.jsonl and its output (from ``offset``)."""
        records = _metrics(plan.run)
        trained = [r for r in records if "train/loss" in r]
        finite = [r for r in trained if is_finite_number(r["train/loss"])]
        vals = [r for r in records if is_finite_number(r.get("val/loss"))]
        status = {
            "group": self.spec.group, "variant": plan.variant, "status": "finished",
            "step": records[-1]["step"] if records else 0, "max_steps": plan.config.schedule.max_steps,
            "train_loss": finite[-1]["train/loss"] if finite else None,
            "val_loss": vals[-1]["val/loss"] if vals else None, "bits_per_byte": None,
            "wallclock_s": records[-1].get("wallclock_s") if records else None,
            "command": shlex.join(plan.command), "message": "",
        }
        if rc == 0:
            return status
        status["val_loss"] = None  # (the column of results: only a finished run's)
        with open(log_path, "rb") as log:
            log.seek(offset)
            lines = [ln for ln in log.read().decode("utf-8", errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("cs336 train:")]
        message = errors[-1] if errors else (lines[-1] if lines else f"exit status {rc}")
        status["message"] = message.removeprefix("cs336 train: ").removeprefix("error: ")
        diverged = _DIVERGED.search(message)
        if diverged:
            status |= {"status": "diverged", "step": int(diverged.group(1) or diverged.group(2)),
                       "last_finite_loss": status["train_loss"]}
        elif rc in (128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM) or self.stopping:
            status["status"] = "interrupted"
            status["message"] = ("checkpoint saved; the same command resumes it" if plan.run.latest.is_file()
                                 else "stopped before its first checkpoint; the same command starts it again")
        else:
            status["status"] = "failed"
            how = f"killed by {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.valid_signals() else \
                f"exit status {rc}"
            status["message"] += f" ({how}; see {log_path})"
        return status

    def _evaluate(self, plan: Plan, status: dict[str, Any]) -> None:
        """eval.json in the run folder (one evaluation at a time: each sets torch's thread count to the run's)."""
        from cs336_basics.pipeline import evaluate_run

        valid_text = str(self.spec.valid_text) if self.spec.valid_text is not None else None
        try:
            with self.eval_lock:
                scores = evaluate_run(plan.run.path, plan.config.data.valid_tokens, valid_text)
        except Exception as err:  # a result like any other: recorded, and the sweep goes on
            status["message"] = f"the evaluation failed: {type(err).__name__}: {err}"
            return
        atomic_write(plan.run.eval, json.dumps(scores, indent=1) + "\n")
        status["val_loss"], status["bits_per_byte"] = scores["val_loss"], scores["bits_per_byte"]
        if scores.get("note"):
            status["message"] = scores["note"]

    def _keep(self, plan: Plan) -> None:
        """The run's small files into experiments/<group>/<variant>/ (a file already there as it is: left alone)."""
        dest = self.experiments / self.spec.group / plan.variant
        dest.mkdir(parents=True, exist_ok=True)
        for name in RESULT_FILES:
            source, copy = plan.run.path / name, dest / name
            if source.is_file():
                data = source.read_bytes()
                if not copy.is_file() or copy.read_bytes() != data:
                    atomic_write(copy, data)
            else:
                copy.unlink(missing_ok=True)

    def watch(self, positions: dict[str, tuple[int, float]]) -> None:
        """Print new progress of each active run (at most one line per PROGRESS_EVERY_S, but every evaluation)."""
        with self.lock:
            active = list(self.active.values())
        for plan, start in active:
            seen, last_print = positions.get(plan.variant, (start, 0.0))
            records = _metrics(plan.run)
            new = [r for r in records if r.get("step", 0) > seen and "train/loss" in r]
            if not new:
                continue
            now = time.perf_counter()
            shown = [r for r in new if "val/loss" in r]
            if not shown and now - last_print >= PROGRESS_EVERY_S:
                shown = new[-1:]
            for r in shown:
                val = f"  val {r['val/loss']:.3f}" if "val/loss" in r else ""
                self.say(f"{plan.variant}: step {r['step']:>6}/{plan.config.schedule.max_steps}  "
                         f"loss {r['train/loss']:.3f}{val}  lr {r['lr']:.1e}  {r.get('wallclock_s', 0):.1f} s")
            positions[plan.variant] = (new[-1]["step"], now if shown else last_print)

    def interrupt(self) -> None:
        """Ask every run to stop at its next step (each saves a checkpoint); start no more."""
        with self.lock:
            self.stopping = True
            procs = list(self.procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)


def _describe(status: dict[str, Any]) -> str:
    what = status["status"]
    if what == "diverged":
        loss = status.get("last_finite_loss")
        return f"diverged at step {status['step']} (last finite loss {loss:.3f})" if loss is not None else \
            f"diverged at step {status['step']}"
    if what == "finished":
        val = f", val loss {status['val_loss']:.3f}" if status.get("val_loss") is not None else ""
        bpb = f", {status['bits_per_byte']:.3f} bits/byte" if status.get("bits_per_byte") is not None else ""
        return f"finished at step {status['step']}{val}{bpb}"
    return f"{what} at step {status['step']} ({status.get('message', '')})"


def default_jobs() -> int:
    """One run per core the process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_sweep(spec_path: Spec | str | os.PathLike, jobs: int | None = None, experiments: str | os.PathLike = "experiments",
              out: TextIO | None = None) -> list[dict[str, Any]]:
    """Run (or finish) every variant of the spec; print progress and a summary to ``out`` (stdout).

    Returns each variant's status record. Raises SweepError for a bad spec, changed variants, missing
    token files or another sweep of the same group running; KeyboardInterrupt after Ctrl-C (or SIGTERM)
    once every run has saved its checkpoint.
    """
    spec = spec_path if isinstance(spec_path, Spec) else load_spec(spec_path)
    return _sweep(spec, jobs, experiments, out or sys.stdout)


def _sweep(spec: Spec, jobs: int | None, experiments: str | os.PathLike, out: TextIO) -> list[dict[str, Any]]:
    from cs336_basics.runs import RunInUse, run_lock

    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs {jobs} must be at least 1")
    cuda = _uses_cuda(spec)
    # a bad variant, changed settings or missing token files: refused before anything is written
    _check_inputs(spec, [p for p in plan_runs(spec, cuda, experiments) if p.state not in ("done", "kept")])
    with ExitStack() as stack:
        try:  # one sweep of a group at a time (runs/sweeps/<group>/.lock)
            stack.enter_context(run_lock(spec.runs / spec.group))
        except RunInUse as err:
            raise SweepError(f"another sweep of {spec.group} is running: {err}") from None
        plans = plan_runs(spec, cuda, experiments)  # (again, now that no other sweep can change the folders)
        return _run_plans(spec, plans, cuda, jobs, Path(experiments), out)


def _check_inputs(spec: Spec, todo: list[Plan]) -> None:
    """The token files (and validation text) the runs to do will read exist, or a SweepError saying what to do."""
    for plan in todo:
        for key in ("train_tokens", "valid_tokens"):
            path = Path(getattr(plan.config.data, key))
            if not path.is_file():
                how = (f"point `data` in {spec.path} at a folder that holds train.npy and valid.npy" if spec.data
                       else f"make them first (`cs336 prepare {spec.base.stem}`), or set `data` in {spec.path}")
                raise SweepError(f"{path} does not exist (data.{key} of variant {plan.variant}); {how}")
    if todo and spec.valid_text is not None and not spec.valid_text.is_file():
        raise SweepError(f"{spec.path}: valid_text {str(spec.valid_text)!r} does not exist")


def _run_plans(spec: Spec, plans: list[Plan], cuda: bool, jobs: int | None, experiments: Path,
               out: TextIO) -> list[dict[str, Any]]:
    todo = [p for p in plans if p.state not in ("done", "kept")]
    runner = _Runner(spec, experiments, out)
    for p in plans:
        if p.state == "done":
            print(f"{p.variant}: skipped ({read_json_object(p.run.path / 'status.json').get('status')} before)", file=out)
            runner._keep(p)  # (into this --experiments folder too; files already there as they are: untouched)
        elif p.state == "kept":
            print(f"{p.variant}: skipped (its result is in {experiments / spec.group / p.variant}; delete that "
                  "folder to run it again)", file=out)
    if cuda:
        if jobs not in (None, 1):
            print(f"note: on a GPU the runs go one after another (--jobs {jobs} ignored)", file=out)
        jobs = 1
    jobs = max(1, min(jobs or default_jobs(), len(todo) or 1))
    if todo:
        print(f"sweep {spec.group}: {len(todo)} run(s), {jobs} at a time, in {spec.runs / spec.group}", file=out, flush=True)
    interrupted = False

    def stop(first: bool) -> None:
        if first:
            print("Ctrl-C: every run saves a checkpoint and stops; the same command resumes them", file=out, flush=True)
        runner.interrupt()  # (a second time: the runs stop at once, and still save)

    # SIGTERM (`kill`, a job scheduler) stops the sweep like Ctrl-C: the runs, in sessions of their own,
    # would not see it and would go on without the sweep
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main_thread else None
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures: list[Future] = []
            positions: dict[str, tuple[int, float]] = {}
            while True:
                try:  # (the whole wait: a Ctrl-C anywhere in it must reach the runs, or the pool waits for them)
                    for p in todo[len(futures):]:
                        futures.append(pool.submit(runner.run_one, p))
                    while not all(f.done() for f in futures):
                        time.sleep(POLL_S)
                        runner.watch(positions)
                    break
                except KeyboardInterrupt:
                    stop(first=not interrupted)
                    interrupted = True
            for f in futures:
                f.result()  # an error in the sweep itself (not in a run) surfaces here
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    results = sweep_results(spec, experiments)
    print(format_summary(spec.group, results), file=out, flush=True)
    if interrupted:
        raise KeyboardInterrupt
    return results


def sweep_results(spec: Spec | str | os.PathLike, experiments: str | os.PathLike = "experiments") -> list[dict[str, Any]]:
    """Each variant's status record: from its run folder, else from experiments/<group>/<variant>/,
    else what its run folder shows (interrupted at step N, or not run)."""
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    results = []
    for name in spec.variants:
        run = RunFolder(spec.runs / spec.group / name)
        status = read_json_object(run.path / "status.json") or read_json_object(Path(experiments) / spec.group / name / "status.json")
        if not status:
            records = _metrics(run)
            status = {"variant": name, "status": "interrupted" if run.latest.is_file() else "not run",
                      "step": records[-1]["step"] if records else 0,
                      "wallclock_s": records[-1].get("wallclock_s") if records else None}
        results.append(status)
    return results


REPRODUCE_TOLERANCE = 0.01  # bits per byte: how close a re-run must come to the committed result


def reproduce(spec_path: str | os.PathLike, variants: list[str], jobs: int | None = None,
              experiments: str | os.PathLike = "experiments", runs: str | os.PathLike = "runs/reproduce",
              out: TextIO | None = None) -> list[dict[str, Any]]:
    """Train ``variants`` of a spec again from scratch and compare their bits per byte with the results
    committed in ``experiments``/<group>/<variant>/.

    The runs go to ``runs``/<group>/<variant>/ (their small files to ``runs``/results/), so neither the
    sweep's own run folders nor the committed results are touched; a folder left by an earlier
    reproduction is reused (finished: compared again; interrupted: resumed). Returns one record per
    variant: committed and new bits per byte, their difference and whether it is within
    REPRODUCE_TOLERANCE. A run budgeted by wall-clock (schedule.max_seconds) reproduces only on a machine as
    fast and as idle as the first one: its record says so.
    """
    from cs336_basics.config import load_config

    out = out or sys.stdout
    spec = load_spec(spec_path)
    unknown = [v for v in variants if v not in spec.variants]
    if unknown or not variants:
        raise SweepError(f"{spec.path}: no variant {unknown[0]!r}; it has {', '.join(spec.variants)}" if unknown
                         else "name the variants to reproduce")
    committed = {}
    for name in variants:
        record = read_json_object(Path(experiments) / spec.group / name / "eval.json")
        if not is_finite_number(record.get("bits_per_byte")):
            raise SweepError(f"{Path(experiments) / spec.group / name}/eval.json has no bits per byte to reproduce")
        committed[name] = record["bits_per_byte"]
    again = dataclasses.replace(spec, variants={v: spec.variants[v] for v in variants}, runs=Path(runs))
    statuses = _sweep(again, jobs, Path(runs) / "results", out)
    rows = []
    for status in statuses:
        name, new = status["variant"], status.get("bits_per_byte")
        diff = new - committed[name] if is_finite_number(new) else None
        timed = (load_config(again.base, [*again.common, *again.variants[name]]).schedule.max_seconds > 0)
        rows.append({"variant": name, "committed": committed[name], "new": new, "difference": diff,
                     "within": diff is not None and abs(diff) <= REPRODUCE_TOLERANCE, "timed": timed})
    print(f"reproduce {spec.group} (tolerance {REPRODUCE_TOLERANCE} bits/byte):", file=out)
    for r in rows:
        new = f"{r['new']:.4f}" if r["difference"] is not None else "-"
        diff = f"{r['difference']:+.4f}" if r["difference"] is not None else "-"
        note = " (budgeted by wall-clock: depends on the machine's speed)" if r["timed"] else ""
        print(f"  {r['variant']}: committed {r['committed']:.4f}, now {new} ({diff}): "
              f"{'reproduced' if r['within'] else 'NOT reproduced'}{note}", file=out)
    return rows


def format_summary(group: str, results: list[dict[str, Any]]) -> str:
    """A table: variant, status, steps, final validation loss, bits per byte, wall-clock."""
    def num(x: Any, fmt: str) -> str:
        return format(x, fmt) if is_finite_number(x) else "-"
    rows = [(r.get("variant", "?"), r.get("status", "?"), str(r.get("step", "-")), num(r.get("val_loss"), ".4f"),
             num(r.get("bits_per_byte"), ".4f"), num(r.get("wallclock_s"), ".1f")) for r in results]
    head = ("variant", "status", "steps", "val loss", "bits/byte", "wall-clock s")
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    lines = [f"sweep {group}:", "  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
