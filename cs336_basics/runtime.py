# Hand-written plumbing (not exported from a notebook): devices, precision, processes, random state, signals.
"""Where and how a run executes: the device, the precision, torchrun's processes, the random state,
the thread count, and a polite stop on Ctrl-C or SIGTERM.

    >>> resolve_device("cpu"), autocast_dtype("auto", torch.device("cpu"))   # bf16 autocast on CUDA only
    (device(type='cpu'), None)
    >>> with torch_settings(num_threads=1):
    ...     torch.get_num_threads()
    1
    >>> d = setup_distributed("cpu")            # WORLD_SIZE unset: one process, nothing to join
    >>> d.enabled, d.is_main, all_reduce_mean(torch.tensor(3.0), d).item()
    (False, True, 3.0)

* **Devices.** ``auto`` picks CUDA (GPU ``LOCAL_RANK`` under torchrun), then Apple's MPS, then the CPU.
* **Precision.** bf16 autocast on CUDA by default (``precision = "auto"``), or when asked for
  (CPUs with AVX-512 BF16 / AMX run it fast); TF32 matmuls on CUDA. Weights stay float32.
* **Processes.** Under ``torchrun`` the environment holds RANK, WORLD_SIZE and LOCAL_RANK;
  ``setup_distributed`` joins the process group (NCCL on GPUs, gloo on CPUs), ``teardown_distributed``
  leaves it, ``any_rank`` and ``all_reduce_mean`` are the two collectives the loop needs.
* **Random state.** ``rng_state`` / ``set_rng_state`` capture and restore every generator a run
  draws from (torch CPU and CUDA, numpy's and Python's global ones, the batch generator) as plain
  lists and dicts, so ``torch.load(weights_only=True)`` reads them back.
* **The environment.** ``environment()`` records where a run ran (commit, CPU or GPU, threads,
  torch, Python, date) for its ``env.json``; ``cpu_model`` and ``git_commit`` are its parts.
* **Stopping.** Inside ``StopFlag()``, the first SIGINT or SIGTERM only sets ``requested``; the loop
  finishes its step, saves and stops. A second one interrupts at once.
"""

from __future__ import annotations

import datetime
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from cs336_basics.config import ConfigError
from cs336_basics.data import check_device

__all__ = ["resolve_device", "autocast_dtype", "allow_tf32", "Dist", "setup_distributed", "teardown_distributed",
           "any_rank", "all_reduce_mean", "measure_matmul_peak", "seed_everything", "rng_state", "set_rng_state",
           "torch_settings", "StopFlag", "cpu_model", "git_commit", "environment"]


# ------------------------------------------------------------------------------------ device and precision
def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> cuda:LOCAL_RANK if available, else mps, else cpu; anything else is checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = check_device(name)
    except RuntimeError as err:
        raise ConfigError(f"run.device: {err}") from None
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 for autocast, or None for plain float32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return None


def allow_tf32(device: torch.device, enabled: bool = True) -> None:
    """TF32 matmuls and convolutions on a CUDA device (nothing elsewhere, or when not ``enabled``)."""
    if device.type == "cuda" and enabled:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def measure_matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a large square matmul on ``device`` in ``dtype`` (a practical peak for MFU)."""
    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    a @ b; sync()
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < 0.2:
        a @ b; reps += 1
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------------ processes (DDP)
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False  # we started the process group, so we end it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> Dist:
    """Join the torchrun process group if WORLD_SIZE > 1 (idempotent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    created = False
    if not dist.is_initialized():
        created = True
        use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank, created)


def teardown_distributed(d: Dist) -> None:
    """Leave the process group, if ``setup_distributed`` started it."""
    if d.created_group:
        import torch.distributed as dist

        dist.destroy_process_group()


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank if ``flag`` is True on any rank."""
    import torch.distributed as dist

    t = torch.tensor([float(flag)])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_reduce_mean(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of ``value`` over the ranks (``value`` itself in a single process)."""
    if d.enabled:
        import torch.distributed as dist

        value = value.clone()
        dist.all_reduce(value)
        value /= d.world_size
    return value


# ------------------------------------------------------------------------------------ random state
def seed_everything(seed: int) -> None:
    """Seed torch's, numpy's and Python's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_state(batch_rng: np.random.Generator) -> dict[str, Any]:
    """Every generator's state as lists and dicts (``torch.load(weights_only=True)`` can read it)."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np_state,
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "batches": batch_rng.bit_generator.state,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], batch_rng: np.random.Generator) -> None:
    """Restore what ``rng_state`` captured (``batch_rng`` included)."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = dict(state["numpy"])
    np_state["state"] = dict(np_state["state"], key=np.asarray(np_state["state"]["key"], dtype=np.uint32))
    np.random.set_state(np_state)
    *internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    batch_rng.bit_generator.state = state["batches"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ------------------------------------------------------------------------------------ process-wide torch settings
@contextmanager
def torch_settings(num_threads: int = 0, deterministic: bool = False) -> Iterator[None]:
    """torch uses ``num_threads`` CPU threads inside the block (0: as many as before), and only
    deterministic algorithms when ``deterministic``; both are restored afterwards (a notebook kernel
    or a test session goes on with its own settings)."""
    threads_before, deterministic_before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if num_threads:
        torch.set_num_threads(num_threads)
    if deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before)


# ------------------------------------------------------------------------------------ stopping
class StopFlag:
    """Turn the first SIGINT or SIGTERM into a flag checked between steps; a second one interrupts
    immediately. ``signum`` remembers which signal asked.

        >>> with StopFlag() as stop:
        ...     stop.requested
        False
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signum = signal.SIGINT
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: finishing this step and saving a checkpoint (again to abort)", file=sys.stderr)

    def __enter__(self):
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


# ------------------------------------------------------------------------------------ the environment
def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux; else what ``platform`` knows)."""
    name = platform.processor() or platform.machine()
    try:
        found = re.findall(r"^model name\s*:\s*(.+)$", open("/proc/cpuinfo", encoding="utf-8").read(), re.M)
    except OSError:
        found = []
    return found[0].strip() if found else name


def git_commit(root: str | os.PathLike | None = None) -> str:
    """The commit checked out at ``root`` (default: the package's repository), with '+changes' when
    tracked files have uncommitted edits; "unknown" outside a git checkout."""
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def environment(num_threads: int = 0, device: str = "auto") -> dict[str, Any]:
    """Where a run runs: commit, CPU model or GPU name, torch threads, torch and Python versions, date.

    ``num_threads`` is the run's thread count (0: torch's current one); ``device`` its run.device.

        >>> env = environment(num_threads=1, device="cpu")
        >>> env["torch_threads"], env["device"], env["gpu"]
        (1, 'cpu', None)
    """
    dev = resolve_device(device)
    return {
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "torch_threads": num_threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
