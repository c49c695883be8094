"""The sample peer configuration in diameter/ is a valid ocsd [diameter] section."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ocs import config

DIR = Path(__file__).resolve().parents[2] / "diameter"


def test_sample_peer_section_loads_as_ocsd_config() -> None:
    data = tomllib.loads((DIR / "ocs-peers.toml").read_text())
    cfg = config.from_mapping(data, env={})
    hosts = {p.origin_host for p in cfg.diameter.allowed_peers}
    assert hosts == {"pgw1.example.net", "scscf.example.net"}
    assert '"pgw1.example.net"' in (DIR / "freeDiameter-pcef.conf").read_text()
    assert 'FQDN="scscf.example.net"' in (DIR / "kamailio-cdp.xml").read_text()


def test_no_importable_diameter_package_at_the_root() -> None:
    """An __init__.py here would shadow the python-diameter library (imported as ``diameter``)."""
    assert not (DIR / "__init__.py").exists()
    assert not list(DIR.glob("*.py"))
