"""The mypyc-compiled hot modules and their guard (scripts/compile.py, ocs/__init__.py).

Every check runs in a subprocess: which file a module is loaded from is decided once, when ``ocs`` is
first imported.  The guard's tests need no compiler: a copy of the package gets a forged build
record and empty files where the binaries would be, so loading any of them would fail loudly.
"""

from __future__ import annotations

import ast
import hashlib
import os
import runpy
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import ocs

ROOT = Path(__file__).resolve().parents[2]
PKG = Path(ocs.__file__).resolve().parent
HOT: tuple[str, ...] = runpy.run_path(str(ROOT / "scripts" / "compile.py"))["HOT"]
SUFFIX = EXTENSION_SUFFIXES[0]

# a CCR-U through the Diameter codec and Gy mapping, a RADIUS round trip and a rating: pure or compiled alike
WORKS = """
from datetime import UTC, datetime
from ocs.diameter import codec, gy
from ocs.diameter import constants as c
from ocs.model import Outcome, Status
from ocs.radius import codec as rc
from ocs.rating.engine import CompiledTariff
from ocs.rating.tariff import RateRow, Tariff

ccr = codec.message(c.CCR, codec.FLAG_R, 4, 1, 2,
    codec.utf8(c.SESSION_ID, "s;1"), codec.utf8(c.ORIGIN_HOST, "pgw"), codec.utf8(c.ORIGIN_REALM, "test"),
    codec.utf8(c.DESTINATION_REALM, "ocs"), codec.u32(c.AUTH_APPLICATION_ID, 4),
    codec.utf8(c.SERVICE_CONTEXT_ID, "32260@3gpp.org"), codec.u32(c.CC_REQUEST_TYPE, 2),
    codec.u32(c.CC_REQUEST_NUMBER, 1),
    codec.grouped(c.SUBSCRIPTION_ID, codec.u32(c.SUBSCRIPTION_ID_TYPE, 0), codec.utf8(c.SUBSCRIPTION_ID_DATA, "491")),
    codec.grouped(c.MULTIPLE_SERVICES_CREDIT_CONTROL, codec.grouped(c.USED_SERVICE_UNIT, codec.u32(c.CC_TIME, 60))))
parsed = gy.parse_ccr(codec.decode(ccr))
assert parsed.requests[0].used_units == 60, parsed
out = Outcome(Status.GRANTED, granted_units=120, account="a")
msg = codec.decode(ccr)
cca = codec.decode(gy.encode_cca(parsed, [out], "ocs", "ocs.test", msg.hop_by_hop, msg.end_to_end))
assert cca.first(c.RESULT_CODE).u32() == 2001

req = bytes((rc.ACCOUNTING_REQUEST, 7)) + (20 + 6).to_bytes(2, "big") + bytes(16) + rc.integer_attribute(40, 1)
pkt = rc.decode(req)
assert pkt.integer(rc.ACCT_STATUS_TYPE) == 1
assert rc.decode(rc.accounting_response(pkt, b"s")).code == rc.ACCOUNTING_RESPONSE

t = CompiledTariff(Tariff(name="t", version=1, currency="EUR", timezone="UTC",
                          rows=(RateRow("49", "Germany", 60_000, 1_000, 60, 60, line=2),)))
sel = t.select("+4930123", datetime(2026, 1, 1, tzinfo=UTC))
assert t.rate(sel, 61).charge == 1_000 + 120_000, t.rate(sel, 61)
"""

REPORT = """
import sys, ocs
for name in sys.argv[1:]:
    __import__(name)
print(ocs.compiled())
print(ocs.stale())
for name in sys.argv[1:]:
    print(name, sys.modules[name].__file__)
"""


