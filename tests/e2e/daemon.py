"""Moved to tests/support/daemon.py; this name stays until the last users move."""

from tests.support.daemon import *  # noqa: F403
