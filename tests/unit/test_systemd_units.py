"""systemd unit files: the required keys, and ``systemd-analyze verify``.

The key assertions always run.  ``systemd-analyze`` is a test dependency like radclient: the test
command installs it (Debian package ``systemd``), a missing tool fails the run under CI=true and
skips only on a developer box.  Diagnostics about the install-time executables
(/opt/ocs/.venv/bin/...) not existing on a dev box are ignored.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.tools import need

UNITS = Path(__file__).resolve().parents[2] / "systemd"

REQUIRED: dict[str, dict[str, dict[str, str | None]]] = {
    "ocsd.service": {
        "Service": {
            "Type": "notify",
            "NotifyAccess": "main",
            "KillMode": "mixed",  # SIGTERM to the supervisor only: it stops its workers, then flushes
            "User": "ocs",
            "Restart": "on-failure",
            "TimeoutStopSec": "20",
            "WatchdogSec": "30",
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
            "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
            "ReadWritePaths": "/var/lib/ocs",
            "LimitNOFILE": "65536",
            "ExecReload": "/bin/kill -HUP $MAINPID",
            "EnvironmentFile": "-/etc/default/ocsd",
            "ExecStart": None,
        },
        "Install": {"WantedBy": "multi-user.target"},
    },
    "ocs-reconcile.service": {"Service": {"Type": "oneshot", "User": "ocs", "ExecStart": None}},
    "ocsd@.service": {"Service": {"Type": "notify", "KillMode": "mixed", "User": "ocs", "Restart": "on-failure", "NoNewPrivileges": "yes",
                                  "ProtectSystem": "strict", "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
                                  "ExecStart": None}},
    "ocs-reconcile.timer": {"Timer": {"OnCalendar": None}, "Install": {"WantedBy": "timers.target"}},
}


def parse_unit(text: str) -> dict[str, dict[str, str]]:
    """Minimal systemd unit parser (sections, Key=Value, comments); last value wins."""
    out: dict[str, dict[str, str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            out.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        assert sep and section, f"unparsable unit line: {raw!r}"
        out[section][key.strip()] = value.strip()
    return out


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_required_keys(name: str) -> None:
    unit = parse_unit((UNITS / name).read_text())
    for section, keys in REQUIRED[name].items():
        assert section in unit, f"{name}: missing [{section}]"
        for key, want in keys.items():
            assert key in unit[section], f"{name}: missing {section}.{key}"
            if want is not None:
                assert unit[section][key] == want, f"{name}: {key}={unit[section][key]!r}"


def test_timer_runs_reconcile() -> None:
    svc = parse_unit((UNITS / "ocs-reconcile.service").read_text())
    assert svc["Service"]["ExecStart"].endswith(" reconcile")
    assert int(parse_unit((UNITS / "ocsd.service").read_text())["Service"]["TimeoutStopSec"]) > 10


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = need("systemd-analyze")
    files = []
    for n in sorted(REQUIRED):
        if n.endswith("@.service"):  # a template is verified as one of its instances
            inst = tmp_path / n.replace("@.", "@1.")
            inst.write_text((UNITS / n).read_text())
            files.append(str(inst))
        else:
            files.append(str(UNITS / n))
    proc = subprocess.run([tool, "verify", *files], capture_output=True, text=True, timeout=60, check=False)
    ours = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if any(n in line or n.replace("@.", "@1.") in line for n in REQUIRED) and "is not executable" not in line
    ]
    assert not ours, "\n".join(ours)
