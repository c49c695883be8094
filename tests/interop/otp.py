"""Build and run the Erlang/OTP ``diameter`` programs of tests/interop/erlang/.

:func:`build` compiles the RFC 4006 / TS 32.299 dictionary ``ocs_gy.dia`` with
OTP's ``diameterc`` and the client and reference server with ``erlc`` into a
directory of the caller's choice (a test's tmp dir).  Used by
tests/interop/test_diameter_erlang.py and bench/diameter.py.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

ERLANG_DIR = Path(__file__).resolve().parent / "erlang"
DICTIONARY = Path(__file__).resolve().parents[2] / "diameter" / "ocs_gy.dia"  # the project's dictionary
MODULES = ("ocs_gy_client", "ocs_gy_ref_server")


class OtpMissing(RuntimeError):
    """erl, erlc, diameterc or the diameter headers are not installed."""


def _which(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise OtpMissing(f"{tool} not installed")
    return path


def headers_present() -> bool:
    """The generated dictionary module includes diameter_gen.hrl (Debian package erlang-dev)."""
    return bool(glob.glob("/usr/lib/erlang/lib/diameter-*/include/diameter_gen.hrl")) or bool(
        glob.glob("/usr/local/lib/erlang/lib/diameter-*/include/diameter_gen.hrl"))


def build(out: Path, need: Callable[[str], str] = _which) -> Path:
    """Compile the dictionary and both modules into ``out``; returns ``out``.

    ``need`` finds a binary (tests pass ``tests.support.tools.need`` so a missing tool fails under CI).
    """
    diameterc, erlc = need("diameterc"), need("erlc")
    if not headers_present():
        raise OtpMissing("diameter include/ headers missing (Debian package erlang-dev)")
    out.mkdir(parents=True, exist_ok=True)
    _run([diameterc, "-o", str(out), str(DICTIONARY)])
    _run([erlc, "-o", str(out), str(out / "ocs_gy.erl"), *(str(ERLANG_DIR / f"{m}.erl") for m in MODULES)])
    return out


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {res.returncode}:\n{res.stdout}{res.stderr}")


def command(ebin: Path, module: str, *args: str, need: Callable[[str], str] = _which) -> list[str]:
    """The ``erl -noshell`` command line running ``module:main(Args)``."""
    return [need("erl"), "-noshell", "-pa", str(ebin), "-run", module, "main", *args]


def parse_lines(stdout: str) -> list[tuple[str, dict[str, str]]]:
    """The client's ``tag key=value ...`` lines as (tag, fields)."""
    out = []
    for line in stdout.splitlines():
        tag, *kvs = line.split(" ")
        out.append((tag, dict(kv.split("=", 1) for kv in kvs if "=" in kv)))
    return out
