"""Fuzz-tier fixtures: the e2e ``Daemon`` (tests/support/daemon.py), provisioned for the campaign."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fuzz.campaign import provision
from tests.support.daemon import Daemon, daemon, require_services

__all__ = ["daemon", "fuzz_daemon", "make_daemon"]


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``make_daemon(extra_toml="", edit=None, accounts=...)``: a started ocsd with the fuzz tariff and accounts (tests/fuzz/campaign.py).

    Unlike the e2e ``daemon`` fixture the test itself checks how ocsd ends (the regression tests and the
    campaign assert a SIGTERM exit 0 while the process is known to be alive); teardown only cleans up.
    """
    require_services()
    made: list[Daemon] = []

    def make(extra_toml: str = "", edit: Callable[[str], str] | None = None,
             accounts: tuple[str, ...] = ("probe", "fuzz", "reg")) -> Daemon:
        d = Daemon(tmp_path / f"d{len(made)}", extra_toml=extra_toml)
        d.tmp.mkdir(parents=True, exist_ok=True)
        made.append(d)
        d.write_config()
        if edit is not None:  # e.g. a key of a table the base config already has
            d.config_path.write_text(edit(d.config_path.read_text()))
        d.create_database()
        provision(d, accounts=accounts)
        d.start()
        return d

    try:
        yield make
    finally:
        for d in made:
            d.cleanup()


@pytest.fixture
def fuzz_daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    return make_daemon()
