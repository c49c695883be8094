"""e2e fixtures: see tests/e2e/daemon.py."""

from tests.e2e.daemon import daemon

__all__ = ["daemon"]
