from tests.integration.balance_fixtures import core, flusher, reaper

__all__ = ["core", "flusher", "reaper"]
