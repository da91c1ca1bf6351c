"""Equal-time tuning runs for the `cpu` preset: train for a fixed wall-clock budget, score the whole
validation file in bits per byte, append one JSON line per run.

How configs/cpu.toml was tuned: two runs at a time, one thread each, 400 s each, so both share the
machine alike (compare runs of the same batch only). The learning-rate schedule follows the elapsed
fraction of the budget, so a slower model gets fewer steps, as it would in a 15-minute run.

    uv run cs336 train-bpe --input ../shared/data/english/train.txt --vocab-size 4096 --out data/tok4096
    uv run cs336 tokenize --tokenizer data/tok4096 --input ../shared/data/english/train.txt --out data/tok4096/train.npy
    uv run cs336 tokenize --tokenizer data/tok4096 --input ../shared/data/english/valid.txt --out data/tok4096/valid.npy
    uv run python benchmarks/sweep_cpu_preset.py --tokens data/tok4096 --name base --time 400 &
    uv run python benchmarks/sweep_cpu_preset.py --tokens data/tok4096 --name emb30 --embedding-lr-scale 30 --time 400

``--optimizer muon`` swaps AdamW for Muon (momentum + Newton-Schulz orthogonalised updates, after
Keller Jordan's description) on the hidden matrices; it is an experiment, not part of the package.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from cs336_basics.data import batch_at, epoch_batch_starts
from cs336_basics.model import TransformerLM
from cs336_basics.nn_utils import clip_gradients, cross_entropy, linear_cross_entropy
from cs336_basics.optimizer import AdamW
from cs336_basics.tokenizer import Tokenizer
from cs336_basics.config import OptimConfig
from cs336_basics.train import optimizer_groups
from results import recorded  # benchmarks/results.py: the output also goes to RESULTS.md


def newton_schulz(update: torch.Tensor, steps: int) -> torch.Tensor:
    """Approximately the nearest semi-orthogonal matrix to ``update`` (quintic iteration; the
    coefficients 3.4445, -4.7750, 2.0315 are the ones published with Muon)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = update / (update.norm() + 1e-7)
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.T


