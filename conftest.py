"""Pytest configuration shared by tests/ and the notebooks (hand-written).

Notebooks run under ``pytest --nbval-lax`` in smoke mode: their kernels inherit this environment
variable and pick small data and short runs.
"""

import os

os.environ.setdefault("CS336_SMOKE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
