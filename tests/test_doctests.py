"""Every docstring example in the package runs and prints what it says (illustrative ones are
marked ``# doctest: +SKIP``). Run from the repository root, where configs/ and data paths resolve."""

import doctest
import importlib
import pkgutil

import pytest

import cs336_basics

MODULES = sorted(m.name for m in pkgutil.iter_modules(cs336_basics.__path__, "cs336_basics."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see the output above)"
