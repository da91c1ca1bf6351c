"""What the pipeline's integrity checks cost per stage: fingerprints (size + BLAKE2b) of its inputs
and outputs, the first time (the file is read) and on a re-run (a stat per file), and the run lock.

    uv run python benchmarks/bench_run_records.py --data ../shared/data/english [--run runs/cpu]

Reference in the same run: reading the same bytes with no hashing (the disk/page-cache floor), so
the hash's own cost is the difference. With --run, the run's token files and checkpoint are timed
too (the train and evaluate stages fingerprint them).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cs336_basics import runs
from cs336_basics.runs import RunFolder, StageRecords, fingerprint, fingerprint_matches, run_lock
from results import recorded  # benchmarks/results.py: the output also goes to RESULTS.md


def timed(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def read_only(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/english", help="folder with train.txt and valid.txt")
    parser.add_argument("--run", default=None, help="a pipeline run folder (tokens/*.npy, checkpoints/latest.pt)")
    args = parser.parse_args()

    files = [Path(args.data) / "train.txt", Path(args.data) / "valid.txt"]
    if args.run:
        run = RunFolder(args.run)
        files += [run.train_tokens, run.valid_tokens, run.latest]
    print(f"{'file':<48} {'MB':>7} {'read only':>10} {'first fingerprint':>18} {'re-check':>9}")
    for path in files:
        if not path.is_file():
            print(f"{str(path):<48} (missing)")
            continue
        mb = path.stat().st_size / 1e6
        read_s = timed(lambda: read_only(path))

        def first():
            runs._hashes.clear()  # forget the per-process hash memo: the cost of a first fingerprint
            return fingerprint(path)

        first_s = timed(first)
        recorded = fingerprint(path)
        check_s = timed(lambda: fingerprint_matches(recorded, path), reps=20)
        print(f"{str(path):<48} {mb:7.1f} {read_s * 1e3:8.1f} ms {first_s * 1e3:15.1f} ms {check_s * 1e6:6.0f} us")

    with tempfile.TemporaryDirectory() as folder:
        lock_s = timed(lambda: _lock_once(folder), reps=20)
        records = StageRecords(folder)
        record_s = timed(lambda: records.record("tokenizer", {"train.txt": files[0]}, {"vocab_size": 4096}), reps=5)
    print(f"run lock, take and release: {lock_s * 1e6:.0f} us; writing stages.json for one stage: {record_s * 1e3:.1f} ms")


def _lock_once(folder: str) -> None:
    with run_lock(folder):
        pass


if __name__ == "__main__":
    with recorded(__file__):
        main()
