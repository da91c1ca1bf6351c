"""Decoding speed: tokens/s with and without the KV cache, 256 new tokens, same model, same run.

    uv run python benchmarks/bench_decoding.py                 # cpu preset shape + the handout's TinyStories shape
    uv run python benchmarks/bench_decoding.py --run runs/cpu  # a trained run instead (its weights and shape)

The reference is the uncached loop (the whole window through the model for every new token),
measured in the same process on the same model; the two must produce the same tokens (greedy).
Weights do not change the speed, so without --run the models are freshly initialized.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cs336_basics.config import load_config  # noqa: E402
from cs336_basics.decoding import generate_ids  # noqa: E402
from cs336_basics.model import ModelConfig, TransformerLM  # noqa: E402
from results import recorded  # benchmarks/results.py: the output also goes to RESULTS.md


def preset_model(name: str) -> ModelConfig:
    return load_config(ROOT / "configs" / f"{name}.toml").model


def time_decoding(model, prompt, new_tokens, use_kv_cache, repeats):
    """(best wall seconds, best CPU seconds of this process, tokens). On a shared machine the CPU
    seconds are the steadier number: time spent waiting for a busy core is not counted."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = list(generate_ids(model, prompt, new_tokens, temperature=0.0, use_kv_cache=use_kv_cache))
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    return best, best_cpu, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="a trained run directory (default: fresh models)")
    parser.add_argument("--presets", nargs="+", default=["cpu", "tinystories"],
                        help="configs/<name>.toml model shapes to time (without --run)")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="best of N")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch CPU thread counts to time (default: 1 2)")
    args = parser.parse_args()

    models = []
    if args.run:
        from cs336_basics.runs import load_model_from_run

        model, _ = load_model_from_run(args.run, device=args.device)
        models.append((Path(args.run).name, model))
    else:
        for name in args.presets:
            if not (ROOT / "configs" / f"{name}.toml").exists():
                print(f"(skipping {name}: configs/{name}.toml not found)")
                continue
            torch.manual_seed(0)
            models.append((name, TransformerLM.from_config(preset_model(name), device=args.device).eval()))

    print(f"device {args.device}, {args.prompt_tokens}-token prompt, {args.new_tokens} new tokens, greedy, "
          f"best of {args.repeats}")
    print(f"{'model':<12} {'params':>8} {'ctx':>5} {'threads':>7} {'no cache tok/s':>15} {'KV cache tok/s':>15} "
          f"{'speed-up':>9} {'per CPU-s: no cache':>20} {'KV cache':>9} {'speed-up':>9}  same tokens")
    for name, model in models:
        cfg = model.config
        prompt = torch.randint(0, cfg["vocab_size"], (args.prompt_tokens,),
                               generator=torch.Generator().manual_seed(0)).tolist()
        with torch.no_grad():
            list(generate_ids(model, prompt, 4, temperature=0.0))  # warm-up
        for threads in args.threads:
            torch.set_num_threads(threads)
            t_plain, c_plain, plain = time_decoding(model, prompt, args.new_tokens, False, args.repeats)
            t_cache, c_cache, cached = time_decoding(model, prompt, args.new_tokens, True, args.repeats)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            n = args.new_tokens
            print(f"{name:<12} {params:>7.1f}M {cfg['context_length']:>5} {threads:>7} "
                  f"{n / t_plain:>15.1f} {n / t_cache:>15.1f} {t_plain / t_cache:>8.2f}x "
                  f"{n / c_plain:>20.1f} {n / c_cache:>9.1f} {c_plain / c_cache:>8.2f}x  {plain == cached}")
    return 0


if __name__ == "__main__":
    with recorded(__file__):
        sys.exit(main())
