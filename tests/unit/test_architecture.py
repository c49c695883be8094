"""Design rule 1: the core knows no wire format; the front ends know no store.

Walks the import statements of every module (AST, no import side effects).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

OCS = Path(__file__).resolve().parents[2] / "ocs"

CORE = ["charging.py", "model.py", "money.py", "rating", "store"]
FRONTS = ["diameter", "radius"]
WIRE = {"pyrad", "diameter"}
STORES = {"redis", "asyncpg"}


def _modules(rel: str) -> list[Path]:
    p = OCS / rel
    if p.is_file():
        return [p]
    return sorted(p.rglob("*.py")) if p.exists() else []


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("rel", CORE)
def test_core_imports_no_wire_library(rel: str) -> None:
    for path in _modules(rel):
        assert not (_imports(path) & WIRE), f"{path} imports a wire-format library"


@pytest.mark.parametrize("rel", FRONTS)
def test_front_ends_import_no_store(rel: str) -> None:
    for path in _modules(rel):
        assert not (_imports(path) & STORES), f"{path} imports a store client"


def test_rating_is_pure() -> None:
    for path in _modules("rating"):
        bad = _imports(path) & (STORES | WIRE | {"socket", "asyncio", "os", "subprocess"})
        assert not bad, f"{path} does I/O: {bad}"


def test_no_importable_diameter_package_at_root() -> None:
    root = OCS.parent
    assert not (root / "diameter" / "__init__.py").exists()
    assert not list((root / "diameter").glob("*.py")) if (root / "diameter").exists() else True
