# Hand-written plumbing (not exported from a notebook): a run folder: its layout, its writer, what made its files.
"""Run folders: where each file of a run lives, loading a trained run back, one writer at a time,
and a record of what produced each stage's outputs.

**The layout.** ``RunFolder(path)`` names every file a run keeps; nothing else spells them out::

    OUT/config.toml            the TrainConfig (cs336 train)      OUT/tokenizer/    BPE (cs336 pipeline)
    OUT/metrics.jsonl          one JSON object per logged step    OUT/tokens/       train.npy, valid.npy
    OUT/checkpoints/latest.pt  (+ step_N.pt when kept)            OUT/eval.json     scores on valid.txt
    OUT/samples.txt            text from the model                OUT/learning_curves.png

    >>> run = RunFolder("runs/cpu")
    >>> run.latest, run.step_checkpoint(500), run.valid_tokens
    (PosixPath('runs/cpu/checkpoints/latest.pt'), PosixPath('runs/cpu/checkpoints/step_500.pt'), PosixPath('runs/cpu/tokens/valid.npy'))
    >>> model, config = load_model_from_run("runs/cpu")     # doctest: +SKIP
    >>> tokenizer = load_run_tokenizer("runs/cpu", config)  # doctest: +SKIP

**One writer.** ``run_lock(folder)`` holds an exclusive lock on ``folder/.lock`` (``flock``) for
as long as a run writes there; a second process that tries gets ``RunInUse`` at once, with the
owner's pid in the message. The operating system drops the lock when its process dies, however
it dies, so a stale lock from a dead process is simply taken over. The same process may take the
lock again inside (the pipeline holds it while ``train`` takes it too).

    >>> import tempfile; run = Path(tempfile.mkdtemp())
    >>> with run_lock(run):
    ...     with run_lock(run):      # the same process: fine
    ...         pass

**What made it.** ``StageRecords`` keeps ``folder/stages.json``: for each finished stage, the
fingerprints of its inputs and outputs and the options it ran with. A stage is up to date only
when all three still match, so other data, another learning rate or other sampling flags are
noticed, whatever the files' timestamps say. A fingerprint is size + content hash (BLAKE2b);
a file whose size and modification time are as recorded is taken as unchanged without reading
it again, so a check costs a ``stat`` per file after the first time.

    >>> fingerprint_matches(fingerprint(run / ".lock"), run / ".lock")
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from cs336_basics.files import atomic_write

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded against a second writer
    fcntl = None

LOCK_NAME = ".lock"
RECORDS_NAME = "stages.json"


# ------------------------------------------------------------------------------------ the layout
class RunFolder:
    """The files of one run folder, by what they hold (paths only: nothing is read or made)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.config = self.path / "config.toml"             # the run's TrainConfig, as TOML
        self.metrics = self.path / "metrics.jsonl"          # one JSON object per logged step
        self.checkpoints = self.path / "checkpoints"
        self.latest = self.checkpoints / "latest.pt"        # the newest checkpoint
        self.eval = self.path / "eval.json"                 # scores on the whole validation file
        self.samples = self.path / "samples.txt"            # text sampled from the trained model
        self.curves = self.path / "learning_curves.png"     # loss against step and wallclock
        self.tokenizer = self.path / "tokenizer"            # the BPE tokenizer the pipeline trained
        self.tokens = self.path / "tokens"                  # the token files the pipeline wrote
        self.train_tokens = self.tokens / "train.npy"
        self.valid_tokens = self.tokens / "valid.npy"

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def step_checkpoint(self, step: int) -> Path:
        """checkpoints/step_N.pt: a checkpoint kept at step N (run.keep_checkpoints)."""
        return self.checkpoints / f"step_{step}.pt"

    def read_eval(self) -> dict[str, Any]:
        """The scores in eval.json (``val_loss``, ``val_ppl``, ``bits_per_byte``, ...)."""
        if not self.eval.is_file():
            raise FileNotFoundError(f"{self.eval} does not exist; `cs336 pipeline` writes it after training")
        return json.loads(self.eval.read_text(encoding="utf-8"))


