"""The layout's rules, checked on the source: dependencies point one way only.

``pipelines`` -> ``transforms`` -> ``schemas``; inside ``transforms`` each subpackage may
import only those before it in ``LAYERS`` (the order its ``__init__`` docstring states).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("io", "media", "hashing", "index", "search", "verify", "results", "match", "stream")
OUTSIDE = ("pipelines", "evaluation", "bench", "tests")


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_transforms_are_subpackages_only() -> None:
    loose = sorted(p.name for p in (ROOT / "transforms").glob("*.py") if p.name != "__init__.py")
    assert loose == []
    assert sorted(p.name for p in (ROOT / "transforms").iterdir()
                  if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_each_subpackage_imports_only_layers_below_it(layer: str) -> None:
    allowed = set(LAYERS[:LAYERS.index(layer) + 1])
    for path in sorted((ROOT / "transforms" / layer).glob("*.py")):
        for module in imported_modules(path):
            top, _, rest = module.partition(".")
            assert top not in OUTSIDE, f"{path.name} imports {module}"
            if top == "transforms" and rest:
                assert rest.split(".")[0] in allowed, f"{layer}/{path.name} imports {module}"


def test_schemas_import_nothing_of_the_project() -> None:
    for path in (ROOT / "schemas").glob("*.py"):
        tops = {m.split(".")[0] for m in imported_modules(path)}
        assert not tops & {"transforms", *OUTSIDE}, path.name
