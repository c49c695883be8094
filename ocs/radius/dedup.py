"""RFC 5080 section 2.2.2 duplicate detection: answer a retransmission from the cache.

Key: (client address, port, code, identifier, request authenticator).  A
request still being handled is remembered as "in progress" so its
retransmission is dropped rather than handled twice; a finished one maps to the
exact reply bytes, which are sent again without re-running the handler.
"""

from __future__ import annotations

import time
from collections import OrderedDict

Key = tuple[str, int, int, int, bytes]
IN_PROGRESS = b""
MAX_ENTRIES = 50_000  # default bound (config ``cache.radius_duplicates``)


class DuplicateCache:
    """Entries in arrival order; the oldest go first when expired or beyond ``max_entries``.

    The bound matters more than the window: an entry (key, reply bytes) costs ~470 bytes, and at
    6,000 requests/s a 30 s window alone would hold 180,000 of them (~85 MB).  Beyond the bound the
    effective window is ``max_entries`` / request rate; a retransmission older than that is
    handled again, which is safe (request numbers make every verb idempotent), only slower.
    0 disables the cache.
    """

    def __init__(self, ttl: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max = max_entries
        self.entries: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()

    def _expire(self, now: float) -> None:
        entries = self.entries
        while entries:
            if len(entries) <= self.max and now - next(iter(entries.values()))[0] < self.ttl:
                break
            entries.popitem(last=False)

    def get(self, key: Key) -> bytes | None:
        """Cached reply; IN_PROGRESS (b"") while being handled; None when new."""
        hit = self.entries.get(key)
        if hit is None or time.monotonic() - hit[0] >= self.ttl:
            return None
        return hit[1]

    def begin(self, key: Key) -> None:
        now = time.monotonic()
        self.entries[key] = (now, IN_PROGRESS)
        self._expire(now)

    def finish(self, key: Key, reply: bytes | None) -> None:
        if reply is None:
            self.entries.pop(key, None)  # dropped: let the retransmission be handled afresh
        elif key in self.entries:  # not evicted meanwhile (the bound)
            self.entries[key] = (time.monotonic(), reply)
