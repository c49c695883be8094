"""Moved to tests/support/radius_client.py; this name stays until the last users move."""

from tests.support.radius_client import *  # noqa: F403