def load_model_from_run(run_dir: str | os.PathLike, device: Any = None, average: bool = True):
    """(model in eval mode with the latest checkpoint's weights, its TrainConfig).

    When the run kept an average of its weights (optim.ema_halflife > 0) the model gets the
    average, unless ``average=False``.
    """
    from cs336_basics.config import load_config
    from cs336_basics.model import TransformerLM
    from cs336_basics.runtime import resolve_device
    from cs336_basics.serialization import read_checkpoint

    run = RunFolder(run_dir)
    for p in (run.config, run.latest):
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist; is {str(run.path)!r} a run directory written by `cs336 train`?")
    config = load_config(run.config)
    dev = resolve_device(str(device) if device is not None else "auto")
    model = TransformerLM.from_config(config.model, device=dev)
    ckpt = read_checkpoint(run.latest, map_location=dev)
    model.load_state_dict(ckpt["model"])
    if average and "ema" in ckpt:
        for name, weights in ckpt["ema"]["average"].items():
            model.get_parameter(name).data.copy_(weights)
    return model.eval(), config


def load_run_tokenizer(run_dir: str | os.PathLike, config=None, override: str | os.PathLike | None = None):
    """The tokenizer a run was trained with: ``override`` if given, else the config's
    data.tokenizer (as written, or relative to where the run was made), else RUN/tokenizer."""
    from cs336_basics.tokenizer import Tokenizer

    run = RunFolder(run_dir)
    if override is not None:
        return Tokenizer.load(override)
    if config is None:
        from cs336_basics.config import load_config

        config = load_config(run.config)
    named = Path(config.data.tokenizer) if config.data.tokenizer else None
    candidates = [named] if named is not None else []
    candidates.append(run.tokenizer)  # a run made by the pipeline, maybe moved or seen from elsewhere
    if named is not None and not named.is_absolute():
        candidates.append(run.path / named.name)
    for path in candidates:
        if (path / "vocab.json").is_file():
            return Tokenizer.load(path)
    raise FileNotFoundError(
        f"no tokenizer for run {run.path}: looked in {', '.join(map(str, candidates))}; "
        "pass the tokenizer directory explicitly (cs336 generate --tokenizer DIR)")


class RunInUse(RuntimeError):
    """Another process is writing this run folder."""


_held: dict[str, tuple[int, int]] = {}  # real path of a lock file -> (file descriptor, depth)


@contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder``'s writer lock inside the block (creating the folder); RunInUse if another process has it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    key = os.path.realpath(path)
    if key in _held or fcntl is None:  # re-entered by the process that holds it
        fd, depth = _held.get(key, (-1, 0))
        _held[key] = (fd, depth + 1)
        try:
            yield folder
        finally:
            fd, depth = _held.pop(key)
            if depth > 1:
                _held[key] = (fd, depth - 1)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
        os.close(fd)
        who = f"process {owner[0]}" if owner else "another process"
        raise RunInUse(f"{folder} is in use by {who} (a run is writing there); wait for it to finish, "
                       "or choose another output folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = (fd, 1)
    try:
        yield folder
    finally:
        _held.pop(key, None)
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ------------------------------------------------------------------------------------ fingerprints
_hashes: dict[tuple[str, int, int], str] = {}  # (real path, size, mtime_ns) -> hash: each file read once a process


def _content_hash(path: Path) -> str:
    stat = path.stat()
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        with open(path, "rb") as f:
            _hashes[key] = hashlib.file_digest(f, "blake2b").hexdigest()[:32]
    return _hashes[key]


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """``{"size", "mtime_ns", "blake2b"}`` of a file (a folder: of each file in it, by name)."""
    path = Path(path)
    if path.is_dir():
        return {"files": {p.name: fingerprint(p) for p in sorted(path.iterdir()) if p.is_file()}}
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "blake2b": _content_hash(path)}


