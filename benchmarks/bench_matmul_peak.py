"""Measure this machine's matmul peak FLOP/s with torch, and the Transformer LM's MFU against it.

    uv run python benchmarks/bench_matmul_peak.py              # float32 + bfloat16 peak, then model MFU
    uv run python benchmarks/bench_matmul_peak.py --quick      # fewer sizes and repeats

Peak: square matmuls ``(n, n) @ (n, n)`` (2·n³ FLOPs) at several sizes, best of as many repeats
as fit in a time budget, in this single process using all of torch's intra-op threads. The peak
is the best GFLOP/s over the sizes: on a machine shared with other work the best repeat is the
least disturbed one, and only short matmuls have a chance to run entirely undisturbed.

MFU: training steps (forward, cross-entropy, backward, AdamW) of ``TransformerLM`` at the given
shape in float32. Model FLOPs come from ``cs336_basics.accounting`` (matmuls only, 3 × forward,
exact for this model; AdamW's elementwise FLOPs shown separately). Two numbers:

* MFU = best step's model FLOP/s / measured float32 peak (the usual definition);
* paired MFU: each step is bracketed by timed 2048² float32 matmuls, and the step's FLOP/s is
  divided by the matmul rate measured around it, so that other processes slowing the machine
  down slow both alike. This is the reference measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from cs336_basics import accounting  # noqa: E402
from results import recorded  # benchmarks/results.py: the output also goes to RESULTS.md

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_seconds(fn, repeats: int, budget_s: float) -> dict:
    """Time ``fn()`` up to ``repeats`` times, stopping early after ``budget_s`` (at least 2 runs)."""
    fn()  # warm-up: allocation, kernel selection
    times = []
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 2 or time.perf_counter() - start < budget_s):
        times.append(timed(fn))
    return {"best_s": min(times), "median_s": statistics.median(times), "runs": len(times)}


def matmul_peak(sizes: list[int], dtype: torch.dtype, repeats: int, budget_s: float) -> list[dict]:
    rows = []
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        a = torch.randn(n, n, generator=gen).to(dtype)
        b = torch.randn(n, n, generator=gen).to(dtype)
        out = torch.empty(n, n, dtype=dtype)
        t = best_seconds(lambda: torch.mm(a, b, out=out), repeats, budget_s)
        flops = 2 * n**3
        rows.append({"n": n, **t, "gflops": flops / t["best_s"] / 1e9, "gflops_median": flops / t["median_s"] / 1e9})
    return rows


def training_step_mfu(config: dict, batch_size: int, steps: int, budget_s: float, peak_flops: float) -> dict:
    from cs336_basics.model import TransformerLM
    from cs336_basics.nn_utils import cross_entropy
    from cs336_basics.optimizer import AdamW

    torch.manual_seed(0)
    model = TransformerLM(**config)
    optimizer = AdamW(model.parameters(), lr=1e-3)
    seq = config["context_length"]
    x = torch.randint(0, config["vocab_size"], (batch_size, seq))
    y = torch.randint(0, config["vocab_size"], (batch_size, seq))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)

    def matmul_rate() -> float:  # FLOP/s of three back-to-back 2048² matmuls
        return 3 * 2 * n**3 / timed(lambda: [torch.mm(a, b, out=out) for _ in range(3)])

    step()  # warm-up; the first step also builds AdamW's state
    matmul_rate()
    matmul_flops = accounting.training_flops(config, batch_size)  # 3 × forward matmuls: what MFU counts
    # what this implementation really multiplies: its causal query blocks skip fully masked keys
    block = getattr(model.layers[0].attn, "query_block", None) if len(model.layers) else None
    executed_flops = accounting.training_flops(config, batch_size, query_block=block)
    step_times, paired = [], []
    start = time.perf_counter()
    while len(step_times) < steps and (len(step_times) < 3 or time.perf_counter() - start < budget_s):
        before = matmul_rate()
        step_times.append(timed(step))
        after = matmul_rate()
        paired.append(matmul_flops / step_times[-1] / ((before + after) / 2))
    best, median = min(step_times), statistics.median(step_times)
    tokens = batch_size * seq
    return {
        "params": accounting.parameter_counts(config)["total"], "matmul_flops": matmul_flops,
        "executed_flops": executed_flops,
        "adamw_flops": accounting.adamw_flops_per_step(config),
        "best_s": best, "median_s": median, "runs": len(step_times),
        "tokens_per_s": tokens / best, "tokens_per_s_median": tokens / median,
        "achieved_gflops": matmul_flops / best / 1e9,
        "mfu": accounting.mfu(tokens / best, config, peak_flops),
        "mfu_median": accounting.mfu(tokens / median, config, peak_flops),
        "paired_best": max(paired), "paired_median": statistics.median(paired),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 3072, 4096],
                        help="square matmul sizes n (default: %(default)s)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES),
                        help="dtypes to measure (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=500,
                        help="max timed repeats per size; small sizes repeat until --budget is spent, for more "
                             "chances to catch the shared cores undisturbed (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=4.0,
                        help="seconds per size before stopping repeats (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch intra-op threads (default: all %(default)s cores)")
    parser.add_argument("--quick", action="store_true", help="sizes 1024 2048, 3 repeats, 3 model steps")
    parser.add_argument("--no-model", action="store_true", help="skip the TransformerLM MFU measurement")
    model = parser.add_argument_group("model (MFU)")
    model.add_argument("--vocab-size", type=int, default=10000)
    model.add_argument("--context-length", type=int, default=128)
    model.add_argument("--d-model", type=int, default=256)
    model.add_argument("--num-layers", type=int, default=4)
    model.add_argument("--num-heads", type=int, default=8)
    model.add_argument("--d-ff", type=int, default=704)
    model.add_argument("--batch-size", type=int, default=8)
    model.add_argument("--steps", type=int, default=12, help="max timed training steps (default: %(default)s)")
    model.add_argument("--model-budget", type=float, default=60.0,
                       help="seconds of model steps before stopping (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.steps, args.model_budget = [1024, 2048], 3, 3, 10.0
    if args.threads < 1 or any(n < 1 for n in args.sizes) or args.repeats < 1 or args.steps < 1:
        parser.error("--threads, --sizes, --repeats and --steps must be positive")

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu_count={os.cpu_count()}, "
          f"best of up to {args.repeats} repeats within {args.budget:.0f} s per size")
    print()
    print(f"{'dtype':9s} {'n':>6s} {'runs':>5s} {'best ms':>10s} {'GFLOP/s best':>13s} {'GFLOP/s median':>15s}")
    peaks = {}
    for name in args.dtypes:
        rows = matmul_peak(args.sizes, DTYPES[name], args.repeats, args.budget)
        for r in rows:
            print(f"{name:9s} {r['n']:6d} {r['runs']:5d} {r['best_s'] * 1e3:10.2f} {r['gflops']:13.1f} "
                  f"{r['gflops_median']:15.1f}")
        peaks[name] = max(r["gflops"] for r in rows) * 1e9
    print()
    for name, peak in peaks.items():
        print(f"measured {name} matmul peak: {peak / 1e9:.1f} GFLOP/s")

    if args.no_model:
        return 0
    if "float32" not in peaks:
        parser.error("the MFU measurement needs the float32 peak: include float32 in --dtypes or pass --no-model")
    config = dict(vocab_size=args.vocab_size, context_length=args.context_length, d_model=args.d_model,
                  num_layers=args.num_layers, num_heads=args.num_heads, d_ff=args.d_ff)
    r = training_step_mfu(config, args.batch_size, args.steps, args.model_budget, peaks["float32"])
    print()
    print(f"TransformerLM training step, float32: {config}, batch {args.batch_size} "
          f"({r['params'] / 1e6:.2f} M parameters)")
    print(f"  model FLOPs per step: {r['matmul_flops'] / 1e9:.2f} GFLOP of matmuls (3 x forward; "
          f"{accounting.training_flops_per_token(config) / 1e6:.2f} MFLOP/token) + {r['adamw_flops'] / 1e6:.0f} "
          f"MFLOP AdamW; the model executes {r['executed_flops'] / 1e9:.2f} GFLOP of matmuls (causal query "
          f"blocks skip masked keys; MFU counts dense attention)")
    print(f"  step time best {r['best_s'] * 1e3:.1f} ms, median {r['median_s'] * 1e3:.1f} ms over {r['runs']} steps")
    print(f"  throughput best {r['tokens_per_s']:,.0f} tok/s (median {r['tokens_per_s_median']:,.0f}); "
          f"achieved {r['achieved_gflops']:.1f} GFLOP/s")
    print(f"  MFU vs measured float32 peak {peaks['float32'] / 1e9:.1f} GFLOP/s: {r['mfu']:.1%} best step, "
          f"{r['mfu_median']:.1%} median step")
    print(f"  paired MFU (step vs 2048^2 matmuls timed around it): {r['paired_best']:.1%} best, "
          f"{r['paired_median']:.1%} median")
    return 0


if __name__ == "__main__":
    with recorded(__file__):
        sys.exit(main())
