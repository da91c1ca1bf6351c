"""Pytest configuration shared by tests/ and the notebooks (hand-written).

Notebooks run under ``pytest --nbval-lax`` in smoke mode: their kernels inherit this environment
variable and pick small data and short runs. Every notebook cell is marked ``slow``, like the
tests that start processes (torchrun, the pipeline) or compile: ``uv run pytest -m "not slow"``
is the quick everyday loop, ``uv run pytest`` runs everything.
"""

import os

import pytest

os.environ.setdefault("CS336_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
