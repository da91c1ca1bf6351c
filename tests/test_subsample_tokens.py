"""tools/subsample_tokens.py: the quarter of the English data that experiments/leaderboard_english_epochs.toml screens on."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("subsample_tokens", ROOT / "tools" / "subsample_tokens.py")
subsample_tokens = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(subsample_tokens)


def test_keeps_every_kth_block_and_copies_valid(tmp_path, capsys):
    src = tmp_path / "english" / "tokens"
    src.mkdir(parents=True)
    np.save(src / "train.npy", np.arange(1000, dtype=np.uint16))
    np.save(src / "valid.npy", np.arange(7, dtype=np.uint16))
    assert subsample_tokens.main([str(tmp_path / "english"), str(tmp_path / "quarter"), "--block", "100"]) == 0
    kept = np.load(tmp_path / "quarter" / "train.npy")
    expected = np.concatenate([np.arange(0, 100), np.arange(400, 500), np.arange(800, 900)])
    assert kept.dtype == np.uint16 and np.array_equal(kept, expected)
    assert np.array_equal(np.load(tmp_path / "quarter" / "valid.npy"), np.arange(7))
    assert "300 of 1,000" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "quarter").iterdir()) == ["train.npy", "valid.npy"]  # no temp files


def test_refuses_missing_data_and_overwriting_the_source(tmp_path, capsys):
    with pytest.raises(SystemExit):
        subsample_tokens.main([str(tmp_path / "nothing"), str(tmp_path / "out")])
    assert "make the data first" in capsys.readouterr().err
    np.save(tmp_path / "train.npy", np.arange(10, dtype=np.uint16))
    np.save(tmp_path / "valid.npy", np.arange(3, dtype=np.uint16))
    with pytest.raises(SystemExit):
        subsample_tokens.main([str(tmp_path), str(tmp_path)])
    assert "another folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        subsample_tokens.main([str(tmp_path), str(tmp_path / "out"), "--every", "0"])
    assert "every and block must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
