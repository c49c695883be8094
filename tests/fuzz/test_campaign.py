"""The bounded fuzz campaign (part of the normal test command): see docs/fuzzing.md.

50,000 RADIUS datagrams and 50,000 Diameter messages by default (``OCS_FUZZ_PACKETS`` overrides,
``OCS_FUZZ_SEED`` picks the seed; the seed is printed either way), then: ocsd alive, every usage
record in PostgreSQL (or a dead letter), SIGTERM exits 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.fuzz.campaign import run_campaign
from tests.support.daemon import Daemon

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEFAULT_PACKETS = 50_000
DEFAULT_SEED = 20261203  # fixed for the test command: a failure reproduces; make fuzz varies it


def test_fuzz_campaign(make_daemon: Callable[..., Daemon]) -> None:
    packets = int(os.environ.get("OCS_FUZZ_PACKETS", str(DEFAULT_PACKETS)))
    seed = int(os.environ.get("OCS_FUZZ_SEED", str(DEFAULT_SEED)))
    d = make_daemon()
    rep = run_campaign(d, packets, seed, time_budget=float(os.environ.get("OCS_FUZZ_BUDGET", "10800")))
    assert rep.survived, f"{rep.failure}\n{rep.summary()}"
    assert rep.exit_code == 0
    assert rep.radius.bad_replies == 0, f"replies that verify against no request: {rep.radius.bad_samples}"
    assert rep.diameter.bad_answers == 0, "answers our codec cannot decode"
