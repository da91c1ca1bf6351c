"""Training speed: our pieces against torch's in the same run, and the presets' tokens/s.

    uv run python benchmarks/bench_training.py                 # short: about a minute on 2 cores
    uv run python benchmarks/bench_training.py --steps 30      # longer preset runs

Prints three tables:
1. cross_entropy, AdamW.step (eager, and with compile_update()) and clip_gradients against
   F.cross_entropy, torch.optim.AdamW (single-tensor, foreach, fused) and clip_grad_norm_ at the
   `cpu` preset's sizes;
2. get_batch from a memmap vs the time of one training step (the loader must not be the bottleneck);
3. tokens/s and MFU (against a matmul peak measured here) of the `smoke` and `cpu` presets,
   run by train() for a few steps on random tokens.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # reference only

from cs336_basics.data import get_batch, load_tokens
from cs336_basics.model import TransformerLM
from cs336_basics.nn_utils import clip_gradients, cross_entropy
from cs336_basics.optimizer import AdamW
from cs336_basics.config import load_config
from cs336_basics.runs import RunFolder
from cs336_basics.runtime import measure_matmul_peak
from cs336_basics.train import train
from results import recorded  # benchmarks/results.py: the output also goes to RESULTS.md

ROOT = Path(__file__).resolve().parent.parent


def best_time(fn, reps=5, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def pieces(cfg):
    print("\n1. pieces at the cpu preset's sizes (best of 5; ms)")
    b, t, v = cfg.data.batch_size, cfg.model.context_length, cfg.model.vocab_size
    logits = torch.randn(b, t, v, requires_grad=True)
    targets = torch.randint(0, v, (b, t))

    def ce(fn):
        return lambda: fn(logits, targets).backward()

    rows = [("cross_entropy fwd+bwd", best_time(ce(cross_entropy)),
             best_time(ce(lambda x, y: F.cross_entropy(x.reshape(-1, v), y.reshape(-1)))), "F.cross_entropy")]

    def optimizer_step(opt_cls, **kw):
        torch.manual_seed(0)
        model = TransformerLM.from_config(cfg.model)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt = opt_cls(model.parameters(), lr=1e-3, **kw)
        return lambda: opt.step(), model

    ours_step, model = optimizer_step(AdamW)
    rows.append(("AdamW.step", best_time(ours_step), best_time(optimizer_step(torch.optim.AdamW, foreach=False)[0]),
                 "torch AdamW (for-loop)"))
    rows.append(("AdamW.step", rows[-1][1], best_time(optimizer_step(torch.optim.AdamW, foreach=True)[0]),
                 "torch AdamW (foreach)"))
    compiled_step = optimizer_step(lambda ps, **kw: AdamW(ps, **kw).compile_update())[0]
    rows.append(("AdamW.step, compiled", best_time(compiled_step, warmup=2),
                 best_time(optimizer_step(torch.optim.AdamW, fused=True)[0], warmup=2), "torch AdamW (fused)"))
    params = list(model.parameters())
    rows.append(("clip_gradients", best_time(lambda: clip_gradients(params, 1.0)),
                 best_time(lambda: torch.nn.utils.clip_grad_norm_(params, 1.0)), "clip_grad_norm_"))
    print(f"{'piece':<24}{'ours':>9}{'reference':>11}  reference is")
    for name, ours, ref, what in rows:
        print(f"{name:<24}{ours * 1e3:9.2f}{ref * 1e3:11.2f}  {what}")


def loader(cfg, tmp: Path, step_s: float):
    print("\n2. get_batch from a memmap (50M uint16 tokens on disk)")
    path = tmp / "big.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(50_000_000,))
    for i in range(0, len(mm), 10_000_000):
        mm[i:i + 10_000_000] = np.random.default_rng(i).integers(0, cfg.model.vocab_size, 10_000_000)
    mm.flush()
    del mm
    tokens = load_tokens(path)
    rng = np.random.default_rng(0)
    per_batch = best_time(lambda: [get_batch(tokens, cfg.data.batch_size, cfg.model.context_length, "cpu", rng=rng)
                                   for _ in range(100)], reps=3) / 100
    print(f"get_batch({cfg.data.batch_size} x {cfg.model.context_length}): {per_batch * 1e3:.3f} ms per batch; "
          f"one cpu-preset training step: {step_s * 1e3:.0f} ms -> the loader is {100 * per_batch / step_s:.3f}% of a step")


def presets(steps: int, tmp: Path):
    print(f"\n3. presets, {steps} steps of train() on random tokens (tokens/s from the last logged window)")
    print(f"{'preset':<8}{'params':>9}{'precision':>10}{'threads':>8}{'tok/s':>9}{'MFU':>8}{'peak GFLOP/s':>14}{'s/step':>8}")
    step_s = None
    for name in ("smoke", "cpu"):
        cfg = load_config(ROOT / "configs" / f"{name}.toml")
        vocab = cfg.model.vocab_size
        for split, n in (("train", 2_000_000), ("valid", 200_000)):
            np.save(tmp / f"{name}_{split}.npy", np.random.default_rng(0).integers(0, vocab, n, dtype=np.uint16))
        amp = torch.bfloat16 if cfg.run.precision == "bf16" else torch.float32
        threads = cfg.run.num_threads or torch.get_num_threads()
        prev = torch.get_num_threads()
        torch.set_num_threads(threads)
        peak = measure_matmul_peak(torch.device("cpu"), amp)
        torch.set_num_threads(prev)
        log_every = max(1, steps // 2)
        cfg = load_config(ROOT / "configs" / f"{name}.toml", [
            f"data.train_tokens={tmp / f'{name}_train.npy'}", f"data.valid_tokens={tmp / f'{name}_valid.npy'}",
            f"run.out_dir={tmp / name}", f"schedule.max_steps={steps}", f"run.log_every={log_every}",
            f"run.eval_every={10 * steps}", "run.eval_batches=1", f"run.checkpoint_every={10 * steps}",
            f"run.peak_flops={peak}", "run.progress=false",
        ])
        run = train(cfg)
        last = [json.loads(x) for x in RunFolder(run).metrics.read_text().splitlines()][-1]
        n_params = sum(p.numel() for p in TransformerLM.from_config(cfg.model).parameters())
        s_step = cfg.data.batch_size * cfg.model.context_length / last["tok_per_s"]
        if name == "cpu":
            step_s = s_step
        print(f"{name:<8}{n_params / 1e6:8.2f}M{cfg.run.precision:>10}{threads:>8}{last['tok_per_s']:9.0f}"
              f"{last['mfu']:8.1%}{peak / 1e9:14.1f}{s_step:8.3f}")
    return step_s


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="training steps per preset (default 6)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    cfg = load_config(ROOT / "configs" / "cpu.toml")
    with tempfile.TemporaryDirectory() as tmp:
        step_s = presets(args.steps, Path(tmp))
        pieces(cfg)
        loader(cfg, Path(tmp), step_s)


if __name__ == "__main__":
    with recorded(__file__):
        main()
