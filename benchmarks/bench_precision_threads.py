"""Seconds per training step of the `cpu` preset: float32 vs bf16 autocast, 1 vs 2 threads, eager vs compiled.

    uv run python benchmarks/bench_precision_threads.py               # 8 configurations, ~6 minutes
    uv run python benchmarks/bench_precision_threads.py --steps 60 --only bf16
    uv run python benchmarks/bench_precision_threads.py --threads 2 --only bf16 --fp32-output-layer

Why: an English leaderboard run in bf16 at two threads made fewer steps than the float32 preset had
made on an earlier, faster machine, which read as "bf16 loses at two threads". Measured on one
machine it does not (writeup §7 leaderboard). Each configuration runs train() in a fresh subprocess (its own
thread count, its own compile caches) on random tokens and reports the median step time of the
steps after warm-up, timed around the whole step (forward, loss, backward, clip, AdamW, weight
average). Run it on an otherwise idle machine: two OpenMP threads collapse next to any other job.
--fp32-output-layer adds, for bf16, rows "bf16*": the step as it was before commit c082486: the chunked output
layer and loss (nn_utils.linear_cross_entropy) with float32 matmuls under bf16 autocast.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def one(precision: str, threads: int, compiled: bool, steps: int, extra: list[str], fp32_output: bool) -> dict:
    """Runs in the child: trains `steps` steps and returns the per-step times seen by the metrics log."""
    import numpy as np
    import torch

    from cs336_basics import train as train_module
    from cs336_basics.config import load_config
    from cs336_basics.runs import RunFolder
    from cs336_basics.train import train

    if fp32_output:  # the loop passes the autocast dtype as matmul_dtype; drop it
        chunked = train_module.linear_cross_entropy
        train_module.linear_cross_entropy = lambda h, w, t, rows, cap, _dtype=None: chunked(h, w, t, rows, cap)

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for split, n in (("train", 2_000_000), ("valid", 100_000)):
            np.save(tmp / f"{split}.npy", np.random.default_rng(0).integers(0, 4096, n, dtype=np.uint16))
        cfg = load_config(ROOT / "configs" / "cpu.toml", [
            f"data.train_tokens={tmp / 'train.npy'}", f"data.valid_tokens={tmp / 'valid.npy'}",
            f"run.out_dir={tmp / 'run'}", f"schedule.max_steps={steps}", "run.log_every=1",
            f"run.eval_every={10 * steps}", "run.eval_batches=1", f"run.checkpoint_every={10 * steps}",
            "run.progress=false", f"run.precision={precision}", f"run.num_threads={threads}",
            f"run.compile={'true' if compiled else 'false'}", *extra,
        ])
        run = train(cfg)
        rows = [json.loads(x) for x in RunFolder(run).metrics.read_text().splitlines()]
    clock = [r["wallclock_s"] for r in rows if "wallclock_s" in r and "train/loss" in r]
    per_step = sorted(b - a for a, b in zip(clock[5:], clock[6:]))  # skip compile and warm-up
    return {"median_ms": 1e3 * per_step[len(per_step) // 2], "p10_ms": 1e3 * per_step[len(per_step) // 10],
            "tokens_per_step": cfg.data.batch_size * cfg.model.context_length}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="steps per configuration (default 40)")
    parser.add_argument("--only", choices=["fp32", "bf16"], help="one precision only")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    parser.add_argument("--fp32-output-layer", action="store_true",
                        help="also time bf16 with the output layer's matmuls in float32 (before c082486)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        precision, threads, compiled, fp32_output = args.child.split(",")
        print(json.dumps(one(precision, int(threads), compiled == "1", args.steps, args.overrides, fp32_output == "1")))
        return
    precisions = [args.only] if args.only else ["fp32", "bf16"]
    print(f"cpu preset (d_model 192, 4 layers, batch 8 x 256), {args.steps} steps each; "
          f"ms per step: median (10th percentile) after 5 warm-up steps")
    if args.overrides:
        print("overrides:", " ".join(args.overrides))
    print(f"{'precision':<10}{'threads':>8}{'mode':>10}{'median ms':>11}{'p10 ms':>9}{'tokens/s':>10}")
    output_layers = [False, True] if args.fp32_output_layer else [False]
    for compiled, threads, precision, fp32_output in itertools.product([False, True], args.threads, precisions,
                                                                       output_layers):
        if fp32_output and precision == "fp32":
            continue
        cmd = [sys.executable, __file__, "--child", f"{precision},{threads},{int(compiled)},{int(fp32_output)}",
               "--steps", str(args.steps)] + [f"--set={o}" for o in args.overrides]
        row = f"{precision + ('*' if fp32_output else ''):<10}{threads:>8}{'compiled' if compiled else 'eager':>10}"
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{row}  failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{row}{r['median_ms']:11.0f}{r['p10_ms']:9.0f}{r['tokens_per_step'] / r['median_ms'] * 1e3:10.0f}"
              f"   ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    if "--child" in sys.argv:
        main()
    else:
        from results import recorded

        with recorded(__file__):
            main()