class Muon(torch.optim.Optimizer):
    """SGD with Nesterov momentum whose update is orthogonalised before it is applied (2-D params)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, steps: int = 5):
        super().__init__(params, dict(lr=lr, momentum=momentum, steps=steps, lr_scale=1.0))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum"] = torch.zeros_like(p)
                buf = state["momentum"].lerp_(p.grad, 1 - group["momentum"])
                update = newton_schulz(p.grad.lerp(buf, group["momentum"]), group["steps"])
                p.add_(update, alpha=-group["lr"] * max(1.0, p.shape[0] / p.shape[1]) ** 0.5)


def lr_factor(step: int, frac: float, args) -> float:
    """Warm-up by steps, then cosine (or warmup-stable-decay) by elapsed fraction of the budget."""
    if step < args.warmup:
        return step / args.warmup
    if args.schedule == "cosine":
        return args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    if frac < 1 - args.decay_fraction:
        return 1.0
    return 1.0 - min(1.0, (frac - 1 + args.decay_fraction) / args.decay_fraction) * (1 - args.min_lr_ratio)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=Path, required=True, help="folder with the tokenizer files and train.npy / valid.npy")
    p.add_argument("--name", required=True)
    p.add_argument("--time", type=float, default=400, help="training budget in seconds (after the first step)")
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--d-model", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--d-ff", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--embedding-lr-scale", type=float, default=1.0)
    p.add_argument("--head-lr-scale", type=float, default=1.0)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--head-weight-decay", type=float, default=None, help="override the lm_head group's weight decay")
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--gain-lr-scale", type=float, default=1.0, help="lr scale of the RMSNorm gains")
    p.add_argument("--zero-init-out", action="store_true",
                   help="start each block's attention output projection and FFN w2 at zero")
    p.add_argument("--sampler", choices=["random", "epoch"], default="random",
                   help="random: uniform start positions (get_batch); epoch: every window once per epoch (epoch_batch_starts)")
    p.add_argument("--train-fraction", type=float, default=1.0,
                   help="train on this fraction of train.npy (every k-th block of 65,536 tokens), to reach the "
                        "full run's epoch count in a short run")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--schedule", choices=["cosine", "wsd"], default="cosine")
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--decay-fraction", type=float, default=0.3, help="wsd: the last fraction of the budget decays")
    p.add_argument("--optimizer", choices=["adamw", "muon"], default="adamw")
    p.add_argument("--muon-lr", type=float, default=0.02)
    p.add_argument("--loss-chunk-rows", type=int, default=0, help="> 0: linear_cross_entropy with this many rows a chunk")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--eager-optimizer", action="store_true", help="keep AdamW's update eager (as in the earlier tuning runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results", type=Path, default=Path("runs/sweep_cpu_preset.jsonl"))
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tokenizer = Tokenizer.load(args.tokens)
    train = np.load(args.tokens / "train.npy", mmap_mode="r")
    if args.train_fraction < 1:
        every = round(1 / args.train_fraction)
        train = np.concatenate([train[i:i + 65536] for i in range(0, len(train), 65536 * every)])
    valid = np.load(args.tokens / "valid.npy")
    bytes_per_token = len(tokenizer.decode(valid.tolist()).encode("utf-8")) / len(valid)
    model = TransformerLM(vocab_size=len(tokenizer.vocab), context_length=args.context, d_model=args.d_model,
                          num_layers=args.layers, num_heads=args.heads, d_ff=args.d_ff)
    groups = optimizer_groups(model, OptimConfig(weight_decay=args.weight_decay, embedding_lr_scale=args.embedding_lr_scale,
                                                 head_lr_scale=args.head_lr_scale))
    for g in groups:
        if all(q.ndim < 2 for q in g["params"]):
            g["lr_scale"] = args.gain_lr_scale
    if args.zero_init_out:
        with torch.no_grad():
            for block in model.layers:
                block.attn.output_proj.weight.zero_()
                block.ffn.w2.weight.zero_()
    if args.head_weight_decay is not None:
        for g in groups:
            if any(q is model.lm_head.weight for q in g["params"]):
                g["weight_decay"] = args.head_weight_decay
    optimizers = []
    if args.optimizer == "muon":  # Muon takes the hidden matrices (the first group), AdamW the rest
        optimizers.append(Muon(groups[0]["params"], lr=args.muon_lr))
        groups = groups[1:]
    optimizers.append(AdamW(groups, lr=args.lr, betas=(0.9, args.beta2)))
    if not args.no_compile and not args.eager_optimizer:
        optimizers[-1].compile_update()
    base_lr = {id(g): (args.muon_lr if isinstance(o, Muon) else args.lr) for o in optimizers for g in o.param_groups}
    forward = model if args.no_compile else torch.compile(model)
    loss_fn = cross_entropy if args.no_compile else torch.compile(cross_entropy)
    rng = np.random.default_rng(args.seed)
    params = list(model.parameters())

    losses, step, t0 = [], 0, None
    while True:
        if step == 1:
            t0 = time.perf_counter()  # the first step includes compiling
        elapsed = 0.0 if t0 is None else time.perf_counter() - t0
        if elapsed >= args.time:
            break
        factor = lr_factor(step, elapsed / args.time, args)
        for o in optimizers:
            for g in o.param_groups:
                g["lr"] = base_lr[id(g)] * factor * g["lr_scale"]
        if args.sampler == "epoch":
            starts = epoch_batch_starts(len(train), args.context, args.batch, step, args.seed)
        else:
            starts = rng.integers(0, len(train) - args.context, size=args.batch)
        x, y = batch_at(train, starts, args.context, torch.device("cpu"))
        if args.loss_chunk_rows:
            loss = linear_cross_entropy(forward(x, return_hidden=True), model.lm_head.weight, y, args.loss_chunk_rows)
        else:
            loss = loss_fn(forward(x), y)
        for o in optimizers:
            o.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(params, 1.0)
        for o in optimizers:
            o.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            print(f"{args.name}: step {step}, train loss {np.mean(losses[-100:]):.4f}, {elapsed:.0f} s", flush=True)
    train_s = time.perf_counter() - t0

    model.eval()
    windows = (len(valid) - 1) // args.context  # the whole file, in non-overlapping windows
    total = 0.0
    with torch.no_grad():
        for i in range(0, windows, 32):
            starts = np.arange(i, min(windows, i + 32)) * args.context
            x, y = batch_at(valid, starts, args.context, torch.device("cpu"))
            total += cross_entropy(model(x), y).item() * len(starts)
    val = total / windows
    result = dict(name=args.name, val_loss=val, bits_per_byte=val / bytes_per_token / math.log(2), steps=step,
                  train_s=train_s, train_loss_last_100=float(np.mean(losses[-100:])), args={k: str(v) for k, v in vars(args).items()})
    print(json.dumps(result), flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    with recorded(__file__):
        main()
