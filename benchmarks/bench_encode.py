"""Encoding speed with GPT-2's vocabulary: our pure-Python Tokenizer vs tiktoken (and HF tokenizers).

    uv run python benchmarks/bench_encode.py [--mb 4] [--repeats 3] [--input FILE]

Each repeat builds fresh Tokenizers (empty cache; construction is timed separately) and encodes
the text once with each (a cold pass). Rows:

* handout path: ``Tokenizer(vocab, merges, ["<|endoftext|>"])`` with GPT-2's vocab and merges, the
  handout's constructor (merges on every new pre-token, no whole-token lookup), against tiktoken's
  ``encode(text, allowed_special={"<|endoftext|>"})``: the web text holds a special token between
  documents, so this is how a training corpus is encoded.
* ``Tokenizer.from_tiktoken("gpt2", special_tokens=[])`` follows tiktoken's rule that a pre-token
  which is a whole vocabulary token skips the merges; "merges only" is the same vocabulary through
  the handout's constructor without special tokens. Both against tiktoken's ``encode_ordinary``
  (no special tokens: ``<|endoftext|>`` is plain text), as is HF ``tokenizers`` (GPT-2 vocab +
  merges, byte-level pre-tokenizer).

Every encoder runs on one thread, in the same run, interleaved repeat by repeat; ids must equal
tiktoken's. Reports the median over repeats of wall time and of CPU time of this process (the
machine may be shared; CPU time is the less noisy of the two); "ratio" is the row's throughput over
its tiktoken reference's (tiktoken = 1). Needs tiktoken's gpt2 files: set TIKTOKEN_CACHE_DIR (e.g.
../shared/tiktoken_cache) when offline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from results import recorded  # benchmarks/results.py: the output also goes to RESULTS.md

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
    EOT = "<|endoftext|>"
    ORDINARY, WITH_EOT = "tiktoken encode_ordinary", "tiktoken encode, EOT allowed"
    HANDOUT = "ours: handout path, EOT special"
    rows: dict[str, list[tuple[float, float]]] = {WITH_EOT: [], HANDOUT: [], ORDINARY: []}
    rows |= {"ours: from_tiktoken, no specials": [], "ours: fresh, merges only": []}
    reference_of = {WITH_EOT: WITH_EOT, HANDOUT: WITH_EOT}  # every other row: ORDINARY
    builds = []
    reference = None

    for _ in range(args.repeats):
        with_eot, wall, cpu = timed(lambda: enc.encode(text, allowed_special={EOT}))
        rows[WITH_EOT].append((wall, cpu))
        tokenizer, wall, cpu = timed(lambda: Tokenizer.from_tiktoken("gpt2", special_tokens=[]))
        builds.append(wall)
        handout = Tokenizer(tokenizer.vocab, tokenizer.merges, [EOT])
        ids, wall, cpu = timed(lambda: handout.encode(text))
        rows[HANDOUT].append((wall, cpu))
        if ids != with_eot:
            sys.exit("MISMATCH: our handout-path ids differ from tiktoken's encode(allowed_special={EOT})")
        reference, wall, cpu = timed(lambda: enc.encode_ordinary(text))
        rows[ORDINARY].append((wall, cpu))
        ids, wall, cpu = timed(lambda: tokenizer.encode(text))
        rows["ours: from_tiktoken, no specials"].append((wall, cpu))
        if ids != reference:
            sys.exit("MISMATCH: our ids differ from tiktoken's")
        merges_only = Tokenizer(tokenizer.vocab, tokenizer.merges, [], pattern=tokenizer.pattern)
        ids, wall, cpu = timed(lambda: merges_only.encode(text))
        rows["ours: fresh, merges only"].append((wall, cpu))
        if ids != reference:
            sys.exit("MISMATCH: our merges-only ids differ from tiktoken's")
    _, warm_wall, warm_cpu = timed(lambda: tokenizer.encode(text))

    # HF tokenizers last, in a loop of its own: once it has run, our encoders measured 10-20% slower
    # in the same process (its allocations and thread pool), which would blur the rows above
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
        for _ in range(args.repeats):
            hf_ids, wall, cpu = timed(lambda: hf.encode(text).ids)
            rows["HF tokenizers (1 thread)"].append((wall, cpu))
            if hf_ids != reference:
                print("note: HF ids differ from tiktoken's")
    except Exception as err:  # optional reference
        print(f"(HF tokenizers skipped: {type(err).__name__}: {err})")

    median = {name: (statistics.median(w for w, _ in times), statistics.median(c for _, c in times)) for name, times in rows.items()}
    print(f"{len(reference):,} tokens ({len(with_eot):,} with EOT special), ids identical to tiktoken's: True; "
          f"median of {args.repeats} repeats; ratio = throughput / its tiktoken reference's")
    print(f"{'encoder':34s} {'wall s':>8s} {'MB/s':>7s} {'ratio':>6s} {'cpu s':>8s} {'MB/s':>7s} {'ratio':>6s}")
    for name in rows:
        (wall, cpu), (base_wall, base_cpu) = median[name], median[reference_of.get(name, ORDINARY)]
        print(f"{name:34s} {wall:8.3f} {nbytes / 1e6 / wall:7.2f} {base_wall / wall:6.2f} {cpu:8.3f} {nbytes / 1e6 / cpu:7.2f} {base_cpu / cpu:6.2f}")
    base_wall, base_cpu = median[ORDINARY]
    print(f"{'ours: from_tiktoken, warm cache':34s} {warm_wall:8.3f} {nbytes / 1e6 / warm_wall:7.2f} {base_wall / warm_wall:6.2f} "
          f"{warm_cpu:8.3f} {nbytes / 1e6 / warm_cpu:7.2f} {base_cpu / warm_cpu:6.2f}")
    (wall, cpu), (base_wall, base_cpu) = median[HANDOUT], median[WITH_EOT]
    print(f"handout path, Tokenizer(vocab, merges, [{EOT!r}]), cold: {base_cpu / cpu:.2f}x tiktoken's single-thread "
          f"throughput by CPU time ({base_wall / wall:.2f}x by wall time), ids identical")
    print(f"(building our GPT-2 Tokenizer from tiktoken's ranks: median {statistics.median(builds):.2f} s, not included above)")
    return 0


if __name__ == "__main__":
    with recorded(__file__):
        sys.exit(main())
