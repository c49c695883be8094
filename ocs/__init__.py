"""ocs: an online charging system (Diameter Gy/Ro and RADIUS prepaid) on Redis and PostgreSQL.

The hot modules may be compiled by mypyc (scripts/compile.py, ``.so`` beside each ``.py``).  This
file makes sure a binary never outlives its source: the build records the sha256 of each compiled
source (ocs/_compiled.py); when one differs, a binary is missing or built for another Python, or
``OCS_PURE_PYTHON=1``, every ocs module is loaded from its ``.py`` (all of them: compiled modules
call each other directly in C, so one stale module cannot be swapped out alone).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from types import ModuleType

__version__ = "0.1.0"

_HERE = os.path.dirname(os.path.abspath(__file__))


class SourceFirst:
    """Meta-path finder: an ``ocs.*`` module that has a ``.py`` is loaded from it, never from a ``.so``."""

    @staticmethod
    def find_spec(fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if path is None or not fullname.startswith("ocs."):
            return None
        leaf = fullname.rpartition(".")[2] + ".py"
        for entry in path:
            candidate = os.path.join(entry, leaf)
            if os.path.isfile(candidate):
                return importlib.util.spec_from_file_location(fullname, candidate)
        return None


def _stale() -> str:
    """Why the recorded build cannot be used ('' when it can): a changed source or a missing binary."""
    record: dict[str, object] = {}
    path = os.path.join(_HERE, "_compiled.py")
    with open(path, "rb") as f:  # read, not imported: a cached .pyc of an older record could be taken
        exec(compile(f.read(), path, "exec"), record)
    modules = record.get("MODULES")
    depends = record.get("DEPENDS")
    if not isinstance(modules, dict) or not isinstance(depends, dict):
        return "ocs/_compiled.py is not a build record"
    if record.get("SUFFIX") != EXTENSION_SUFFIXES[0]:
        return "the compiled modules were built for another Python"
    root = os.path.dirname(_HERE)
    for module, expected in modules.items():
        base = os.path.join(root, *module.split("."))
        if not os.path.isfile(base + EXTENSION_SUFFIXES[0]):
            return f"{module} has no compiled binary"
        with open(base + ".py", "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != expected:
                return f"{module.replace('.', '/')}.py changed since it was compiled"
    for path, expected in depends.items():
        try:
            with open(os.path.join(root, path), "rb") as f:
                if hashlib.sha256(f.read()).hexdigest() == expected:
                    continue
        except OSError:
            pass
        return f"{path} (its constants are compiled in) changed since the build"
    return ""


def _decide() -> tuple[bool, str]:
    """(compiled, stale): run the binaries only when every recorded one matches its source."""
    if os.environ.get("OCS_PURE_PYTHON") == "1" or not os.path.isfile(os.path.join(_HERE, "_compiled.py")):
        return False, ""
    reason = _stale()
    return not reason, reason


_COMPILED, _STALE = _decide()
if not _COMPILED:
    sys.meta_path.insert(0, SourceFirst)


def compiled() -> bool:
    """True when the hot modules run as mypyc-compiled binaries (ocsd --version and the ready line say it)."""
    return _COMPILED


def stale() -> str:
    """Why a build that exists is not used ('' when it is, or when there is none or OCS_PURE_PYTHON=1).

    ocsd logs it as one warning at start; nothing is printed at import (ocsctl's output stays clean).
    """
    return f"{_STALE}: running pure Python (scripts/compile.py rebuilds)" if _STALE else ""
