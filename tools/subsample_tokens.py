"""Keep every k-th block of a token file: a smaller training set that a short run reads as many times
as a full run reads the whole one.

    uv run python tools/subsample_tokens.py data/english data/english_quarter          # every 4th block
    uv run python tools/subsample_tokens.py data/english data/english_half --every 2

Why: a 400 s screen at one thread reads 0.4 epochs of the English stand-in, a full 855 s run at two
threads 1.5, so a screen never sees what happens on the second pass (a bigram table memorised it;
experiments/leaderboard_english_epochs.toml). Screening on a quarter of the tokens puts the second
pass inside 400 s. Blocks (65,536 tokens by default) rather than single windows keep the text
contiguous, so every training window is still real running text.

SRC is a data folder as `cs336 prepare` writes it (SRC/tokens/train.npy and valid.npy) or a folder
that holds train.npy and valid.npy itself; DST gets train.npy (the kept blocks) and valid.npy (a copy
of the whole valid file, so that scores stay comparable). Files are written under a temporary name
and renamed, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cs336_basics.files import atomic_path  # noqa: E402


def token_folder(data_dir: Path) -> Path:
    """SRC/tokens when that is where the token files are (a prepared data folder), else SRC."""
    return data_dir / "tokens" if (data_dir / "tokens" / "train.npy").is_file() else data_dir


def subsample(tokens: np.ndarray, every: int, block: int) -> np.ndarray:
    """Blocks 0, every, 2 every, ... of ``block`` tokens each (the last block may be shorter).

    >>> subsample(np.arange(10), every=2, block=2).tolist()
    [0, 1, 4, 5, 8, 9]
    """
    if every < 1 or block < 1:
        raise ValueError(f"every and block must be >= 1, got every={every}, block={block}")
    return np.concatenate([tokens[start:start + block] for start in range(0, len(tokens), every * block)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("src", type=Path, help="data folder with tokens/train.npy and tokens/valid.npy (or without tokens/)")
    parser.add_argument("dst", type=Path, help="folder to write train.npy and valid.npy into")
    parser.add_argument("--every", type=int, default=4, help="keep one block in this many (default 4: a quarter)")
    parser.add_argument("--block", type=int, default=65_536, help="tokens per block (default 65,536)")
    args = parser.parse_args(argv)
    source = token_folder(args.src)
    missing = [name for name in ("train.npy", "valid.npy") if not (source / name).is_file()]
    if missing:
        parser.error(f"{source} has no {' or '.join(missing)}: make the data first "
                     f"(e.g. uv run cs336 prepare cpu --data ../shared/data/english)")
    if args.dst.resolve() in (args.src.resolve(), source.resolve()):
        parser.error("dst must be another folder than src (it would overwrite the full token files)")
    train = np.load(source / "train.npy", mmap_mode="r")
    try:
        kept = subsample(train, args.every, args.block)
    except ValueError as err:
        parser.error(str(err))
    args.dst.mkdir(parents=True, exist_ok=True)
    for name, array in (("train.npy", kept), ("valid.npy", np.load(source / "valid.npy"))):
        with atomic_path(args.dst / name) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, array)
    print(f"{args.dst / 'train.npy'}: {len(kept):,} of {len(train):,} "
          f"training tokens (every {args.every} of {args.block:,}-token blocks); valid.npy copied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
