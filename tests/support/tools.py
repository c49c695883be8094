"""External tools the interop tests drive (radclient, tshark, erl): present, or the test fails in CI."""

from __future__ import annotations

import os
import shutil

import pytest


def need(tool: str) -> str:
    """Path of ``tool``; a missing tool fails under CI=true and skips elsewhere (never silently in CI)."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} not installed")
        pytest.skip(f"{tool} not installed")
    return path
