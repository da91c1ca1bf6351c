"""benchmarks/results.py keeps one section per script in RESULTS.md, replaced by its latest run."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def results():
    spec = importlib.util.spec_from_file_location("bench_results", ROOT / "benchmarks" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_script_has_one_section_replaced_by_its_latest_run(results, tmp_path):
    path = tmp_path / "RESULTS.md"
    results.write_section("bench_b.py", "uv run python benchmarks/bench_b.py", "b: 1.0x\n", path)
    results.write_section("bench_a.py", "uv run python benchmarks/bench_a.py", "a: 2.0x\n", path)
    results.write_section("bench_b.py", "uv run python benchmarks/bench_b.py --mb 8", "b: 3.0x\n", path)
    text = path.read_text()
    assert text.startswith("# Benchmark results")
    assert text.index("## bench_a.py") < text.index("## bench_b.py")
    assert text.count("## bench_b.py") == 1 and "b: 3.0x" in text and "b: 1.0x" not in text
    assert "$ uv run python benchmarks/bench_b.py --mb 8" in text and "commit " in text and "cores" in text


def test_recorded_tees_the_output_and_a_failure_records_nothing(results, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(sys, "argv", ["bench_x.py", "--fast"])
    with pytest.raises(SystemExit):
        with results.recorded("benchmarks/bench_x.py"):
            print("ratio 0.9x")
            sys.exit(0)
    assert "ratio 0.9x" in capsys.readouterr().out
    assert "$ uv run python benchmarks/bench_x.py --fast\nratio 0.9x" in (tmp_path / "RESULTS.md").read_text()
    with pytest.raises(RuntimeError):
        with results.recorded("benchmarks/bench_y.py"):
            print("half")
            raise RuntimeError("crashed")
    assert "bench_y" not in (tmp_path / "RESULTS.md").read_text()
