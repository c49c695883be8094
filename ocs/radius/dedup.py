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


class DuplicateCache:
    def __init__(self, ttl: float, max_entries: int = 200_000) -> None:
        self.ttl = ttl
        self.max = max_entries
        self.entries: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()

    def _expire(self, now: float) -> None:
        while self.entries:
            _key, (stamp, _) = next(iter(self.entries.items()))
            if now - stamp < self.ttl and len(self.entries) <= self.max:
                break
            self.entries.popitem(last=False)

    def get(self, key: Key) -> bytes | None:
        """Cached reply; IN_PROGRESS (b"") while being handled; None when new."""
        hit = self.entries.get(key)
        if hit is None or time.monotonic() - hit[0] >= self.ttl:
            return None
        return hit[1]

    def begin(self, key: Key) -> None:
        now = time.monotonic()
        self._expire(now)
        self.entries[key] = (now, IN_PROGRESS)

    def finish(self, key: Key, reply: bytes | None) -> None:
        if reply is None:
            self.entries.pop(key, None)  # dropped: let the retransmission be handled afresh
        else:
            self.entries[key] = (time.monotonic(), reply)
