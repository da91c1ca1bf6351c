"""One training step of our from-scratch TransformerLM against the same model built from torch's fused primitives.

    uv run python benchmarks/bench_model.py                      # the issue's shape and TinyStories', eager
    uv run python benchmarks/bench_model.py --compile            # ... and both models under torch.compile
    uv run python benchmarks/bench_model.py --shapes small --steps 20
    uv run python benchmarks/bench_model.py --shapes cpu --compile --threads 2   # the cpu preset's model

A step is forward, loss, backward, optimizer step, zero_grad, in float32 on the CPU.

* ours: ``cs336_basics.model.TransformerLM`` + ``cs336_basics.nn_utils.cross_entropy`` +
  ``cs336_basics.optimizer.AdamW`` (everything from scratch).
* ours, chunked output layer+loss: the same, with ``linear_cross_entropy`` (128 positions at a time,
  no (batch, seq, vocab) logits), as the training loop does with ``run.loss_chunk_rows = 128``.
* ours, torch loss/optim: our model with ``F.cross_entropy`` and ``torch.optim.AdamW`` (isolates the model).
* reference: the same architecture written with ``F.embedding``, ``F.rms_norm``, ``F.linear`` (one fused
  QKV weight), a complex-number RoPE, ``F.scaled_dot_product_attention(is_causal=True)``, ``F.silu``,
  ``F.cross_entropy`` and ``torch.optim.AdamW`` (foreach), loaded with the same weights.

The machine's cores are shared, so the variants are timed *interleaved* (one step of each in turn,
repeated) after warm-up steps, and the table reports the median wall-clock and the median CPU time
(this process's, all threads) of a step. The check is ``speed ratio = reference median / our median``
(>= 0.9 wanted); with the default single thread the CPU-time ratio is immune to other processes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from cs336_basics.model import TransformerLM  # noqa: E402
from cs336_basics.nn_utils import cross_entropy, linear_cross_entropy  # noqa: E402
from cs336_basics.optimizer import AdamW  # noqa: E402
from results import recorded  # benchmarks/results.py: the output also goes to RESULTS.md

REF = "reference (F.*, torch AdamW)"
CHUNKED = "ours, chunked output layer+loss"
SHAPES = {
    # name: (vocab, context, d_model, layers, heads, d_ff, batch)
    "small": (10000, 128, 256, 4, 8, 704, 8),
    "cpu": (4096, 256, 192, 4, 6, 512, 8),  # configs/cpu.toml
    "tinystories": (10000, 256, 512, 4, 16, 1344, 8),
}


class ReferenceLM(nn.Module):
    """The same pre-norm SwiGLU/RoPE Transformer, written with torch's fused functional ops."""

    def __init__(self, ours: TransformerLM):
        super().__init__()
        c = ours.config
        self.num_heads, self.d_model = c["num_heads"], c["d_model"]
        sd = {k: v.detach().clone() for k, v in ours.state_dict().items()}
        self.embedding = nn.Parameter(sd["token_embeddings.weight"])
        self.lm_head = nn.Parameter(sd["lm_head.weight"])
        self.ln_final = nn.Parameter(sd["ln_final.weight"])
        self.layers = nn.ModuleList()
        for i in range(c["num_layers"]):
            w = lambda name: nn.Parameter(sd[f"layers.{i}.{name}.weight"])
            layer = nn.Module()
            layer.wqkv = nn.Parameter(torch.cat([sd[f"layers.{i}.attn.{p}_proj.weight"] for p in "qkv"]))
            layer.wo, layer.ln1, layer.ln2 = w("attn.output_proj"), w("ln1"), w("ln2")
            layer.w1, layer.w2, layer.w3 = w("ffn.w1"), w("ffn.w2"), w("ffn.w3")
            self.layers.append(layer)
        d_k = self.d_model // self.num_heads
        freqs = c["rope_theta"] ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)
        angles = torch.outer(torch.arange(c["context_length"], dtype=torch.float64), freqs)
        self.register_buffer("rot", torch.polar(torch.ones_like(angles), angles).to(torch.complex64), persistent=False)

    def rope(self, x):  # (b, h, s, d_k), adjacent pairs as complex numbers
        xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
        return torch.view_as_real(xc * self.rot[: x.shape[-2]]).flatten(-2).type_as(x)

    def forward(self, ids):
        b, s = ids.shape
        d, h = self.d_model, self.num_heads
        x = F.embedding(ids, self.embedding)
        for L in self.layers:
            a = F.rms_norm(x, (d,), L.ln1, eps=1e-5)
            q, k, v = F.linear(a, L.wqkv).view(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(self.rope(q), self.rope(k), v, is_causal=True)
            x = x + F.linear(o.transpose(1, 2).reshape(b, s, d), L.wo)
            f = F.rms_norm(x, (d,), L.ln2, eps=1e-5)
            x = x + F.linear(F.silu(F.linear(f, L.w1)) * F.linear(f, L.w3), L.w2)
        return F.linear(F.rms_norm(x, (d,), self.ln_final, eps=1e-5), self.lm_head)


def make_step(model, optimizer, loss_fn, compiled: bool):
    forward = torch.compile(model) if compiled else model

    def step(x, y):
        if loss_fn == "chunked":  # linear_cross_entropy, 128 positions at a time (run.loss_chunk_rows)
            loss = linear_cross_entropy(forward(x, return_hidden=True), model.lm_head.weight, y, 128)
        else:
            loss = loss_fn(forward(x).flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def bench_shape(name: str, args):
    """Yield one table row per variant, mode by mode."""
    vocab, ctx, d, layers, heads, d_ff, batch = SHAPES[name]
    torch.manual_seed(0)
    x = torch.randint(0, vocab, (batch, ctx))
    y = torch.randint(0, vocab, (batch, ctx))
    modes = [False, True] if args.compile else [False]
    for compiled in modes:
        ours = TransformerLM(vocab, ctx, d, layers, heads, d_ff)
        ours_t = TransformerLM(vocab, ctx, d, layers, heads, d_ff)
        ours_t.load_state_dict(ours.state_dict())
        ours_c = TransformerLM(vocab, ctx, d, layers, heads, d_ff)
        ours_c.load_state_dict(ours.state_dict())
        ref = ReferenceLM(ours)
        hp = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)
        variants = {
            "ours (model+loss+AdamW)": make_step(ours, AdamW(ours.parameters(), **hp), cross_entropy, compiled),
            CHUNKED: make_step(ours_c, AdamW(ours_c.parameters(), **hp), "chunked", compiled),
            "ours model, torch loss+AdamW": make_step(
                ours_t, torch.optim.AdamW(ours_t.parameters(), foreach=True, **hp), F.cross_entropy, compiled
            ),
            REF: make_step(
                ref, torch.optim.AdamW(ref.parameters(), foreach=True, **hp), F.cross_entropy, compiled
            ),
        }
        # same weights, same batch: the first losses must agree
        first = {k: step(x, y).item() for k, step in variants.items()}
        spread = max(first.values()) - min(first.values())
        assert spread < 1e-3, f"the variants disagree on the first loss: {first}"
        for _ in range(args.warmup):
            for step in variants.values():
                step(x, y)
        wall = {k: [] for k in variants}
        cpu = {k: [] for k in variants}
        for _ in range(args.steps):
            for k, step in variants.items():
                c0, t0 = time.process_time(), time.perf_counter()
                step(x, y)
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        ref_wall = statistics.median(wall[REF])
        ref_cpu = statistics.median(cpu[REF])
        for k in variants:
            w, c = statistics.median(wall[k]), statistics.median(cpu[k])
            yield (name, "compile" if compiled else "eager", k, w * 1e3, c * 1e3,
                   batch * ctx / w, ref_wall / w, ref_cpu / c)
        print(f"  [{name}, {'compile' if compiled else 'eager'}] first losses {first}", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="small,tinystories", help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first (default 2)")
    parser.add_argument("--compile", action="store_true", help="also time every variant under torch.compile")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: on shared cores, one thread gives stable timings)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    unknown = set(args.shapes.split(",")) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shape(s) {sorted(unknown)}; choose from {sorted(SHAPES)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU; "
          f"median of {args.steps} interleaved steps after {args.warmup} warm-up steps")
    for name in args.shapes.split(","):
        vocab, ctx, d, layers, heads, d_ff, batch = SHAPES[name]
        print(f"{name}: vocab {vocab}, context {ctx}, d_model {d}, {layers} layers, {heads} heads, "
              f"d_ff {d_ff}, batch {batch}")
    header = (f"{'shape':<12} {'mode':<8} {'variant':<30} {'wall ms':>8} {'cpu ms':>8} {'tok/s':>7} "
              f"{'speed vs ref (wall)':>19} {'(cpu)':>6}")
    print(header)
    print("-" * len(header))
    for name in args.shapes.split(","):
        for row in bench_shape(name, args):
            shape, mode, variant, w, c, tps, ratio_wall, ratio_cpu = row
            print(f"{shape:<12} {mode:<8} {variant:<30} {w:>8.1f} {c:>8.1f} {tps:>7.0f} {ratio_wall:>18.2f}x "
                  f"{ratio_cpu:>5.2f}x", flush=True)


if __name__ == "__main__":
    with recorded(__file__):
        main()
