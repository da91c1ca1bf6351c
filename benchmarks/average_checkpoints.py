"""Would averaging the weights have helped this run? Score weighted averages of a run's kept
checkpoints on the whole validation file, the way `cs336 pipeline` scores the run.

How optim.ema_halflife of the `cpu` preset was chosen: full pipeline runs that kept a checkpoint
every 100 steps, then averages of those checkpoints with weights 0.5 ** ((last - step) / halflife)
(an exponential moving average sampled every 100 steps) or uniform over a range of steps:

    uv run cs336 pipeline --preset cpu --data ../shared/data/english --out runs/cpu_keep \\
        --set optim.ema_halflife=0 --set run.checkpoint_every=100 --set run.keep_checkpoints=true
    uv run python benchmarks/average_checkpoints.py runs/cpu_keep --data ../shared/data/english \\
        --halflife 0 100 200 300 --uniform 4000:4500

Halflife 0 scores the last checkpoint alone. One line per average goes to stdout.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch

from cs336_basics.pipeline import evaluate_run
from cs336_basics.runs import RunFolder
from cs336_basics.serialization import read_checkpoint
from results import recorded  # benchmarks/results.py: the output also goes to RESULTS.md


def kept_steps(run: Path) -> list[int]:
    steps = sorted(int(p.stem.split("_")[1]) for p in RunFolder(run).checkpoints.glob("step_*.pt"))
    if not steps:
        raise SystemExit(f"{run}/checkpoints holds no step_N.pt; train with run.keep_checkpoints=true")
    return steps


def averaged_weights(run: Path, weights: dict[int, float]) -> dict[str, torch.Tensor]:
    """sum_s weights[s] * model(step s) / sum(weights), accumulated in float64."""
    total = sum(weights.values())
    acc: dict[str, torch.Tensor] = {}
    for step, w in weights.items():
        for name, t in read_checkpoint(RunFolder(run).step_checkpoint(step))["model"].items():
            acc.setdefault(name, torch.zeros_like(t, dtype=torch.float64)).add_(t.double(), alpha=w / total)
    return {name: t.float() for name, t in acc.items()}


def score(run: Path, data: Path, model_state: dict[str, torch.Tensor]) -> dict:
    """evaluate_run on a scratch run directory that holds this run's config and the given weights."""
    with tempfile.TemporaryDirectory() as tmp:
        source, scratch = RunFolder(run), RunFolder(tmp)
        shutil.copy(source.config, scratch.config)
        scratch.checkpoints.mkdir()
        torch.save({"model": model_state, "iteration": 0}, scratch.latest)
        return evaluate_run(scratch.path, source.valid_tokens, data / "valid.txt", average=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a pipeline run directory with checkpoints/step_N.pt")
    p.add_argument("--data", type=Path, required=True, help="the folder with valid.txt the run was made from")
    p.add_argument("--halflife", type=float, nargs="*", default=[], help="EMA half-lives in steps (0: last checkpoint)")
    p.add_argument("--uniform", nargs="*", default=[], metavar="FIRST:LAST", help="uniform averages over step ranges")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    steps = kept_steps(args.run)
    last = steps[-1]
    jobs = []
    for h in args.halflife:
        weights = {last: 1.0} if h == 0 else {s: 0.5 ** ((last - s) / h) for s in steps if last - s < 6 * h}
        jobs.append((f"ema half-life {h:g} steps", weights))
    for spec in args.uniform:
        first, end = map(int, spec.split(":"))
        jobs.append((f"uniform {first}..{end}", {s: 1.0 for s in steps if first <= s <= end}))
    for label, weights in jobs:
        r = score(args.run, args.data, averaged_weights(args.run, weights))
        print(f"{label:<28} {len(weights):>3} checkpoints  val loss {r['val_loss']:.4f}  {r['bits_per_byte']:.4f} bits/byte",
              flush=True)


if __name__ == "__main__":
    with recorded(__file__):
        main()
