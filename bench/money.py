"""Money and exactly-once checks after a bench load against a real ocsd.

A throughput figure is worth nothing if the load broke the books, so every bench module that
drives a real ocsd calls :func:`check` once its load is over (the daemon still running, since its
flusher moves the records from the Redis usage streams to PostgreSQL).  The check waits until the
streams are empty and nothing is reserved any more, then reads PostgreSQL once (one query) and
Redis once (one pipeline) and requires, as tests/e2e/test_chaos.py does:

- per account: Redis balance == applied top-ups and adjustments (ledger) - settled charges (usage
  records, plus a reseller's wholesale debits), no ledger row left unapplied, nothing reserved;
  the shards' reserved totals are 0 too;
- exactly-once records: usage rows in PostgreSQL == records the Lua scripts numbered (the shards'
  ``seq`` counters), and no (session, rating group, request number) charged twice;
- CDRs: exactly one per session the generator completed (``sessions``), no session with two, and
  per account the CDR charges add up to the usage records;
- ``ocsctl reconcile`` (the operator's own proof, which also counts records still in the streams)
  finds no difference.

On any disagreement it raises :class:`MoneyError` (the suite prints it and exits non-zero);
otherwise it returns one row, "money check: <what>", saying what it compared.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from ocs import config, money
from ocs.store.keys import Keys
from tests.support.daemon import Daemon

POLL = 0.1  # seconds between looks at the streams and reserved totals while waiting
WAIT = 120.0  # at most this long for the flush and the last holds (a soak leaves a long backlog)

# One query: per account the ledger, usage and CDR sums; the usage row count and the requests
# charged twice are uncorrelated subqueries (computed once, repeated on each row).
SQL = """
SELECT a.id,
  coalesce(l.credited, 0) AS credited, coalesce(l.unapplied, 0) AS unapplied,
  coalesce(u.settled, 0) AS settled, coalesce(r.resold, 0) AS resold,
  coalesce(c.n, 0) AS cdrs, coalesce(c.keys, 0) AS cdr_keys, coalesce(c.charged, 0) AS cdr_charge,
  (SELECT count(*) FROM usage) AS usage_rows,
  (SELECT count(*) FROM (SELECT 1 FROM usage GROUP BY session_id, rating_group, request_number
                         HAVING count(*) > 1) d) AS charged_twice
FROM accounts a
LEFT JOIN (SELECT account_id, sum(amount) FILTER (WHERE applied_at IS NOT NULL) AS credited,
                  count(*) FILTER (WHERE applied_at IS NULL) AS unapplied
           FROM ledger GROUP BY 1) l ON l.account_id = a.id
LEFT JOIN (SELECT account_id, sum(amount) AS settled FROM usage GROUP BY 1) u ON u.account_id = a.id
LEFT JOIN (SELECT reseller, sum(reseller_amount) AS resold FROM usage WHERE reseller IS NOT NULL
           GROUP BY 1) r ON r.reseller = a.id
LEFT JOIN (SELECT account, count(*) AS n, count(DISTINCT (session_id, rating_group)) AS keys,
                  sum(charge) AS charged FROM cdrs GROUP BY 1) c ON c.account = a.id
