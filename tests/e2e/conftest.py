"""e2e fixtures: see tests/support/daemon.py."""

from tests.support.daemon import daemon

__all__ = ["daemon"]
