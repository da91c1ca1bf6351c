"""Where a training step's time goes: torch.profiler around train() on random tokens, by kind of work.

    uv run python benchmarks/profile_train_step.py                      # cpu_leaderboard, 1 thread, 40 steps
    uv run python benchmarks/profile_train_step.py --threads 2 --config configs/cpu.toml
    uv run python benchmarks/profile_train_step.py --set model.value_embedding=false --top 30

Why: to know whether a step can get cheaper before trying to make it so. The script trains a few
steps first (so that compiling is done and its caches are warm), then profiles a second train()
call of --steps steps and sorts the operators' own CPU time into the Linear layers' matmuls
(aten::mm), the attention's batched matmuls (bmm, baddbmm), torch.compile's fused kernels
(CompiledFxGraph), dtype conversions (copy_, _to_copy) and the rest. It also says how fast the
Linear matmuls ran: their FLOPs (accounting.forward_flops without the attention's QKᵀ and AV,
x 3 for forward and backward) over their time. The profiled call includes its two one-batch evaluations and re-entering
the compiled graphs (the caches are warm), a few percent of the total. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

KINDS = {  # profiler event name -> kind of work (anything else: "other")
    "aten::mm": "Linear matmuls (aten::mm)",
    "aten::bmm": "attention matmuls (bmm, baddbmm)",
    "aten::baddbmm": "attention matmuls (bmm, baddbmm)",
    "aten::copy_": "dtype conversions (copy_, _to_copy)",
    "aten::_to_copy": "dtype conversions (copy_, _to_copy)",
}


def kind_of(name: str) -> str:
    if name.startswith("## Call CompiledFxGraph"):
        return "compiled fused kernels (CompiledFxGraph)"
    return KINDS.get(name, "other")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu_leaderboard.toml", help="the preset to profile")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=40, help="profiled steps (default 40)")
    parser.add_argument("--top", type=int, default=15, help="operators listed by own time (default 15)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    args = parser.parse_args()

    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    from cs336_basics.accounting import forward_flops
    from cs336_basics.config import load_config
    from cs336_basics.train import train

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def config(steps: int, out: str):
            return load_config(ROOT / args.config, [
                f"data.train_tokens={tmp / 'train.npy'}", f"data.valid_tokens={tmp / 'valid.npy'}",
                f"run.out_dir={tmp / out}", f"schedule.max_steps={steps}", "schedule.max_seconds=0",
                "run.log_every=1", f"run.eval_every={10 * steps}", "run.eval_batches=1",
                f"run.checkpoint_every={10 * steps}", "run.progress=false", f"run.num_threads={args.threads}",
                *args.overrides])

        cfg = config(args.steps, "run")
        for split, n in (("train", 2_000_000), ("valid", 100_000)):
            np.save(tmp / f"{split}.npy", np.random.default_rng(0).integers(0, cfg.model.vocab_size, n, dtype=np.uint16))
        t0 = time.perf_counter()
        train(config(5, "warm-up"))
        print(f"{args.config} {' '.join(args.overrides)}; {args.threads} thread(s), precision {cfg.run.precision}, "
              f"compile {cfg.run.compile}; warm-up run (compiling) {time.perf_counter() - t0:.0f} s")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run = train(cfg)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    clock = [r["wallclock_s"] for r in rows if "train/loss" in r]
    steps = sorted(b - a for a, b in zip(clock[5:], clock[6:]))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    by_kind: dict[str, float] = defaultdict(float)
    for e in events:
        by_kind[kind_of(e.key)] += e.self_cpu_time_total / 1e6
    print(f"{args.steps} steps; median step {1e3 * steps[len(steps) // 2]:.0f} ms (after 5 steps); "
          f"profiled own CPU time {total:.2f} s, {1e3 * total / args.steps:.0f} ms a step\n")
    print(f"{'kind of work':<44}{'ms/step':>9}{'share':>8}")
    for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"{kind:<44}{1e3 * seconds / args.steps:9.1f}{seconds / total:8.1%}")

    forward = forward_flops(cfg.model, cfg.data.batch_size)  # the Linear layers: all but the attention's QKᵀ and AV
    linear = 3 * (forward["total"] - forward["attn_scores"] - forward["attn_values"])
    flops = linear * args.steps
    print(f"\nLinear matmuls: {linear / 1e9:.2f} GFLOP a step (forward + backward) x {args.steps} steps = "
          f"{flops / 1e9:.1f} GFLOP in {by_kind[KINDS['aten::mm']]:.2f} s: "
          f"{flops / by_kind[KINDS['aten::mm']] / 1e9:.0f} GFLOP/s\n")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=60))


if __name__ == "__main__":
    from results import recorded

    with recorded(__file__):
        main()
