# Hand-written plumbing (not exported from a notebook): the end-to-end job behind `cs336 pipeline`.
"""Text files in, a trained model, its scores, samples and learning curves out.

    >>> report = run_pipeline("cpu", data_dir="../shared/data/english", out_dir="runs/cpu")  # doctest: +SKIP
    >>> print(format_report(report))                                                          # doctest: +SKIP

Stages, and what each leaves in the run directory OUT:

1. ``tokenizer``  BPE trained on DIR/train.txt (vocab = the preset's model.vocab_size, special
   token <|endoftext|>)                                     -> OUT/tokenizer/
2. ``tokenize``   DIR/train.txt, DIR/valid.txt encoded        -> OUT/tokens/{train,valid}.npy
3. ``train``      configs/<preset>.toml with the data paths overridden -> OUT/config.toml,
   metrics.jsonl, checkpoints/latest.pt (an unfinished run is resumed)
4. ``evaluate``   loss over the whole validation file, perplexity, bits per byte -> OUT/eval.json
5. ``samples``    text from the trained model                  -> OUT/samples.txt
6. ``plot``       train/val loss vs step and wallclock          -> OUT/learning_curves.png

One process writes a run folder at a time (``runs.run_lock``: a second pipeline or ``cs336 train``
into the same folder stops at once). A stage is skipped when ``OUT/stages.json`` records that it
finished with the same inputs (size and content hash), the same options and outputs still as
written, so a re-run after an interruption picks up where it stopped, and nothing is skipped on
the strength of timestamps. When the data, the tokenizer's or the training's settings differ from
what made the folder, the pipeline refuses before touching anything and names what changed; the
cheap stages after training (evaluate, samples, plot) are simply redone with the new options.
Every file is written atomically.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from cs336_basics.files import atomic_write, describe_os_error
from cs336_basics.runs import RunFolder, RunInUse, StageRecords, run_lock

END_OF_TEXT = "<|endoftext|>"
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
DEFAULT_DATA = Path("data") / "tinystories"
DEFAULT_PROMPTS = ("Once upon a time", "")
REPO_ROOT = Path(__file__).resolve().parent.parent


class PipelineError(Exception):
    """A user error (bad path, bad preset, a stale run that conflicts); the message says the fix."""


@dataclass
class StageResult:
    name: str
    seconds: float | None  # None: skipped
    note: str = ""


@dataclass
class PipelineReport:
    out_dir: Path
    stages: list[StageResult] = field(default_factory=list)
    eval: dict = field(default_factory=dict)
    sample: str = ""


def find_preset(preset: str) -> Path:
    """A preset name (``cpu`` -> configs/cpu.toml, here or in the repository) or a path to a TOML file."""
    candidates = [Path(preset)] if preset.endswith(".toml") else []
    candidates += [Path("configs") / f"{preset}.toml", REPO_ROOT / "configs" / f"{preset}.toml"]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.toml"))
    raise PipelineError(f"no preset {preset!r}: looked for {', '.join(map(str, candidates))}; "
                        f"known presets: {', '.join(known) or '(none)'}, or pass a path to a .toml file")


def run_pipeline(
    preset: str = "cpu",
    data_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    sample_tokens: int = 256,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int = 0,
    max_eval_tokens: int = 1 << 21,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
    data_only: bool = False,
) -> PipelineReport:
    """Run (or resume) every stage; return what happened and the scores. See the module docstring.

    ``data_only``: stop after the token files (stages 1-2), as ``cs336 prepare`` does.
    """
    from cs336_basics.config import ConfigError, load_config
    from cs336_basics.decoding import check_sampling_options

    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    preset_path = find_preset(preset)
    name = preset_path.stem

    # ---- data: the two text files (TinyStories downloaded when nothing else is asked for)
    if data_dir is None:  # TinyStories, downloaded if absent, and checked against its record if present
        from cs336_basics.download import DownloadError, download_dataset

        data_dir = DEFAULT_DATA
        if not all((data_dir / f).is_file() for f in ("train.txt", "valid.txt")):
            say(f"{data_dir} has no train.txt/valid.txt: downloading TinyStories")
        try:
            download_dataset("tinystories", data_dir.parent, progress=progress)
        except DownloadError as err:
            raise PipelineError(f"{err}; or pass --data DIR with your own train.txt and valid.txt") from None
    data_dir = Path(data_dir)
    train_txt, valid_txt = data_dir / "train.txt", data_dir / "valid.txt"
    for path in (train_txt, valid_txt):
        if not path.is_file():
            raise PipelineError(f"{path} not found: --data must be a folder with train.txt and valid.txt "
                                "(`cs336 download tinystories` makes data/tinystories)")
        if path.stat().st_size == 0:
            raise PipelineError(f"{path} is empty; the pipeline needs text to train and validate on")

    if out_dir is not None and not str(out_dir).strip():
        raise PipelineError("--out is empty; name the run folder (default: runs/PRESET)")
    out = Path(out_dir) if out_dir is not None else Path("runs") / name
    run = RunFolder(out)
    pipeline_overrides = [f"data.train_tokens={run.train_tokens}", f"data.valid_tokens={run.valid_tokens}",
                          f"data.tokenizer={run.tokenizer}", f"run.out_dir={out}"] + ([] if progress else ["run.progress=false"])
    try:
        config = load_config(preset_path, [*pipeline_overrides, *overrides])
        check_sampling_options(sample_tokens, temperature, top_p)
    except (ConfigError, ValueError) as err:
        raise PipelineError(str(err)) from None
    vocab_size = config.model.vocab_size
    if vocab_size < 256 + 1:
        raise PipelineError(
            f"model.vocab_size = {vocab_size} leaves no room for the 256 bytes and {END_OF_TEXT}; "
            f"add --set model.vocab_size=N with N >= 257 (a few hundred more gives BPE merges to learn)")
    try:
        with run_lock(out):
            return _run_stages(out, config, preset_path, data_dir, prompts, sample_tokens, temperature, top_p,
                               seed, max_eval_tokens, say, progress, data_only)
    except RunInUse as err:
        raise PipelineError(str(err)) from None
    except OSError as err:
        if err.errno in WRITE_ERRNOS:
            raise PipelineError(describe_os_error(err)) from None
        raise


def prepare_data(
    preset: str = "cpu",
    data_dir: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
) -> tuple[Path, PipelineReport]:
    """Make the tokenizer and token files a preset trains on, where its ``[data]`` paths look.

    The data folder F is the parent of the preset's ``data.tokenizer`` (``data/english/tokenizer``
    -> ``data/english``) and is laid out as the data part of a pipeline run: F/tokenizer/,
    F/tokens/train.npy, F/tokens/valid.npy (and F/stages.json). The text comes from ``data_dir``;
    without it, from F/train.txt and F/valid.txt, downloaded first when F is named after a data set
    (``data/tinystories``, ``data/owt``). Returns F and the report of the two stages.

        >>> prepare_data("cpu", "../shared/data/english")[0]   # doctest: +SKIP
        PosixPath('data/english')
    """
    from cs336_basics.config import ConfigError, load_config
    from cs336_basics.download import DATASETS, DownloadError, download_dataset

    preset_path = find_preset(preset)
    try:
        config = load_config(preset_path, list(overrides))
    except ConfigError as err:
        raise PipelineError(str(err)) from None
    folder = Path(config.data.tokenizer).parent
    layout = RunFolder(folder)
    wanted = {"data.tokenizer": layout.tokenizer, "data.train_tokens": layout.train_tokens,
              "data.valid_tokens": layout.valid_tokens}
    found = {"data.tokenizer": config.data.tokenizer, "data.train_tokens": config.data.train_tokens,
             "data.valid_tokens": config.data.valid_tokens}
    if off := [f"{key} = {found[key]!r} (expected {str(path)!r})" for key, path in wanted.items()
               if Path(found[key]) != path]:
        raise PipelineError(f"{preset_path}'s [data] paths do not follow the data-folder layout "
                            f"(F/tokenizer, F/tokens/train.npy, F/tokens/valid.npy): {'; '.join(off)}")
    if data_dir is None:
        if folder.name in DATASETS:  # fetched if absent, checked against its download record if present
            try:
                download_dataset(folder.name, folder.parent, progress=progress)
            except DownloadError as err:
                raise PipelineError(f"{err}; or pass --data DIR with your own train.txt and valid.txt") from None
        elif not all((folder / f).is_file() for f in ("train.txt", "valid.txt")):
            raise PipelineError(f"{folder} has no train.txt and valid.txt to tokenize: pass --data DIR, a folder "
                                f"with them (e.g. cs336 prepare {preset} --data ../shared/data/english)")
        data_dir = folder
    report = run_pipeline(str(preset_path), data_dir, folder, overrides, log=log, progress=progress, data_only=True)
    return folder, report


# Settings that change how a run is carried out, not what it computes: a resumed run may change them.
# (schedule.max_steps is handled apart: more steps resume a finished run, as a longer schedule.)
HOW_TO_RUN = {"run.progress", "run.num_threads", "run.device", "run.wandb", "run.wandb_project",
              "run.wandb_mode", "run.peak_flops", "run.out_dir", "schedule.max_steps",
              "data.train_tokens", "data.valid_tokens", "data.tokenizer"}


def training_options(config, records: StageRecords | None = None) -> dict:
    """The run's settings as ``{"section.key": value}``, less those in HOW_TO_RUN.

    With ``records``: less the settings that its train stage does not record and that hold their
    default, i.e. settings newer than the cs336 that made the run, which that run had at their
    default (new model switches default to off), so that the run still counts as up to date.
    """
    import dataclasses

    def flat(c) -> dict:
        return {f"{section}.{key}": value for section, values in dataclasses.asdict(c).items()
                for key, value in values.items() if f"{section}.{key}" not in HOW_TO_RUN}

    options = flat(config)
    recorded = records.stages.get("train", {}).get("options") if records is not None else None
    if recorded is None:
        return options
    from cs336_basics.config import unrecorded_defaults_dropped

    return unrecorded_defaults_dropped(options, recorded, flat(type(config)()))


def _run_stages(out: Path, config, preset_path: Path, data_dir: Path, prompts, sample_tokens, temperature,
                top_p, seed, max_eval_tokens, say, progress, data_only=False) -> PipelineReport:
    """The stages, with ``out`` locked. See the module docstring."""
    from cs336_basics.config import ConfigError

    name, vocab_size = preset_path.stem, config.model.vocab_size
    train_txt, valid_txt = data_dir / "train.txt", data_dir / "valid.txt"
    run = RunFolder(out)
    tok_dir, tokens_dir, train_npy, valid_npy = run.tokenizer, run.tokens, run.train_tokens, run.valid_tokens
    latest = run.latest
    try:
        records = StageRecords(out)
    except ValueError as err:
        raise PipelineError(str(err)) from None
    report = PipelineReport(out)

    # What each stage reads and is told: (inputs, options)
    tokenizer_io = ({"train.txt": train_txt}, {"vocab_size": vocab_size, "special_tokens": [END_OF_TEXT]})
    tokenize_io = ({"train.txt": train_txt, "valid.txt": valid_txt, "tokenizer": tok_dir}, {})
    train_io = ({"train.npy": train_npy, "valid.npy": valid_npy}, training_options(config, records))

    # ---- refuse up front, before anything is overwritten, when the folder holds other work
    started = [p for p in (run.config, latest) if p.exists()]
    if started and "train" not in records:
        raise PipelineError(
            f"{out} holds a run with no record of what made it ({started[0].name}; written by `cs336 train` or "
            f"an older cs336); use another --out, or delete {out} to start fresh")
    # (a stage that never finished is simply run; one that finished with other inputs is not redone,
    # since the stages after it were made from its outputs)
    for stage_name, (inputs, options) in (("tokenizer", tokenizer_io), ("tokenize", tokenize_io), ("train", train_io)):
        if stage_name not in records or (stage_name == "train" and not latest.exists()):
            continue  # (a run whose checkpoints were deleted trains again from the start)
        if changed := records.changes(stage_name, inputs, options):
            raise PipelineError(
                f"{out} was made with other data or settings for its {stage_name} stage ({'; '.join(changed)}); "
                f"use another --out, or delete {out} to start fresh")

    def stage(label: str, io: tuple[dict, dict], outputs: Sequence[Path], work: Callable[[], str]) -> None:
        inputs, options = io
        if not records.changes(label, inputs, options, outputs):
            say(f"[{label}] skipped: {', '.join(str(p) for p in outputs[:2])} up to date")
            report.stages.append(StageResult(label, None, "skipped"))
            return
        records.forget(label)
        say(f"[{label}] ...")
        start = time.perf_counter()
        note = work()
        seconds = time.perf_counter() - start
        records.record(label, inputs, options, outputs)
        say(f"[{label}] done in {seconds:.1f} s{': ' + note if note else ''}")
        report.stages.append(StageResult(label, seconds, note))

    # ---- 1. tokenizer
    def train_tokenizer() -> str:
        from cs336_basics.bpe import train_bpe
        from cs336_basics.tokenizer import Tokenizer

        vocab, merges = train_bpe(train_txt, vocab_size, [END_OF_TEXT], progress=None if progress else False)
        Tokenizer(vocab, merges, special_tokens=[END_OF_TEXT]).save(tok_dir)
        return f"{len(vocab)} tokens, {len(merges)} merges"

    stage("tokenizer", tokenizer_io, [tok_dir], train_tokenizer)

    from cs336_basics.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(tok_dir)

    # ---- 2. token files
    def tokenize() -> str:
        from cs336_basics.token_files import tokenize_file

        tokens_dir.mkdir(parents=True, exist_ok=True)
        counts = []
        for txt, npy in ((train_txt, train_npy), (valid_txt, valid_npy)):
            tokenize_file(tokenizer, txt, npy, progress=progress)
            counts.append(_count_tokens(npy))
        return f"{counts[0]:,} train and {counts[1]:,} valid tokens"

    stage("tokenize", tokenize_io, [train_npy, valid_npy], tokenize)
    context = config.model.context_length
    for txt, npy in ((train_txt, train_npy), (valid_txt, valid_npy)):
        if (n := _count_tokens(npy)) <= context:
            raise PipelineError(f"{txt} is too short: {n} tokens, fewer than model.context_length + 1 = "
                                f"{context + 1}; use a longer {txt.name} (or a smaller --set model.context_length)")
    if data_only:
        return report

    # ---- 3. train (resumes an unfinished run, or a finished one asked for more steps)
    done_step = _checkpoint_step(latest)
    if done_step is not None and done_step >= config.schedule.max_steps and not records.changes("train", *train_io, [latest]):
        say(f"[train] skipped: {latest} is at step {done_step} of {config.schedule.max_steps}")
        report.stages.append(StageResult("train", None, "skipped"))
    else:
        from cs336_basics.train import train

        resume = done_step is not None
        records.record("train", *train_io)  # what this run trains on, kept from its first step
        say(f"[train] {'resuming at step ' + str(done_step) if resume else 'training'} "
            f"({config.schedule.max_steps} steps, {preset_path})")
        start = time.perf_counter()
        try:
            train(config, resume=resume)
        except ConfigError as err:
            raise PipelineError(str(err)) from None
        seconds = time.perf_counter() - start
        records.record("train", *train_io, [latest])
        say(f"[train] done in {seconds:.1f} s")
        report.stages.append(StageResult("train", seconds, "resumed" if resume else ""))

    # ---- 4. evaluate on the whole validation file
    eval_json = run.eval

    def evaluate() -> str:
        scores = evaluate_run(out, valid_npy, valid_txt, max_tokens=max_eval_tokens, progress=progress)
        note = ""
        if scores["weights"] == "average":  # also score the trained weights themselves, for comparison
            trained = evaluate_run(out, valid_npy, valid_txt, max_tokens=max_eval_tokens, progress=progress,
                                   average=False)
            scores |= {"trained_val_loss": trained["val_loss"], "trained_bits_per_byte": trained["bits_per_byte"]}
            note = f"; weight average (trained weights: {trained['bits_per_byte']:.4f})"
        atomic_write(eval_json, json.dumps(scores, indent=2) + "\n")
        return (f"val loss {scores['val_loss']:.4f}, ppl {scores['val_ppl']:.2f}, "
                f"{scores['bits_per_byte']:.4f} bits/byte{note}")

    checkpoint_and_valid = {"latest.pt": latest, "valid.npy": valid_npy, "valid.txt": valid_txt}
    stage("evaluate", (checkpoint_and_valid, {"max_eval_tokens": max_eval_tokens}), [eval_json], evaluate)
    report.eval = run.read_eval()

    # ---- 5. samples
    samples_txt = run.samples

    def write_samples() -> str:
        text = sample_run(out, tokenizer, prompts, sample_tokens, temperature, top_p, seed)
        atomic_write(samples_txt, text)
        return f"{len(prompts)} samples of up to {sample_tokens} tokens"

    sampling = {"prompts": list(prompts), "sample_tokens": sample_tokens, "temperature": temperature,
                "top_p": top_p, "seed": seed}
    stage("samples", ({"latest.pt": latest, "tokenizer": tok_dir}, sampling), [samples_txt], write_samples)
    report.sample = _first_sample(samples_txt.read_text(encoding="utf-8"))

    # ---- 6. learning curves
    figure = run.curves
    title = f"{out.name} ({name} preset, {data_dir})"

    def plot() -> str:
        from cs336_basics.plotting import plot_learning_curves

        plot_learning_curves([out], figure, labels=[out.name], title=title)
        return str(figure)

    stage("plot", ({"metrics.jsonl": run.metrics}, {"title": title}), [figure], plot)
    return report


def _count_tokens(npy: Path) -> int:
    import numpy as np

    return int(np.load(npy, mmap_mode="r").shape[0])


def _checkpoint_step(path: Path) -> int | None:
    if not path.is_file():
        return None
    from cs336_basics.serialization import read_checkpoint

    return int(read_checkpoint(path)["iteration"])


def evaluate_run(run_dir, valid_npy, valid_txt, *, max_tokens: int = 1 << 21, batch_size: int = 16,
                 progress: bool = False, average: bool = True) -> dict:
    """Mean validation loss over consecutive non-overlapping windows (up to ``max_tokens`` predicted
    tokens), perplexity, and bits per byte = loss x (tokens / bytes of valid_txt) / ln 2 (None,
    with a note, when ``valid_txt`` is None: the text the tokens came from is not known).

    The model is the one ``load_model_from_run`` gives: the run's weight average when it kept one
    (optim.ema_halflife > 0; ``"weights": "average"``) unless ``average=False``.

    Each window of context_length + 1 tokens predicts its last context_length tokens, so every
    token of the file (but the first) is predicted once, as in a document read in pieces.
    """
    import numpy as np
    import torch
    from tqdm import tqdm

    from cs336_basics.data import batch_at
    from cs336_basics.nn_utils import cross_entropy, perplexity
    from cs336_basics.runs import load_model_from_run
    from cs336_basics.runtime import autocast_dtype, torch_settings

    model, config = load_model_from_run(run_dir, average=average)
    device = next(model.parameters()).device
    tokens = np.load(valid_npy, mmap_mode="r")
    ctx = config.model.context_length
    n_windows = max(0, (len(tokens) - 1) // ctx)
    n_windows = min(n_windows, max(1, max_tokens // ctx))
    if n_windows == 0:
        raise PipelineError(f"{valid_npy} holds {len(tokens)} tokens, fewer than context_length + 1 = {ctx + 1}; "
                            "use a longer valid.txt")
    amp = autocast_dtype(config.run.precision, device)
    total, count = 0.0, 0
    batches = tqdm(range(0, n_windows, batch_size), desc="evaluate", unit="batch", disable=not progress,
                   file=sys.stderr)
    with torch.no_grad(), torch_settings(config.run.num_threads):
        for first in batches:
            starts = np.arange(first, min(first + batch_size, n_windows)) * ctx
            x, y = batch_at(tokens, starts, ctx, device)
            with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
                logits = model(x)
            total += cross_entropy(logits.float(), y).item() * y.numel()
            count += y.numel()
    loss = total / count
    n_bytes = Path(valid_txt).stat().st_size if valid_txt is not None else None
    scores = {
        "val_loss": loss,
        "val_ppl": perplexity(loss),
        "bits_per_byte": loss * len(tokens) / n_bytes / math.log(2) if n_bytes else None,
        "eval_tokens": count,
        "valid_tokens": int(len(tokens)),
        "valid_bytes": int(n_bytes) if n_bytes else None,
        "bytes_per_token": n_bytes / len(tokens) if n_bytes else None,
        "step": _checkpoint_step(RunFolder(run_dir).latest),
        "weights": "average" if average and config.optim.ema_halflife > 0 else "trained",
    }
    if n_bytes is None:
        scores["note"] = "bits per byte not measured: the validation text (valid.txt) was not given"
    return scores


def sample_run(run_dir, tokenizer, prompts, max_new_tokens, temperature, top_p, seed) -> str:
    """samples.txt: one block per prompt, a header line then the prompt and its completion."""
    from cs336_basics.decoding import generate
    from cs336_basics.runs import load_model_from_run
    from cs336_basics.runtime import torch_settings

    model, config = load_model_from_run(run_dir)
    blocks = []
    for i, prompt in enumerate(prompts):
        with torch_settings(config.run.num_threads):
            text = generate(model, tokenizer, prompt, max_new_tokens, temperature, top_p, END_OF_TEXT, seed + i)
        n = len(tokenizer.encode(text))
        blocks.append(f"### prompt {prompt!r}: {n} tokens, temperature {temperature}, top-p {top_p}, "
                      f"seed {seed + i}\n{prompt}{text}\n")
    return "\n".join(blocks)


def _first_sample(samples: str) -> str:
    lines = samples.split("\n")
    body = []
    for line in lines[1:]:
        if line.startswith("### prompt"):
            break
        body.append(line)
    return "\n".join(body).strip()


def format_report(report: PipelineReport, sample_chars: int = 600) -> str:
    """The short report `cs336 pipeline` prints."""
    lines = [f"run: {report.out_dir}", "stage       time"]
    for s in report.stages:
        lines.append(f"{s.name:<11} {'skipped' if s.seconds is None else f'{s.seconds:7.1f} s'}"
                     + (f"  ({s.note})" if s.note and s.seconds is not None else ""))
    e = report.eval
    if e:
        lines.append(f"validation: loss {e['val_loss']:.4f} nats/token, perplexity {e['val_ppl']:.2f}, "
                     f"{e['bits_per_byte']:.4f} bits/byte ({e['eval_tokens']:,} tokens, "
                     f"{e['bytes_per_token']:.2f} bytes/token"
                     + (", the weight average" if e.get("weights") == "average" else "") + ")")
    if report.sample:
        sample = report.sample if len(report.sample) <= sample_chars else report.sample[:sample_chars] + " ..."
        lines += ["sample:", sample]
    run = RunFolder(report.out_dir)
    lines.append(f"files: {run.samples}, {run.curves.name}, {run.eval.name}, {run.metrics.name}")
    return "\n".join(lines)
