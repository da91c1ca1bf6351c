"""The ``cs336`` command line: one subcommand per stage of the pipeline.

Hand-written plumbing (not exported from a notebook): it parses arguments and calls the package.
Heavy imports (torch) happen inside the handlers so ``cs336 --help`` is instant.

    cs336 download tinystories --out data/
    cs336 prepare cpu --data ../shared/data/english      # then: cs336 train --config configs/cpu.toml
    cs336 train-bpe --input data/train.txt --vocab-size 10000 --out runs/tok
    cs336 tokenize --tokenizer runs/tok --input data/train.txt --out data/train.npy
    cs336 train --config configs/cpu.toml --set optim.lr=3e-3
    cs336 generate --run runs/cpu --prompt "Once upon a time"
    cs336 pipeline --preset cpu --data ../shared/data/english
    cs336 plot runs/cpu runs/smoke --out figures/curves.png
    cs336 sweep experiments/learning_rate.toml --jobs 2
    cs336 experiments                                     # figures/07_*.png, experiments/LOG.md
"""

from __future__ import annotations

import argparse
import sys


class CLIError(Exception):
    """A user error: printed as one line without a traceback, exit status 2."""


# ---------------------------------------------------------------- download (tokenizer issue)
def _add_download(sub) -> None:
    p = sub.add_parser(
        "download",
        help="download TinyStories or the OpenWebText sample",
        description="Download the handout's data set into OUT/NAME/train.txt and OUT/NAME/valid.txt, "
        "with a progress bar. Every file is checked (the size the server announced, and the handout's "
        "known size and sha256); an interrupted download resumes when the command is run again, and a "
        "file that no longer matches its record (OUT/NAME/.download.json) is downloaded again.",
    )
    p.add_argument("dataset", choices=["tinystories", "owt"], help="which data set")
    p.add_argument("--out", default="data", help="parent folder (default: data/)")
    p.add_argument("--base-url", default=None,
                   help="fetch the same files from this address instead of Hugging Face "
                   "(also: env CS336_DATA_URL)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_download)


def _run_download(args) -> int:
    from cs336_basics.download import DownloadError, download_dataset

    try:
        paths = download_dataset(args.dataset, args.out, base_url=args.base_url, progress=not args.quiet)
    except DownloadError as err:
        raise CLIError(str(err)) from None
    for path in paths:
        print(f"{path}  ({path.stat().st_size:,} bytes)")
    return 0


# ---------------------------------------------------------------- train-bpe (tokenizer issue)
def _add_train_bpe(sub) -> None:
    p = sub.add_parser(
        "train-bpe",
        help="train a byte-level BPE tokenizer on a text file",
        description="Train a byte-level BPE tokenizer (GPT-2 pre-tokenization) and save it as "
        "DIR/vocab.json, DIR/merges.txt, DIR/special_tokens.json (load it with Tokenizer.load(DIR)).",
    )
    p.add_argument("--input", required=True, metavar="FILE", help="UTF-8 training text")
    p.add_argument("--vocab-size", required=True, type=int, metavar="N",
                   help="final vocabulary size: 256 bytes + special tokens + merges (e.g. 10000)")
    p.add_argument("--special-token", action="append", default=None, metavar="TOKEN",
                   help="a special token, repeatable (default: <|endoftext|>; pass --no-special-tokens for none)")
    p.add_argument("--no-special-tokens", action="store_true", help="train without any special token")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the tokenizer into (created)")
    p.add_argument("--workers", type=int, default=None, metavar="K",
                   help="pre-tokenization processes (default: all CPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.set_defaults(func=_run_train_bpe)


def _require_writable(folder, shown) -> None:
    """``files.check_writable(folder)`` before any long work; a failure is one line naming ``shown``."""
    import errno

    from cs336_basics import files

    try:
        files.check_writable(folder)
    except FileExistsError:  # a file where the folder should be
        raise CLIError(files.describe_os_error(OSError(errno.ENOTDIR, "Not a directory"), shown)) from None
    except OSError as err:
        raise CLIError(files.describe_os_error(err, shown)) from None


def _check_tokenizer_out(out) -> None:
    """Refuse a --out folder that train-bpe could not write, or that holds files other than a tokenizer's."""
    from cs336_basics.vocab_files import TOKENIZER_FILES

    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} exists and is not a folder; choose a folder path")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in TOKENIZER_FILES)
        if foreign:
            raise CLIError(f"--out {str(out)!r} holds other files ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                           "the tokenizer folder is replaced as a whole, so choose an empty or new folder")
    _require_writable(out.parent, out)  # the new folder is built beside the old one, then renamed


def _run_train_bpe(args) -> int:
    import os
    import resource
    import time
    from pathlib import Path

    from cs336_basics import files
    from cs336_basics.bpe import train_bpe
    from cs336_basics.tokenizer import Tokenizer

    if args.no_special_tokens and args.special_token:
        raise CLIError("--special-token and --no-special-tokens contradict each other; pass only one")
    specials = [] if args.no_special_tokens else (args.special_token or ["<|endoftext|>"])
    if not os.path.isfile(args.input):
        raise CLIError(f"--input {args.input!r} is not a file; give the path of a text file to train on")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers {args.workers} must be at least 1")
    out = Path(args.out)
    _check_tokenizer_out(out)  # before training: a bad --out should not cost a training run
    start = time.perf_counter()
    try:
        vocab, merges = train_bpe(args.input, args.vocab_size, specials, num_workers=args.workers,
                                  progress=False if args.no_progress else None)
    except (ValueError, TypeError) as err:
        raise CLIError(str(err)) from None
    seconds = time.perf_counter() - start
    try:
        Tokenizer(vocab, merges, specials).save(out)  # a unit: a failure leaves the old folder whole
    except OSError as err:
        raise CLIError(files.describe_os_error(err, out)) from None
    except ValueError as err:
        raise CLIError(f"cannot save the tokenizer: {err}") from None
    # ru_maxrss is in KiB on Linux (bytes on macOS); children = the pre-tokenization workers
    scale = 1 if sys.platform == "darwin" else 1024
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    learned = [i for i in vocab if i >= 256 + len(specials)] or list(vocab)  # not the special tokens
    longest_id = max(learned, key=lambda i: (len(vocab[i]), -i))
    longest = vocab[longest_id]
    print(f"trained {len(vocab)} tokens ({len(merges)} merges, special tokens {specials}) on {args.input}")
    print(f"time: {seconds:.1f} s   peak memory: {peak * scale / 2**20:.0f} MiB (largest single process)")
    shown = repr(longest.decode("utf-8", errors="replace"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    print(f"longest token: id {longest_id}, {len(longest)} bytes: {shown}")
    print(f"saved: {out}/vocab.json, merges.txt, special_tokens.json")
    return 0


# ---------------------------------------------------------------- tokenize (tokenizer issue)
def _add_tokenize(sub) -> None:
    p = sub.add_parser(
        "tokenize",
        help="encode a text file into a .npy array of token ids",
        description="Encode a text file with a saved tokenizer into a NumPy .npy array of token ids "
        "(uint16, or uint32 for vocabularies over 65,536), in parallel and in constant memory. "
        "Training reads it with np.load(FILE, mmap_mode='r').",
        epilog="example: cs336 tokenize --tokenizer runs/tok --input data/train.txt --out data/train.npy",
    )
    p.add_argument("--tokenizer", required=True, metavar="DIR",
                   help="folder written by `cs336 train-bpe` (vocab.json, merges.txt, special_tokens.json), "
                        "or tiktoken:NAME (e.g. tiktoken:gpt2) for one of tiktoken's encodings")
    p.add_argument("--input", required=True, metavar="FILE", help="UTF-8 text file to encode")
    p.add_argument("--out", required=True, metavar="FILE.npy", help="output .npy path (written atomically; folders created)")
    p.add_argument("--workers", type=int, default=None, metavar="K", help="encoding processes (default: all CPUs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_run_tokenize)


def _run_tokenize(args) -> int:
    import os
    import time

    from cs336_basics import files
    from cs336_basics.token_files import tokenize_file
    from cs336_basics.tokenizer import Tokenizer

    if not os.path.isfile(args.input):
        raise CLIError(f"--input {args.input!r} is not a file; give the path of a text file to encode")
    if not args.out.endswith(".npy"):
        raise CLIError(f"--out {args.out!r} must end in .npy (the output is a NumPy array file)")
    if os.path.isdir(args.out):
        raise CLIError(f"--out {args.out!r} is a folder; give a file path ending in .npy")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers {args.workers} must be at least 1")
    _require_writable(os.path.dirname(os.path.abspath(args.out)), args.out)  # before encoding, which can take a while
    try:
        if args.tokenizer.startswith("tiktoken:"):
            tokenizer = Tokenizer.from_tiktoken(args.tokenizer.split(":", 1)[1])
        else:
            tokenizer = Tokenizer.load(args.tokenizer)
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        raise CLIError(f"cannot load the tokenizer {args.tokenizer!r}: {err}") from None
    start = time.perf_counter()
    try:  # written to a temporary file, then renamed: a failure leaves an old --out as it was
        out = tokenize_file(tokenizer, args.input, args.out, num_workers=args.workers, progress=not args.no_progress)
    except OSError as err:
        raise CLIError(files.describe_os_error(err, args.out)) from None
    seconds = time.perf_counter() - start
    import numpy as np

    ids = np.load(out, mmap_mode="r")
    size = os.path.getsize(args.input)
    print(f"{size:,} bytes -> {ids.shape[0]:,} tokens ({size / max(1, ids.shape[0]):.2f} bytes/token), dtype {ids.dtype}")
    print(f"time: {seconds:.1f} s ({size / 1e6 / max(seconds, 1e-9):.2f} MB/s)   saved: {out}")
    return 0


# ---------------------------------------------------------------- train (training issue)
def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a Transformer LM from a TOML config",
        description="Train a Transformer LM. The run directory (run.out_dir) gets config.toml, metrics.jsonl "
        "and checkpoints/latest.pt. Ctrl-C (exit 130) or SIGTERM (exit 143) saves a checkpoint and stops; "
        "--resume continues exactly. "
        "Under torchrun the same command trains with DistributedDataParallel.",
        epilog="example: cs336 train --config configs/smoke.toml --set optim.lr=3e-3 --set run.out_dir=runs/lr3e-3",
    )
    p.add_argument("--config", required=True, help="TOML preset, e.g. configs/cpu.toml (sections model, optim, "
                   "schedule, data, run); configs/ holds smoke, cpu, cpu_web, tinystories, owt and leaderboard")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set schedule.max_steps=2000")
    p.add_argument("--resume", action="store_true", help="continue from run.out_dir/checkpoints/latest.pt")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from cs336_basics.config import ConfigError, load_config
    from cs336_basics.files import describe_os_error
    from cs336_basics.runs import RunFolder, RunInUse
    from cs336_basics.train import TrainingDiverged, TrainingInterrupted, train

    try:
        config = load_config(args.config, args.overrides)
        run_dir = train(config, resume=args.resume)
    # ValueError: bad data (token ids out of range, too short files), model settings, a damaged
    # checkpoint (CheckpointError) or metrics.jsonl
    except (ConfigError, FileNotFoundError, FileExistsError, TrainingDiverged, ValueError, RunInUse) as err:
        raise CLIError(str(err)) from None
    except OSError as err:  # a full disk or a read-only folder: train names the file it could not write
        raise CLIError(describe_os_error(err)) from None
    except TrainingInterrupted as err:
        print(f"cs336 train: {err}", file=sys.stderr)
        return 128 + err.signum  # 130 for Ctrl-C, 143 for SIGTERM: the shell's convention
    run = RunFolder(run_dir)
    print(f"done: {run.path} ({run.metrics.name}, {run.latest.relative_to(run.path)})", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- generate (training issue)
def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="sample text from a trained run",
        description="Stream a completion of --prompt from a run's latest checkpoint to the terminal, "
        "using the tokenizer named by the run's config (data.tokenizer) unless --tokenizer is given.",
    )
    p.add_argument("--run", required=True, help="run directory (config.toml + checkpoints/latest.pt)")
    p.add_argument("--prompt", default="Once upon a time", help="text to continue (default: %(default)r; "
                   "an empty prompt starts a new document)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="at most this many tokens (default: 256)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default: 0.8)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus mass in (0, 1]; 1 = off (default: 0.95)")
    p.add_argument("--seed", type=int, default=None, help="make the sample reproducible")
    p.add_argument("--no-kv-cache", action="store_true", help="recompute every position each step (slow)")
    p.add_argument("--stop-token", default="<|endoftext|>", help="stop when this token comes (default: %(default)s)")
    p.add_argument("--no-stop", action="store_true", help="do not stop at the stop token")
    p.add_argument("--tokenizer", default=None, help="saved tokenizer directory (default: the run's data.tokenizer)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.set_defaults(func=_run_generate)


def _check_sampling_args(tokens_flag: str, tokens: int, temperature: float, top_p: float) -> None:
    """Reject bad sampling settings before any work (generate, and pipeline before it trains)."""
    from cs336_basics.decoding import check_sampling_options

    try:
        check_sampling_options(tokens, temperature, top_p, tokens_flag)
    except ValueError as err:
        raise CLIError(str(err)) from None


def _run_generate(args) -> int:
    _check_sampling_args("--max-new-tokens", args.max_new_tokens, args.temperature, args.top_p)
    from cs336_basics.decoding import generate_stream
    from cs336_basics.runs import load_model_from_run, load_run_tokenizer
    from cs336_basics.runtime import torch_settings

    try:
        model, config = load_model_from_run(args.run, device=args.device)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from None
    try:
        tokenizer = load_run_tokenizer(args.run, config, args.tokenizer)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(f"cannot load the tokenizer: {err}") from None
    if tokenizer.vocab_size > model.config["vocab_size"]:
        raise CLIError(f"the tokenizer has {tokenizer.vocab_size} tokens, more than the model's "
                       f"{model.config['vocab_size']}; pass the --tokenizer the run was trained with")
    stream = generate_stream(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_p,
                             None if args.no_stop else args.stop_token, args.seed, not args.no_kv_cache)
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    try:
        with torch_settings(config.run.num_threads):  # the run's thread count (tiny models decode faster on one)
            for piece in stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
    except ValueError as err:  # e.g. a stop token the tokenizer does not have
        raise CLIError(str(err)) from None
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return 130
    sys.stdout.write("\n")
    return 0


# ---------------------------------------------------------------- pipeline (training issue)
def _add_pipeline(sub) -> None:
    p = sub.add_parser(
        "pipeline",
        help="tokenizer -> token files -> model -> samples, end to end",
        description="Train a BPE tokenizer on DIR/train.txt, tokenize DIR/train.txt and DIR/valid.txt, train "
        "the model of configs/PRESET.toml, evaluate (loss, perplexity, bits per byte on valid.txt), write "
        "samples.txt and learning_curves.png into the run directory and print a short report. A stage whose "
        "outputs exist is skipped, so running the same command again resumes.",
    )
    p.add_argument("--preset", default="cpu", help="configs/PRESET.toml or a path to a .toml (default: cpu)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="folder with train.txt and valid.txt (default: data/tinystories, downloaded if absent)")
    p.add_argument("--out", default=None, metavar="DIR", help="run directory (default: runs/PRESET)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=3e-3 (repeatable)")
    p.add_argument("--prompt", dest="prompts", action="append", default=None, metavar="PROMPT",
                   help="prompt for samples.txt (repeatable; default: 'Once upon a time' and an empty prompt)")
    p.add_argument("--sample-tokens", type=int, default=256, metavar="N", help="tokens per sample (default: 256)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default: 0.8)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus mass for samples (default: 0.95)")
    p.set_defaults(func=_run_pipeline)


def _run_pipeline(args) -> int:
    # checked now, not after an hour of training when the samples are drawn
    _check_sampling_args("--sample-tokens", args.sample_tokens, args.temperature, args.top_p)
    from cs336_basics.files import describe_os_error
    from cs336_basics.pipeline import DEFAULT_PROMPTS, PipelineError, format_report, run_pipeline
    from cs336_basics.train import TrainingDiverged, TrainingInterrupted

    try:
        report = run_pipeline(args.preset, args.data, args.out, args.overrides,
                              prompts=args.prompts or DEFAULT_PROMPTS, sample_tokens=args.sample_tokens,
                              temperature=args.temperature, top_p=args.top_p)
    # ValueError: bad data or settings found on the way (token ids out of range, a corrupt checkpoint)
    except (PipelineError, TrainingDiverged, FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from None
    except OSError as err:  # a full disk or a read-only folder while training
        raise CLIError(describe_os_error(err)) from None
    except TrainingInterrupted as err:
        print(f"cs336 pipeline: interrupted at step {err.step}; checkpoint saved to {err.checkpoint}; "
              "run the same command again to resume", file=sys.stderr)
        return 128 + err.signum  # 130 for Ctrl-C, 143 for SIGTERM
    print(format_report(report))
    return 0


# ---------------------------------------------------------------- prepare (experiments issue)
def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="make the tokenizer and token files a preset trains on, where it looks for them",
        description="Train the preset's BPE tokenizer on the text and write the token files into the "
        "data folder its [data] paths name (configs/cpu.toml: data/english/tokenizer, "
        "data/english/tokens/{train,valid}.npy), so that `cs336 train --config configs/PRESET.toml` "
        "runs as it is. The text is DIR/train.txt and DIR/valid.txt (--data), or the data folder's own; "
        "data/tinystories and data/owt are downloaded first when their text is absent. Running it again "
        "skips what is up to date; other text or another vocabulary into the same folder is refused.",
    )
    p.add_argument("preset", help="a preset (configs/PRESET.toml: tinystories, owt, leaderboard, cpu, "
                   "cpu_web, ...) or a .toml path")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="folder with train.txt and valid.txt (default: the data folder's own text, "
                        "downloaded for tinystories and owt)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set model.vocab_size=8192 (repeatable)")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args) -> int:
    from cs336_basics.files import describe_os_error
    from cs336_basics.pipeline import PipelineError, prepare_data

    try:
        folder, report = prepare_data(args.preset, args.data, args.overrides)
    except (PipelineError, FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from None
    except OSError as err:
        raise CLIError(describe_os_error(err)) from None
    for stage in report.stages:
        print(f"{stage.name:<10} {'skipped' if stage.seconds is None else f'{stage.seconds:7.1f} s'}"
              + (f"  ({stage.note})" if stage.note and stage.seconds is not None else ""))
    print(f"data folder: {folder} (tokenizer/, tokens/train.npy, tokens/valid.npy)")
    return 0


# ---------------------------------------------------------------- plot (training issue)
def _add_plot(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="learning curves (loss vs step and vs wallclock) of one or more runs",
        description="Draw train/loss and val/loss against step and wallclock time from each run's "
        "metrics.jsonl into a PNG.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory (or its metrics.jsonl)")
    p.add_argument("--out", default=None,
                   help="PNG to write (default: RUN/learning_curves.png for one run; required for several)")
    p.add_argument("--label", action="append", default=None, help="legend label, once per run")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument("--log-y", action="store_true", help="logarithmic loss axis")
    p.set_defaults(func=_run_plot)


def _run_plot(args) -> int:
    from pathlib import Path

    from cs336_basics.plotting import plot_learning_curves
    from cs336_basics.runs import RunFolder

    out = args.out
    if out is None:
        if len(args.runs) > 1:
            raise CLIError("several runs need --out FILE.png to say where the figure goes")
        run = Path(args.runs[0])
        out = RunFolder(run if run.is_dir() else run.parent).curves
    try:
        path = plot_learning_curves(args.runs, out, labels=args.label, title=args.title, log_y=args.log_y)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from None
    print(path)
    return 0


# ---------------------------------------------------------------- sweep (experiments issue)
SWEEP_DESCRIPTION = (
    "Train each variant of SPEC (a base preset and named --set overrides) with `cs336 train`, in a "
    "process of its own, into runs/sweeps/GROUP/VARIANT/: on a CPU several side by side at one thread "
    "each (--jobs), on a GPU one after another. A line per run reports its progress.",
    "After each run its folder gets eval.json (loss, perplexity and bits per byte on the whole "
    "validation file), env.json (commit, machine, threads, versions) and status.json (finished, "
    "diverged, interrupted or failed; steps, losses, wall-clock); those and config.toml and "
    "metrics.jsonl (never checkpoints or token files) are copied to EXPERIMENTS/GROUP/VARIANT/. A run "
    "that diverges (NaN or infinite loss) is recorded as diverged, with its step and last finite "
    "loss, and the sweep goes on. A table of results ends the output.",
    "Running the same command again skips finished and diverged runs, resumes interrupted ones and "
    "starts the rest; a variant whose settings changed since its run is refused before anything runs "
    "(delete its run folder, or give it a new name). Ctrl-C stops every run with a checkpoint (exit "
    "status 130), to resume later. Exit status: 0 when every run finished or diverged, 1 when one "
    "failed or was interrupted, 2 for a bad spec.",
)
SWEEP_EPILOG = """examples:
  cs336 sweep lr.toml            # run every variant (again: skip, resume, finish)
  cs336 sweep lr.toml --jobs 2   # two runs side by side
  cs336 sweep lr.toml --list     # the table of results so far; nothing runs
  cs336 sweep lr.toml --reproduce lr_3e-3  # train it again in runs/reproduce/,
                                 # compare with experiments/ (within 0.01 bits/byte)

a spec, e.g. lr.toml (TOML; paths relative to the current folder):

  group = "learning_rate"  # runs/sweeps/learning_rate/VARIANT/
  base = "cpu"             # configs/cpu.toml, or a path to a preset .toml
  set = ["schedule.max_steps=1200", "run.eval_every=300"]  # for every variant
  # optional:
  # data = "data/english"  # train.npy, valid.npy in it or in its tokens/
  # valid_text = "../shared/data/english/valid.txt"  # else DATA/valid.txt
  # runs = "runs/sweeps"   # the parent of the run folders
  # question = "..."       # for experiments/LOG.md (`cs336 experiments`): what
  # conclusion = "..."     # the sweep asks, what its results answer ("": to do)

  [variants]               # NAME = its overrides (after `set`)
  lr_1e-3 = ["optim.lr=1e-3"]
  lr_3e-3 = ["optim.lr=3e-3"]
  lr_1e-2 = ["optim.lr=1e-2"]
"""


def _described_parser(sub, name: str, help: str, paragraphs: tuple[str, ...], epilog: str):
    """A subcommand whose --help shows ``paragraphs`` wrapped at 78 columns and ``epilog`` as written."""
    import textwrap

    return sub.add_parser(name, help=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="\n\n".join(textwrap.fill(paragraph, 78) for paragraph in paragraphs))


def _add_sweep(sub) -> None:
    p = _described_parser(
        sub, "sweep", "train every variant of a sweep spec (a base preset + named overrides) and keep the results",
        SWEEP_DESCRIPTION, SWEEP_EPILOG)
    p.add_argument("spec", metavar="SPEC.toml", help="the sweep spec (see below)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="runs side by side on a CPU (default: one per core; on a GPU always 1)")
    p.add_argument("--experiments", default="experiments", metavar="DIR",
                   help="where the small result files are copied (default: experiments/)")
    p.add_argument("--list", action="store_true", help="print the table of results so far; run nothing")
    p.add_argument("--reproduce", nargs="+", metavar="VARIANT",
                   help="train these variants again from scratch in runs/reproduce/GROUP/ and compare their bits "
                        "per byte with EXPERIMENTS/GROUP/VARIANT/eval.json; exit status 1 unless each is within "
                        "0.01")
    p.set_defaults(func=_run_sweep)


def _run_sweep(args) -> int:
    from cs336_basics.sweep import SweepError, format_summary, load_spec, reproduce, run_sweep, sweep_results

    try:
        if args.reproduce:
            rows = reproduce(args.spec, args.reproduce, jobs=args.jobs, experiments=args.experiments)
            return 0 if all(r["within"] for r in rows) else 1
        if args.list:
            spec = load_spec(args.spec)
            print(format_summary(spec.group, sweep_results(spec, args.experiments)))
            return 0
        results = run_sweep(args.spec, jobs=args.jobs, experiments=args.experiments)
    except SweepError as err:
        raise CLIError(str(err)) from None
    except OSError as err:  # a full disk or a read-only folder: the file it could not write
        from cs336_basics.files import describe_os_error

        raise CLIError(describe_os_error(err)) from None
    except KeyboardInterrupt:
        return 130
    return 1 if any(r.get("status") in ("failed", "interrupted") for r in results) else 0


# ---------------------------------------------------------------- experiments (experiments issue)
EXPERIMENTS_DESCRIPTION = (
    "Redraw the figure of every experiment group, figures/07_GROUP.png, and rewrite the experiment log, "
    "EXPERIMENTS/LOG.md, from the results `cs336 sweep` committed to EXPERIMENTS/GROUP/VARIANT/ "
    "(config.toml, metrics.jsonl, eval.json, env.json, status.json) and the sweep specs EXPERIMENTS/*.toml. "
    "Nothing is trained; it takes seconds.",
    "The log has, per group in the handout's order, the spec's `question`, the command that runs it, a "
    "table of results (status, steps, tokens, validation loss, bits per byte, wall-clock; diverged and "
    "failed runs included), the figure, and the spec's `conclusion` (\"to be written\" while it is "
    "empty). A group or variant without results is listed as not run yet; a group without results "
    "gets no figure.",
)
EXPERIMENTS_EPILOG = """examples:
  cs336 experiments                          # figures/07_*.png and experiments/LOG.md
  cs336 experiments --group learning_rate    # one figure (the log is always whole)
  cs336 experiments --experiments experiments/gpu --figures figures/gpu

figures by group: learning_rate (loss vs step per rate; final loss vs rate),
batch_size (loss vs tokens and vs wall-clock), ablations (each against the
baseline and its seed spread), main_experiment (nats/token and bits/byte vs
step); any other group: loss vs step and vs wall-clock.
"""


def _add_experiments(sub) -> None:
    p = _described_parser(
        sub, "experiments", "redraw figures/07_*.png and rewrite experiments/LOG.md from the committed sweep results",
        EXPERIMENTS_DESCRIPTION, EXPERIMENTS_EPILOG)
    p.add_argument("--experiments", default="experiments", metavar="DIR",
                   help="the sweep specs (*.toml) and their results (GROUP/VARIANT/); default: experiments/")
    p.add_argument("--figures", default="figures", metavar="DIR", help="where 07_GROUP.png go; default: figures/")
    p.add_argument("--log", default=None, metavar="FILE", help="the experiment log; default: EXPERIMENTS/LOG.md")
    p.add_argument("--group", action="append", metavar="GROUP",
                   help="redraw only this group's figure (again for more); the log always covers every group")
    p.set_defaults(func=_run_experiments)


def _run_experiments(args) -> int:
    from pathlib import Path

    from cs336_basics import experiments
    from cs336_basics.sweep import SweepError

    if not Path(args.experiments).is_dir():
        raise CLIError(f"no folder {args.experiments!r}: pass --experiments DIR, the folder of the sweep specs "
                       "and their results (run from the repository root for experiments/)")
    try:
        drawn = experiments.draw_figures(args.experiments, args.figures, args.group)
        for group, path in drawn.items():
            if path is None:
                print(f"{group}: not run yet (no results in {Path(args.experiments) / group}/), no figure")
            else:
                runs = experiments.load_group(group, args.experiments).values()
                done = sum(r.state != experiments.NOT_RUN for r in runs)
                print(f"{group}: {path} ({done} run{'' if done == 1 else 's'})")
        print(f"log: {experiments.write_log(args.experiments, args.log, args.figures)}")
    except SweepError as err:
        raise CLIError(str(err)) from None
    except OSError as err:
        from cs336_basics.files import describe_os_error

        raise CLIError(describe_os_error(err)) from None
    return 0


# ---------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cs336",
        description="Train and use a from-scratch byte-level BPE tokenizer and Transformer LM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_download, _add_prepare, _add_train_bpe, _add_tokenize, _add_train, _add_generate,
                _add_pipeline, _add_sweep, _add_experiments, _add_plot):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except CLIError as err:
        print(f"cs336 {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