def _run(code: str, *args: str, path: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "OCS_PURE_PYTHON"} | env
    if path is not None:
        environ["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=path or ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)


def _version(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OCS_PURE_PYTHON"} | env
    res = subprocess.run([str(Path(sys.executable).parent / "ocsd"), "--version"], env=environ,
                         capture_output=True, text=True, timeout=60)
    return res.stdout.strip()


def _files(res: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert res.returncode == 0, res.stderr
    return dict(line.split(" ", 1) for line in res.stdout.splitlines()[2:])


def test_compiled_modules_load_from_their_binaries() -> None:
    """After a build (scripts/compile.py, run by bootstrap), every hot module is the .so, not the .py."""
    if not (PKG / "_compiled.py").is_file():
        pytest.skip("not compiled here (no C compiler or OCS_NO_COMPILE=1): scripts/compile.py builds them")
    res = _run(REPORT, *HOT)
    if res.returncode == 0 and res.stdout.startswith("False"):
        pytest.skip(f"the build is not used: {res.stdout.splitlines()[1]}")
    assert res.stdout.startswith("True"), res.stderr
    files = _files(res)
    assert all(f.endswith(SUFFIX) for f in files.values()), files
    assert _run(WORKS).returncode == 0
    assert _version() == "ocsd 0.1.0 (compiled)"


def test_pure_python_on_request() -> None:
    """OCS_PURE_PYTHON=1: every hot module from its .py (binaries or not), and they work."""
    res = _run(REPORT, *HOT, OCS_PURE_PYTHON="1")
    assert res.stdout.startswith("False\n\n") and res.stderr == ""  # forced: not stale, nothing said
    assert all(f.endswith(".py") for f in _files(res).values())
    works = _run(WORKS, OCS_PURE_PYTHON="1")
    assert works.returncode == 0, works.stderr
    assert _version(OCS_PURE_PYTHON="1") == "ocsd 0.1.0 (pure Python)"


def _copy_with_forged_build(tmp: Path, changed: str | None) -> Path:
    """The package in ``tmp`` with a build record for HOT and an empty file for each binary."""
    dst = tmp / "ocs"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__", "*.so", "_compiled.py"))
    modules = {}
    for name in HOT:
        base = tmp.joinpath(*name.split("."))
        base.with_name(base.name + SUFFIX).write_bytes(b"")  # importing this would raise ImportError
        modules[name] = hashlib.sha256(base.with_name(base.name + ".py").read_bytes()).hexdigest()
    if changed is not None:
        modules[changed] = "0" * 64
    (dst / "_compiled.py").write_text(
        f"MODULES: dict[str, str] = {modules!r}\nDEPENDS: dict[str, str] = {{}}\nSUFFIX = {SUFFIX!r}\n")
    return tmp


@pytest.mark.parametrize("changed", [HOT[0], HOT[-1]])
def test_a_changed_source_runs_every_hot_module_as_pure_python(tmp_path: Path, changed: str) -> None:
    """One stale module is enough: all of them come from .py (they call each other directly when compiled)."""
    root = _copy_with_forged_build(tmp_path, changed)
    res = _run(REPORT, *HOT, path=root)
    files = _files(res)
    assert res.stdout.startswith("False")
    assert all(Path(f).suffix == ".py" and Path(f).is_relative_to(root) for f in files.values()), files
    rel = changed.replace(".", "/") + ".py"
    assert res.stdout.splitlines()[1] == f"{rel} changed since it was compiled: running pure Python (scripts/compile.py rebuilds)"
    assert res.stderr == ""  # ocsd logs it (compiled_modules_stale); ocsctl's output stays clean
    assert _run(WORKS, path=root).returncode == 0


def test_a_missing_binary_or_another_python_runs_pure_python(tmp_path: Path) -> None:
    root = _copy_with_forged_build(tmp_path, None)
    missing = root.joinpath(*HOT[3].split("."))
    missing.with_name(missing.name + SUFFIX).unlink()
    res = _run(REPORT, *HOT, path=root)
    assert all(f.endswith(".py") for f in _files(res).values())
    assert f"{HOT[3]} has no compiled binary" in res.stdout
    record = root / "ocs" / "_compiled.py"
    record.write_text(record.read_text().replace(SUFFIX, ".cpython-399-x86_64-linux-gnu.so"))
    res = _run(REPORT, *HOT, path=root)
    assert all(f.endswith(".py") for f in _files(res).values())
    assert "built for another Python" in res.stdout


def test_the_build_is_skipped_with_one_line_when_it_cannot_or_must_not_compile() -> None:
    script = str(ROOT / "scripts" / "compile.py")
    res = subprocess.run([sys.executable, script], env={**os.environ, "OCS_NO_COMPILE": "1"},
                         capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (0, "compile: skipped (OCS_NO_COMPILE=1): ocsd runs as pure Python\n", "")
    res = subprocess.run([sys.executable, script], env={**os.environ, "CC": "/nonexistent/cc"},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout.startswith("compile: skipped, no C compiler (/nonexistent/cc") and res.stdout.count("\n") == 1


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _own_nodes(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST]:
    """The nodes of ``fn`` outside the functions, lambdas and classes nested in it."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            out.append(node)
            stack.extend(ast.iter_child_nodes(node))
    return out


@pytest.mark.parametrize("module", HOT)
def test_compiled_sources_avoid_what_mypyc_runs_differently(module: str) -> None:
    """Two mypy-clean patterns that compiled code gets wrong at run time (found by the e2e tests).

    - ``except A as exc`` then ``except B as exc`` in one function: mypyc gives ``exc`` the type of
      the first clause and raises TypeError when B is caught (a CCR met by a Redis outage went
      unanswered); use a name per exception type.
    - ``asyncio.gather(a, b)``: mypy types the result a tuple, gather returns a list, and compiled
      code checks the declared type; ``asyncio.gather(*[a, b])`` is typed a list.
    """
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    for fn in _functions(tree):
        kinds: dict[str, set[str]] = {}
        for node in _own_nodes(fn):
            if isinstance(node, ast.ExceptHandler) and node.name:
                kinds.setdefault(node.name, set()).add(ast.unparse(node.type) if node.type else "")
        mixed = {name: sorted(types) for name, types in kinds.items() if len(types) > 1}
        assert not mixed, f"{module}.{fn.name}: one name for several except types {mixed}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "asyncio.gather":
            assert any(isinstance(a, ast.Starred) for a in node.args), \
                f"{module}:{node.lineno}: asyncio.gather with fixed arguments (write gather(*[...]))"
