"""Compile ocsd's hot modules ahead of time with mypyc, in place (``.so`` beside each ``.py``).

Why: the charging path (codecs, Gy/RADIUS mapping, rating, the charging core, the RESP client) is
CPU-bound Python; mypyc turns the same ``mypy --strict`` typed source into C extension modules that
do the same work in a fraction of the CPU.  The ``.py`` files stay the source of truth:

- nothing is compiled when there is no C compiler, no Python headers or no mypyc, or when
  ``OCS_NO_COMPILE=1``: one line says so and ocsd runs as pure Python;
- a build records the sha256 of every compiled source (and of the modules whose ``Final``
  constants mypyc copies into them) in ``ocs/_compiled.py``; ``ocs/__init__.py`` compares them at
  import and loads *every* hot module from its ``.py`` when one differs (a developer editing
  codec.py never runs the old binary), and ``OCS_PURE_PYTHON=1`` forces that at run time;
- a second run with unchanged sources, Python and mypyc does nothing (the record is the stamp).

Usage: ``.venv/bin/python scripts/compile.py [--force] [--clean]`` from anywhere.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib.machinery
import io
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "ocs"
RECORD = PKG / "_compiled.py"
BUILD_DIR = ROOT / "build" / "mypyc"
GROUP = "ocs._native"  # the shared library: ocs/_native__mypyc.<abi>.so (one group: calls between modules are C calls)

# The per-request path, leaves first.  A module here must not be monkeypatched by tests nor get
# attributes set from outside on its classes' instances (mypyc native classes).
HOT = (
    "ocs.wiretext",
    "ocs.money",
    "ocs.model",
    "ocs.rating.tariff",
    "ocs.rating.bands",
    "ocs.diameter.codec",
    "ocs.radius.codec",
    "ocs.radius.mapping",
    "ocs.rating.engine",
    "ocs.store.keys",
    "ocs.store.outcomes",
    "ocs.store.resp",
    "ocs.store.pipeline",
    "ocs.store.charging_scripts",
    "ocs.store.session_state",
    "ocs.store.accounts_view",
    "ocs.usage",
    "ocs.diameter.gy",
    "ocs.settlement",
    "ocs.charging",
    "ocs.diameter.peer",
    "ocs.radius.server",
)


def say(msg: str) -> None:
    print(f"compile: {msg}", flush=True)


def source(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def inlined_deps() -> list[Path]:
    """The uncompiled ocs modules a hot module imports that declare ``Final`` names.

    mypyc copies the value of an imported ``Final`` constant into the compiled code, so a change
    there must make the binaries stale too; other imports are called through Python as usual.
    """
    found: set[Path] = set()
    for module in HOT:
        tree = ast.parse(source(module).read_bytes())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if not name.startswith("ocs.") or name in HOT:
                    continue
                path = source(name)
                if path.is_file() and b"Final" in path.read_bytes():
                    found.add(path)
    return sorted(found)


def ext_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def binaries() -> list[Path]:
    """Every file a build leaves in the package: one shim per hot module and the shared library."""
    suffix = ext_suffix()
    out = [ROOT / (m.replace(".", "/") + suffix) for m in HOT]
    out.append(ROOT / (GROUP.replace(".", "/") + "__mypyc" + suffix))
    return out


def toolchain_missing() -> str:
    """Why this machine cannot compile, or '' when it can."""
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed (pip install -e '.[dev]')"
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc}; Debian: apt-get install gcc)"
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").is_file():
        return f"no Python headers in {include} (Debian: apt-get install python3-dev)"
    return ""


def mypyc_version() -> str:
    from mypy.version import __version__

    return str(__version__)


def wanted() -> dict[str, object]:
    """What a build of the current tree records; equal to the recorded one means up to date."""
    return {
        "MODULES": {m: digest(source(m)) for m in HOT},
        "DEPENDS": {rel(p): digest(p) for p in inlined_deps()},
        "SUFFIX": ext_suffix(),
        "MYPYC": mypyc_version(),
    }


def recorded() -> dict[str, object]:
    if not RECORD.is_file():
        return {}
    scope: dict[str, object] = {}
    with contextlib.suppress(Exception):
        exec(compile(RECORD.read_text(), str(RECORD), "exec"), scope)  # our own generated file
    return {k: scope.get(k) for k in ("MODULES", "DEPENDS", "SUFFIX", "MYPYC")}


def write_record(state: dict[str, object]) -> None:
    modules = state["MODULES"]
    depends = state["DEPENDS"]
    assert isinstance(modules, dict) and isinstance(depends, dict)
    lines = [
        '"""Written by scripts/compile.py: what the compiled modules were built from (ocs/__init__.py checks it)."""',
        "",
        "# module -> sha256 of the .py the .so beside it was compiled from",
        "MODULES: dict[str, str] = {",
        *(f'    "{m}": "{h}",' for m, h in modules.items()),
        "}",
        "# uncompiled sources whose Final constants mypyc copied into the binaries -> sha256",
        "DEPENDS: dict[str, str] = {",
        *(f'    "{p}": "{h}",' for p, h in depends.items()),
        "}",
        f'SUFFIX = "{state["SUFFIX"]}"',
        f'MYPYC = "{state["MYPYC"]}"',
        "",
    ]
    tmp = RECORD.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(RECORD)


def clean() -> None:
    """Remove the record first (the binaries are unused without it), then the binaries."""
    RECORD.unlink(missing_ok=True)
    for path in binaries():
        path.unlink(missing_ok=True)


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import Distribution

    os.chdir(ROOT)  # mypycify takes paths relative to the tree and reads [tool.mypy] from pyproject.toml
    paths = [rel(source(m)) for m in HOT]
    log = BUILD_DIR / "build.log"
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            extensions = mypycify(paths, group_name=GROUP, target_dir=str(BUILD_DIR), opt_level="3")
            # a bare Distribution: pyproject.toml's [project] table is not read again
            dist = Distribution({"name": "ocs-native", "ext_modules": extensions})
            dist.script_args = ["-q", "build_ext", "--inplace", "--build-temp", str(BUILD_DIR / "temp")]
            dist.parse_command_line()
            dist.run_commands()
    except (Exception, SystemExit):
        log.write_text(out.getvalue())
        tail = out.getvalue().strip().splitlines()[-20:]
        print("\n".join(tail), file=sys.stderr)
        raise
    log.write_text(out.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when the record says up to date")
    ap.add_argument("--clean", action="store_true", help="remove the binaries and the record, build nothing")
    args = ap.parse_args()
    if args.clean:
        clean()
        say("removed the compiled modules; ocsd runs as pure Python")
        return 0
    if os.environ.get("OCS_NO_COMPILE") == "1":
        say("skipped (OCS_NO_COMPILE=1): ocsd runs as pure Python")
        return 0
    missing = toolchain_missing()
    if missing:
        say(f"skipped, {missing}: ocsd runs as pure Python")
        return 0
    want = wanted()
    if not args.force and recorded() == want and all(p.is_file() for p in binaries()):
        say(f"up to date ({len(HOT)} modules)")
        return 0
    clean()  # a failed or interrupted build leaves pure Python, never a half-recorded one
    say(f"mypyc: compiling {len(HOT)} modules (a minute or two; log in {rel(BUILD_DIR)}/build.log)")
    started = time.monotonic()
    try:
        build()
    except (Exception, SystemExit):
        clean()
        say(f"FAILED (log in {rel(BUILD_DIR)}/build.log): ocsd would run as pure Python")
        return 1
    after = wanted()
    write_record(want)
    if after != want:
        say("a source changed during the build: the guard will run pure Python until the next build")
    say(f"compiled {len(HOT)} modules in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
