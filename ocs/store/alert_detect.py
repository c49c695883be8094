"""Alert events detected where their facts are already written: the usage flush and the tariff import.

Why here and not in the charging path: every debit already writes a usage record carrying what the
four account events need (``balance_after``, ``amount``, ``used_total``, ``charged_total``), and the
flusher moves those records into PostgreSQL exactly once.  So the events are found by the statement
that inserts the records, in the same transaction: no Redis round trip is added to a charging
request, a record that is replayed (crash between COMMIT and XACK) is not inserted again and so
raises nothing again, and a crash loses nothing (the outbox rows commit with the records).

Each event is decided from one record alone, so no state is kept between batches:

- low balance: ``balance_after + amount >= threshold > balance_after`` (the debit crossed it
  downwards).  Balances only rise through top-ups and refunds, so the next crossing needs the
  balance to have gone back up: "once until crossed upwards again" follows;
- credit limit (postpaid): ``balance_after <= -credit_limit < balance_after + amount``;
- long call (voice): ``used_total >= threshold``, expensive call: ``charged_total >= threshold``;
  once per session by the outbox key (event, account, session).

An account without a row in ``alert_settings`` drops out at the join: the cost for it is the
RETURNING of its inserted rows (docs/alerts.md, Cost).
"""

from __future__ import annotations

import json

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn = asyncpg.Connection | PoolConnectionProxy

MAX_LISTED = 200  # changed rows kept per tariff version (a mail lists them; the total is always given)

# The outbox insert that follows the usage insert (``ins``: the rows really inserted).  One row per
# event and channel; ORDER BY puts a session's earliest record first, so a per-session alert quotes
# the record that reached the threshold (later ones hit the UNIQUE key and are dropped).
USAGE_ALERTS = """
INSERT INTO alert_outbox (event, account_id, subject, channel, target, payload)
SELECT e.event, ins.account_id, e.subject, ch.channel, ch.target,
       jsonb_build_object('record', ins.record_id, 'session', ins.session_id, 'rating_group', ins.rating_group,
                          'service', ins.service, 'balance', ins.balance_after, 'amount', ins.amount,
                          'used_seconds', ins.used_total, 'charged', ins.charged_total, 'currency', ins.currency,
                          'time', ins.event_time, 'threshold', e.threshold)
FROM ins
JOIN alert_settings s ON s.account_id = ins.account_id
JOIN accounts a ON a.id = ins.account_id
CROSS JOIN LATERAL (VALUES
    ('low_balance', ins.record_id, s.low_balance,
     ins.balance_after < s.low_balance AND ins.balance_after + ins.amount >= s.low_balance),
    ('credit_limit', ins.record_id, a.credit_limit,
     a.type = 'postpaid' AND ins.balance_after <= -a.credit_limit AND ins.balance_after + ins.amount > -a.credit_limit),
    ('long_call', ins.session_id, s.long_call_seconds,
     ins.service = 'voice' AND ins.used_total >= s.long_call_seconds),
    ('expensive_call', ins.session_id, s.expensive_call, ins.charged_total >= s.expensive_call)
) AS e(event, subject, threshold, hit)
CROSS JOIN LATERAL (VALUES ('email', s.email), ('webhook', s.webhook)) AS ch(channel, target)
WHERE e.hit AND ch.target <> ''
ORDER BY ins.account_id, ins.session_id, ins.charged_total, ins.used_total
ON CONFLICT DO NOTHING
RETURNING event, channel
"""


def usage_insert_with_alerts(insert_usage: str, returning: str) -> str:
    """``insert_usage`` (an INSERT INTO usage ... ON CONFLICT DO NOTHING) as one statement that also queues alerts."""
    return f"WITH ins AS ({insert_usage} RETURNING {returning})\n{USAGE_ALERTS}"


USAGE_RETURNING = ("record_id, account_id, session_id, rating_group, service, used_total, amount, charged_total,"
                   " balance_after, currency, event_time")

