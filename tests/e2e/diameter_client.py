"""Moved to tests/support/diameter_client.py; this name stays until the last users move."""

from tests.support.diameter_client import *  # noqa: F403
