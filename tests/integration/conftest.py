from tests.support.balance import core, flusher, reaper

__all__ = ["core", "flusher", "reaper"]