# Rows of the new version against the previous one, keyed as the rating engine keys them (service,
# prefix, band, effective_from); a row is listed when it is new, gone, or its price terms differ.
# The destination name alone is not a price.  FULL JOIN needs a hashable condition: hence coalesce.
_DIFF = """
WITH o AS (SELECT * FROM rate_rows WHERE tariff = $1 AND version = $2),
     n AS (SELECT * FROM rate_rows WHERE tariff = $1 AND version = $3),
     d AS (
  SELECT coalesce(n.service, o.service) AS service, coalesce(n.prefix, o.prefix) AS prefix,
         coalesce(n.band, o.band) AS band, coalesce(n.effective_from, o.effective_from) AS effective_from,
         coalesce(n.destination, o.destination) AS destination,
         CASE WHEN o.prefix IS NOT NULL THEN jsonb_build_object('rate', o.rate, 'connect_fee', o.connect_fee,
              'first_increment', o.first_increment, 'next_increment', o.next_increment) END AS old,
         CASE WHEN n.prefix IS NOT NULL THEN jsonb_build_object('rate', n.rate, 'connect_fee', n.connect_fee,
              'first_increment', n.first_increment, 'next_increment', n.next_increment) END AS new
  FROM o FULL JOIN n
    ON o.service = n.service AND o.prefix = n.prefix AND o.band = n.band
   AND coalesce(o.effective_from, '-infinity') = coalesce(n.effective_from, '-infinity')
  WHERE o.prefix IS NULL OR n.prefix IS NULL
     OR (o.rate, o.connect_fee, o.first_increment, o.next_increment)
        IS DISTINCT FROM (n.rate, n.connect_fee, n.first_increment, n.next_increment))
SELECT (SELECT count(*) FROM d) AS total,
       coalesce((SELECT jsonb_agg(to_jsonb(l) ORDER BY l.service, l.prefix, l.band, l.effective_from NULLS FIRST)
                 FROM (SELECT * FROM d ORDER BY service, prefix, band, effective_from NULLS FIRST LIMIT $4) l),
                '[]')::text AS changes
"""

# What else changes every price of the tariff at once: its currency, its time bands, its timezone.
_NOTES = """
SELECT array_remove(ARRAY[
  CASE WHEN o.currency <> n.currency THEN 'currency ' || trim(o.currency) || ' -> ' || trim(n.currency) END,
  CASE WHEN o.timezone <> n.timezone THEN 'timezone ' || o.timezone || ' -> ' || n.timezone END,
  CASE WHEN EXISTS (SELECT band, days, start_minute, end_minute FROM bands WHERE tariff = $1 AND version = $2
                    EXCEPT SELECT band, days, start_minute, end_minute FROM bands WHERE tariff = $1 AND version = $3)
         OR EXISTS (SELECT band, days, start_minute, end_minute FROM bands WHERE tariff = $1 AND version = $3
                    EXCEPT SELECT band, days, start_minute, end_minute FROM bands WHERE tariff = $1 AND version = $2)
       THEN 'time bands changed' END], NULL)
FROM tariff_versions o, tariff_versions n
WHERE o.tariff = $1 AND o.version = $2 AND n.tariff = $1 AND n.version = $3
"""


async def _account_email_column(conn: Conn) -> str:
    """The accounts' own e-mail as SQL, when the schema has it (spec section 10's ``account set --email``).

    Rate-change mail goes to the alert address, else the account e-mail: until that column exists,
    only to the alert address.
    """
    has = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema ="
                              " current_schema() AND table_name = 'accounts' AND column_name = 'email')")
    return "coalesce(a.email, '')" if has else "''"


async def queue_rate_change(conn: Conn, tariff: str, version: int) -> int:
    """Record what ``version`` changed in prices and queue one alert per account on ``tariff``.

    Called inside the import's transaction, so the alerts commit with the version or not at all.
    An import that changes no price (and no currency, band or timezone) queues nothing.  Returns
    how many outbox rows were queued.
    """
    previous = await conn.fetchval("SELECT max(version) FROM tariff_versions WHERE tariff = $1 AND version < $2",
                                   tariff, version)
    if previous is None:
        return 0
    diff = await conn.fetchrow(_DIFF, tariff, previous, version, MAX_LISTED)
    assert diff is not None  # an aggregate: always one row
    notes = list(await conn.fetchval(_NOTES, tariff, previous, version) or [])
    if not diff["total"] and not notes:
        return 0
    await conn.execute(
        "INSERT INTO tariff_changes (tariff, version, previous_version, total, changes, notes)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb) ON CONFLICT DO NOTHING",
        tariff, version, previous, diff["total"], diff["changes"], json.dumps(notes))
    email = await _account_email_column(conn)
    status = await conn.execute(f"""
        INSERT INTO alert_outbox (event, account_id, subject, channel, target, payload)
        SELECT 'rate_change', a.id, $1 || ':' || $2::int::text, ch.channel, ch.target,
               jsonb_build_object('tariff', $1::text, 'version', $2::int, 'previous_version', $3::int,
                                  'currency', trim(a.currency))
        FROM accounts a LEFT JOIN alert_settings s ON s.account_id = a.id
        CROSS JOIN LATERAL (VALUES ('email', coalesce(nullif(s.email, ''), {email})),
                                   ('webhook', coalesce(s.webhook, ''))) AS ch(channel, target)
        WHERE a.tariff = $1 AND ch.target <> ''
        ON CONFLICT DO NOTHING""", tariff, version, previous)
    return int(status.split()[-1])
