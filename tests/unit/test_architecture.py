"""The layering the design intends, enforced on every file's imports (AST; nothing is imported).

- the core (``charging.py``, ``settlement.py``, ``usage.py``, ``rating/``, ``model.py``, ``money.py``) imports no front end and no
  wire-format library;
- the front ends (``diameter/``, ``radius/``) import neither ``ocs.store`` nor ``ocs.charging``,
  nor a store client: they talk to the core through ``model.ChargingCore`` only;
- ``rating/`` does no I/O;
- no two files import each other, directly or around a loop (function-level imports count too;
  only ``if TYPE_CHECKING:`` blocks do not).

Each rule is a function over a source tree, and the last tests run them on a small generated
tree that breaks each rule, so a rule that cannot fail is noticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

OCS = Path(__file__).resolve().parents[2] / "ocs"

CORE = ("ocs.charging", "ocs.settlement", "ocs.usage", "ocs.rating", "ocs.model", "ocs.money")
FRONTS = ("ocs.diameter", "ocs.radius")
WIRE = {"pyrad", "diameter"}
STORES = {"redis", "asyncpg", "hiredis"}
IO = STORES | WIRE | {"socket", "asyncio", "os", "subprocess", "pathlib", "uvloop", "urllib"}


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under ``root`` (a package named like the folder)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Everything ``name`` imports at run time: module names (ours resolved to files) and top-level packages."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return out


def _under(mod: str, prefixes: tuple[str, ...] | set[str]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def violations(root: Path) -> list[str]:
    known = modules(root)
    pkg = root.name
    core = tuple(p.replace("ocs", pkg, 1) for p in CORE)
    fronts = tuple(p.replace("ocs", pkg, 1) for p in FRONTS)
    out = []
    for name, path in known.items():
        imps = imports(name, path, known)
        tops = {i.split(".")[0] for i in imps}
        if _under(name, core):
            out += [f"{name} (core) imports front end {i}" for i in imps if _under(i, fronts)]
            out += [f"{name} (core) imports wire library {t}" for t in tops & WIRE]
        if _under(name, fronts):
            out += [f"{name} (front end) imports {i}" for i in imps
                    if _under(i, (f"{pkg}.store", f"{pkg}.charging"))]
            out += [f"{name} (front end) imports store client {t}" for t in tops & STORES]
        if _under(name, (f"{pkg}.rating",)):
            out += [f"{name} (rating) does I/O: {t}" for t in tops & IO]
            out += [f"{name} (rating) imports {i}" for i in imps if _under(i, (f"{pkg}.store",))]
    return out + cycles(root)


def cycles(root: Path) -> list[str]:
    known = modules(root)
    graph = {n: {i for i in imports(n, p, known) if i in known and i != n} for n, p in known.items()}
    out, state = [], dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state[nxt] == 1:
                out.append("import cycle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            elif state[nxt] == 0:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for n in sorted(graph):
        if state[n] == 0:
            visit(n, [])
    return out


def test_the_package_keeps_the_layering() -> None:
    assert violations(OCS) == []


def test_the_checked_tree_is_the_real_one() -> None:
    """Not vacuous: the folders the rules name exist and have modules."""
    known = modules(OCS)
    for prefix in (*CORE, *FRONTS, "ocs.store"):
        assert any(_under(m, (prefix,)) for m in known), prefix


def _tree(tmp: Path, files: dict[str, str]) -> Path:
    root = tmp / "ocs"
    for rel, text in {"__init__.py": "", "model.py": "", "diameter/__init__.py": "", "radius/__init__.py": "",
                      "rating/__init__.py": "", "store/__init__.py": "", "charging.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize(("files", "expected"), [
    ({"charging.py": "from ocs.radius import server\n", "radius/server.py": ""}, "(core) imports front end"),
    ({"rating/engine.py": "import pyrad\n"}, "(core) imports wire library pyrad"),
    ({"diameter/gy.py": "from ocs.store import keys\n", "store/keys.py": ""}, "(front end) imports ocs.store"),
    ({"radius/server.py": "import ocs.charging\n"}, "(front end) imports ocs.charging"),
    ({"diameter/peer.py": "import redis.asyncio\n"}, "imports store client redis"),
    ({"rating/engine.py": "import asyncio\n"}, "(rating) does I/O: asyncio"),
    ({"store/a.py": "from ocs.store import b\n", "store/b.py": "def f():\n    from . import a\n"}, "import cycle"),
])
def test_a_deliberate_violation_is_caught(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    found = violations(_tree(tmp_path, files))
    assert any(expected in v for v in found), found


def test_type_checking_imports_are_not_cycles(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"store/a.py": "from ocs.store import b\n",
                            "store/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ocs.store import a\n"})
    assert violations(root) == []