ORDER BY a.id
"""


class MoneyError(AssertionError):
    """The books disagree after a bench load."""


def _fetch(dsn: str) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(SQL))
        finally:
            await conn.close()

    return asyncio.run(go())


def _keys(d: Daemon) -> Keys:
    cfg = config.load(str(d.config_path), env={})
    return Keys(cfg.redis.key_prefix, cfg.charging.shards)


def check(d: Daemon, what: str, sessions: int, lost_ends: int = 0,
          accounts: Sequence[str] | None = None, wait: float = WAIT) -> dict[str, Any]:
    """Wait for the flush and the holds, then prove the books; raise MoneyError if they disagree.

    ``sessions``: sessions (calls) the generator completed (its last request answered), warm-up
    included: each must have exactly one CDR.  ``lost_ends``: sessions whose last request was given
    up unanswered (RADIUS over UDP): ocsd may or may not have closed them, so the CDR count may be
    up to that much higher and their holds may still be open (the reserved checks are skipped).
    ``accounts``: the accounts the load charged (default: all); CDRs of others (rows a bench
    seeded straight into PostgreSQL) are not counted.
    """
    keys = _keys(d)
    shards = range(keys.shards)
    r = d.redis()
    t0 = time.monotonic()
    try:
        while True:  # the flush (streams empty: entries are XDELed once in PostgreSQL) and the holds
            pipe = r.pipeline(transaction=False)
            for s in shards:
                pipe.xlen(keys.usage(s))
                pipe.hget(keys.totals(s), "rsv")
            got = pipe.execute()
            backlog, reserved = sum(int(x) for x in got[0::2]), sum(int(x or 0) for x in got[1::2])
            if backlog == 0 and (reserved == 0 or lost_ends):
                break
            if time.monotonic() - t0 > wait:
                raise MoneyError(f"money check {what}: after {wait:.0f} s still {backlog} records in the usage "
                                 f"streams and {reserved} micro-units reserved")
            time.sleep(POLL)
        waited = time.monotonic() - t0
        rows = _fetch(d.dsn)
        ids = [row["id"] for row in rows]
        pipe = r.pipeline(transaction=False)
        for a in ids:
            pipe.hmget(keys.account(a), "bal", "rsv")
        for s in shards:
            pipe.get(keys.seq(s))
            pipe.hget(keys.totals(s), "rsv")
        got = pipe.execute()
    finally:
        r.close()
    state = {a: (int(b or 0), int(v or 0)) for a, (b, v) in zip(ids, got[:len(ids)], strict=True)}
    emitted = sum(int(x or 0) for x in got[len(ids)::2])
    totals_rsv = sum(int(x or 0) for x in got[len(ids) + 1::2])

    wrong: list[str] = []
    scope = set(accounts) if accounts is not None else set(ids)
    cdrs = cdr_keys = 0
    for row in rows:
        a = row["id"]
        bal, rsv = state[a]
        expected = int(row["credited"]) - int(row["settled"]) - int(row["resold"])
        if bal != expected:
            wrong.append(f"{a}: balance {bal} != ledger {int(row['credited'])} - settled {int(row['settled'])}"
                         f" - reseller debits {int(row['resold'])} = {expected} (difference {bal - expected})")
        if int(row["unapplied"]):
            wrong.append(f"{a}: {int(row['unapplied'])} ledger rows not applied to the balance")
        if rsv and not lost_ends:
            wrong.append(f"{a}: {rsv} still reserved with every session ended")
        if a in scope:
            cdrs += int(row["cdrs"])
            cdr_keys += int(row["cdr_keys"])
            if int(row["cdr_charge"]) != int(row["settled"]):
                wrong.append(f"{a}: CDR charges {int(row['cdr_charge'])} != usage records {int(row['settled'])}")
    if totals_rsv and not lost_ends:
        wrong.append(f"shard reserved totals {totals_rsv} with every session ended")
    usage_rows = int(rows[0]["usage_rows"]) if rows else 0
    if usage_rows != emitted:
        wrong.append(f"{usage_rows} usage records in PostgreSQL, {emitted} emitted by the charging scripts")
    if rows and int(rows[0]["charged_twice"]):
        wrong.append(f"{int(rows[0]['charged_twice'])} (session, rating group, request number) charged twice")
    if cdr_keys != cdrs:
        wrong.append(f"{cdrs - cdr_keys} sessions with more than one CDR")
    if not sessions <= cdrs <= sessions + lost_ends:
        wrong.append(f"{cdrs} CDRs for {sessions} completed sessions"
                     + (f" (+ up to {lost_ends} whose end was lost)" if lost_ends else ""))
    rec = d.ocsctl("reconcile", json_out=True, check=False)
    if rec.get("differences"):
        wrong.append("ocsctl reconcile: " + "; ".join(
            f"{e['account']} balance {e['balance']} expected {e['expected']}" for e in rec["report"]
            if money.parse(e["difference"]) != 0))
    if wrong:
        raise MoneyError(f"money check {what} FAILED:\n  " + "\n  ".join(wrong[:30]))
    return {"name": f"money check: {what}", "status": "ok", "sessions": sessions, "cdrs": cdrs,
            "usage_records": usage_rows, "accounts": len(ids), "flush_wait_s": round(waited, 2)}
