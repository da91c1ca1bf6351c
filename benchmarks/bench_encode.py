"""Encoding speed with GPT-2's vocabulary: our pure-Python Tokenizer vs tiktoken (and HF tokenizers).

    uv run python benchmarks/bench_encode.py [--mb 4] [--repeats 3] [--input FILE]

Each repeat builds a fresh Tokenizer (empty cache; construction is timed separately) and encodes
the text once. ``Tokenizer.from_tiktoken("gpt2")`` follows tiktoken's rule that a pre-token which
is a whole vocabulary token skips the merges; the "merges only" row runs the merges on every new
pre-token (the handout's definition; same ids for GPT-2). tiktoken's ``encode_ordinary`` and HF ``tokenizers`` (GPT-2 vocab + merges, byte-level
pre-tokenizer) encode the same text in the same run, one thread each. Ids must be identical.
Reports the median over repeats of wall time and of CPU time of this process (the machine may be
shared; CPU time is the less noisy of the two). Needs tiktoken's gpt2 files: set
TIKTOKEN_CACHE_DIR (e.g. ../shared/tiktoken_cache) when offline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF tokenizers: one thread, like the others
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "web" / "train.txt"


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="text file (default: ../shared/data/web/train.txt)")
    parser.add_argument("--mb", type=float, default=4.0, help="encode the first MB megabytes (10^6 bytes) of the file")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.input.is_file():
        sys.exit(f"input {args.input} not found; pass --input FILE")

    import tiktoken

    from cs336_basics.tokenizer import Tokenizer

    raw = args.input.read_bytes()[: int(args.mb * 1e6)]
    text = raw[: raw.rfind(b"\n") + 1].decode("utf-8", errors="replace")
    nbytes = len(text.encode("utf-8"))
    print(f"input: first {nbytes / 1e6:.2f} MB of {args.input} ({len(text):,} characters)")

    enc = tiktoken.get_encoding("gpt2")
    enc.encode_ordinary("warm up")
    rows: dict[str, list[tuple[float, float]]] = {
        "tiktoken encode_ordinary": [],
        "ours: fresh Tokenizer.encode": [],
        "ours: fresh, merges only": [],
    }
    builds = []
    reference = None
    hf = None
    try:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        folder = Path(tempfile.mkdtemp())
        Tokenizer.from_tiktoken("gpt2").save(folder)
        hf = HFTokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        hf.encode("warm up")
        rows["HF tokenizers (1 thread)"] = []
    except Exception as err:  # optional reference
        print(f"(HF tokenizers skipped: {type(err).__name__}: {err})")

    for _ in range(args.repeats):
        reference, wall, cpu = timed(lambda: enc.encode_ordinary(text))
        rows["tiktoken encode_ordinary"].append((wall, cpu))
        tokenizer, wall, cpu = timed(lambda: Tokenizer.from_tiktoken("gpt2", special_tokens=[]))
        builds.append(wall)
        ids, wall, cpu = timed(lambda: tokenizer.encode(text))
        rows["ours: fresh Tokenizer.encode"].append((wall, cpu))
        if ids != reference:
            sys.exit("MISMATCH: our ids differ from tiktoken's")
        merges_only = Tokenizer(tokenizer.vocab, tokenizer.merges, [], pattern=tokenizer.pattern)
        ids, wall, cpu = timed(lambda: merges_only.encode(text))
        rows["ours: fresh, merges only"].append((wall, cpu))
        if ids != reference:
            sys.exit("MISMATCH: our merges-only ids differ from tiktoken's")
        if hf is not None:
            hf_ids, wall, cpu = timed(lambda: hf.encode(text).ids)
            rows["HF tokenizers (1 thread)"].append((wall, cpu))
            if hf_ids != reference:
                print("note: HF ids differ from tiktoken's")
    _, warm_wall, warm_cpu = timed(lambda: tokenizer.encode(text))

    base_wall = statistics.median(w for w, _ in rows["tiktoken encode_ordinary"])
    base_cpu = statistics.median(c for _, c in rows["tiktoken encode_ordinary"])
    print(f"{len(reference):,} tokens, ids identical to tiktoken: True; median of {args.repeats} repeats")
    print(f"{'encoder':32s} {'wall s':>8s} {'MB/s':>7s} {'ratio':>6s} {'cpu s':>8s} {'MB/s':>7s} {'ratio':>6s}")
    for name, times in rows.items():
        wall = statistics.median(w for w, _ in times)
        cpu = statistics.median(c for _, c in times)
        print(f"{name:32s} {wall:8.3f} {nbytes / 1e6 / wall:7.2f} {base_wall / wall:6.2f} {cpu:8.3f} {nbytes / 1e6 / cpu:7.2f} {base_cpu / cpu:6.2f}")
    print(f"{'ours: same Tokenizer, warm cache':32s} {warm_wall:8.3f} {nbytes / 1e6 / warm_wall:7.2f} {base_wall / warm_wall:6.2f} "
          f"{warm_cpu:8.3f} {nbytes / 1e6 / warm_cpu:7.2f} {base_cpu / warm_cpu:6.2f}")
    print(f"(building our GPT-2 Tokenizer from tiktoken's ranks: median {statistics.median(builds):.2f} s, not included above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
