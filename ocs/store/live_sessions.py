"""Open sessions as an operator lists them (``ocsctl session list``, docs/provisioning.md).

Read with SCAN over the session hashes (of one account, or of every shard): an
operator's command, never on the charging path.  Closed sessions (tombstones kept
for retransmissions, remembered refusals) are left out.
"""

from __future__ import annotations

import re
from typing import Any

from redis.asyncio import Redis

from ocs import money
from ocs.store.keys import Keys
from ocs.store.replies import text

BATCH = 500
_GLOB = re.compile(r"([*?\[\]\\])")


def _pattern(keys: Keys, account: str | None) -> str:
    if account is None:
        return keys.all_sessions_pattern()
    def glob_escape(value: str) -> str:  # an account id (and the prefix) may hold glob characters
        return _GLOB.sub(r"\\\1", value)

    return f"{glob_escape(keys.tag_of(account))}:sess:{glob_escape(account)}|*"


def _row(f: dict[str, str]) -> dict[str, Any]:
    return {"session_id": f.get("sid", ""), "account": f.get("acct", ""), "rating_group": int(f.get("rg") or 0),
            "protocol": f.get("proto", ""), "peer": f.get("origin", ""), "service": f.get("svc", ""),
            "started": f.get("t0", ""), "granted": int(f.get("hunits") or 0), "used": int(f.get("used") or 0),
            "held": int(f.get("hold") or 0), "charged": int(f.get("chg") or 0), "currency": f.get("cur", ""),
            "node": f.get("node", "")}


async def list_open(redis: Redis, keys: Keys, account: str | None = None) -> list[dict[str, Any]]:
    """Every open session (of ``account``), oldest first; money in micro-units."""
    found: list[bytes] = [k async for k in redis.scan_iter(match=_pattern(keys, account), count=1000)]
    rows = []
    for i in range(0, len(found), BATCH):
        pipe = redis.pipeline(transaction=False)
        for key in found[i:i + BATCH]:
            pipe.hgetall(key)
        for raw in await pipe.execute():
            f = {text(k): text(v) for k, v in raw.items()}
            if f and f.get("closed") != "1" and (account is None or f.get("acct") == account):
                rows.append(_row(f))
    return sorted(rows, key=lambda r: (r["started"], r["session_id"], r["rating_group"]))


async def listing(redis: Redis, keys: Keys, account: str | None = None) -> list[dict[str, Any]]:
    """:func:`list_open` as ``ocsctl session list --json`` and the API show it (money as decimal text)."""
    rows = await list_open(redis, keys, account)
    for r in rows:
        r["held"], r["charged"] = money.format(r["held"]), money.format(r["charged"])
    return rows
