"""The package is from scratch: no torch.nn.functional, no torch.nn layers, no torch.optim optimizers.

torch.nn.Parameter, containers (Module, ModuleList, ...), torch.nn.init and the
torch.optim.Optimizer base class are allowed. The scan reads the source with ``ast`` so that
aliases (``import torch.nn.functional as F``, ``from torch import nn`` then ``nn.Linear``) are caught.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cs336_basics"

ALLOWED_NN = {
    "Module", "ModuleList", "ModuleDict", "Sequential", "ParameterList", "ParameterDict",
    "Parameter", "Buffer", "init", "Identity",
}
ALLOWED_OPTIM = {"Optimizer"}
FORBIDDEN_DOTTED = ("torch.nn.functional", "torch.optim")


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def violations(source: str) -> list[str]:
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> fully dotted torch name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                if a.name.startswith(FORBIDDEN_DOTTED):
                    found.append(f"line {node.lineno}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                aliases[a.asname or a.name] = full
                if full.startswith("torch.nn.functional") or node.module == "torch.nn.functional":
                    found.append(f"line {node.lineno}: from {node.module} import {a.name}")
                elif node.module == "torch.nn" and a.name not in ALLOWED_NN | {"functional"}:
                    found.append(f"line {node.lineno}: from torch.nn import {a.name}")
                elif node.module == "torch.nn" and a.name == "functional":
                    found.append(f"line {node.lineno}: from torch.nn import functional")
                elif node.module.startswith("torch.optim") and a.name not in ALLOWED_OPTIM:
                    found.append(f"line {node.lineno}: from {node.module} import {a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if not dotted:
                continue
            head, _, rest = dotted.partition(".")
            full = aliases.get(head, head) + ("." + rest if rest else "")
            if full.startswith("torch.nn.functional"):
                found.append(f"line {node.lineno}: {dotted}")
            elif full.startswith("torch.nn.") and full.count(".") == 2:
                if full.split(".")[2] not in ALLOWED_NN:
                    found.append(f"line {node.lineno}: {dotted}")
            elif full.startswith("torch.optim.") and full.count(".") == 2:
                if full.split(".")[2] not in ALLOWED_OPTIM:
                    found.append(f"line {node.lineno}: {dotted}")
    return sorted(set(found))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_module_is_from_scratch(path):
    assert violations(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "import torch.nn.functional as F\nF.relu(x)",
        "import torch\ntorch.nn.functional.softmax(x, -1)",
        "from torch import nn\nnn.Linear(2, 3)",
        "import torch.nn as nn\nlayer = nn.LayerNorm(4)",
        "from torch.nn import Embedding",
        "from torch.nn import functional as F",
        "import torch\nopt = torch.optim.AdamW(params)",
        "from torch.optim import SGD",
        "from torch.optim.lr_scheduler import CosineAnnealingLR",
    ],
)
def test_scanner_catches_forbidden_uses(source):
    assert violations(source), source


def test_scanner_allows_the_permitted_pieces():
    source = (
        "import torch\nfrom torch import nn\n"
        "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.w = nn.Parameter(torch.empty(3))\n        nn.init.trunc_normal_(self.w)\n"
        "        self.layers = nn.ModuleList()\n"
        "class O(torch.optim.Optimizer):\n    pass\n"
    )
    assert violations(source) == []
