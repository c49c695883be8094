"""Moved to tests/support/proxy.py; this name stays until the last users move."""

from tests.support.proxy import *  # noqa: F403