def fingerprint_matches(recorded: Mapping[str, Any] | None, path: str | os.PathLike) -> bool:
    """Does ``path`` still hold what ``recorded`` describes? Re-hashes only when size and mtime are not as recorded."""
    path = Path(path)
    if recorded is None or not path.exists():
        return False
    if "files" in recorded:
        names = sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else None
        return names == sorted(recorded["files"]) and all(
            fingerprint_matches(fp, path / name) for name, fp in recorded["files"].items())
    stat = path.stat()
    if stat.st_size != recorded["size"]:
        return False
    return stat.st_mtime_ns == recorded["mtime_ns"] or _content_hash(path) == recorded["blake2b"]


def describe_change(recorded: Mapping[str, Any] | None, path: str | os.PathLike) -> str:
    """Why ``fingerprint_matches`` said no, in a few words."""
    path = Path(path)
    if not path.exists():
        return f"{path} is gone"
    if recorded is None:
        return f"{path} is new"
    if "files" not in recorded and path.is_file() and path.stat().st_size != recorded["size"]:
        return f"{path} changed ({recorded['size']:,} -> {path.stat().st_size:,} bytes)"
    return f"{path} changed (other content)"


# ------------------------------------------------------------------------------------ stage records
class StageRecords:
    """``folder/stages.json``: per stage, the fingerprints of its inputs and outputs and its options.

    ``changes(stage, inputs, options)`` lists what differs from the record (empty: the same work
    was done and its outputs are still as written); ``record(...)`` saves a finished stage.
    """

    def __init__(self, folder: str | os.PathLike):
        self.path = Path(folder) / RECORDS_NAME
        self.stages: dict[str, Any] = {}
        if self.path.is_file():
            try:
                self.stages = json.loads(self.path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ValueError(f"{self.path} is corrupt; delete the run folder {self.path.parent} "
                                 "(or that file, to redo every stage) and run again") from None

    def __contains__(self, stage: str) -> bool:
        return stage in self.stages

    def changes(self, stage: str, inputs: Mapping[str, Path], options: Mapping[str, Any],
                outputs: Sequence[Path] = ()) -> list[str]:
        """What differs from the recorded run of ``stage`` (["never finished"] if there is none)."""
        done = self.stages.get(stage)
        if done is None:
            return ["never finished"]
        found = []
        for name, path in inputs.items():
            if not fingerprint_matches(done["inputs"].get(name), path):
                found.append(describe_change(done["inputs"].get(name), path))
        for key in sorted(set(options) | set(done["options"])):
            before, now = done["options"].get(key), _jsonable(options.get(key))
            if before != now:
                found.append(f"{key}: {before!r} -> {now!r}")
        for path in outputs:
            if not fingerprint_matches(done["outputs"].get(str(Path(path).name)), path):
                found.append(describe_change(done["outputs"].get(str(Path(path).name)), path))
        return found

    def record(self, stage: str, inputs: Mapping[str, Path], options: Mapping[str, Any],
               outputs: Sequence[Path] = ()) -> None:
        self.stages[stage] = {
            "inputs": {name: fingerprint(path) for name, path in inputs.items()},
            "options": {key: _jsonable(value) for key, value in options.items()},
            "outputs": {Path(path).name: fingerprint(path) for path in outputs},
        }
        atomic_write(self.path, json.dumps(self.stages, indent=1) + "\n")

    def forget(self, *stages: str) -> None:
        """Drop stages (before redoing them), so a half-redone stage is never taken as finished."""
        if any(self.stages.pop(s, None) is not None for s in stages):
            atomic_write(self.path, json.dumps(self.stages, indent=1) + "\n")


def _jsonable(value: Any) -> Any:
    """Options as JSON keeps them (tuples become lists), so a reloaded record compares equal."""
    return json.loads(json.dumps(value, default=str))
