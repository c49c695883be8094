"""The set-based statements of the invoice run: a few statements per run, none per account.

Why set-based: 10,000 accounts with a million usage records in a month must invoice in well under
a minute (docs/performance.md).  One statement picks the accounts and their period boundaries,
one aggregates the period's usage records and ledger rows into invoice lines, one inserts the
lines of every new invoice.

Attribution (docs/billing.md, "Invoices"):
- a usage record belongs to the period its ``event_time`` falls in (a call crossing midnight of
  the month's end is split where its debits were made), and to the destination of its session's
  CDR (joined on account, session id and rating group: one CDR per session and rating group, so
  the join never duplicates a record).  A record whose session has no CDR yet (still open when the
  run reads it) is a line of its own, so the lines still add up to the records exactly;
- a fee or adjustment ledger row belongs to the period its ``created_at`` falls in: a fee posted
  in advance on the first day of a month is on that month's invoice, a late one on the next.
Boundaries are local midnights in the timezone of the account's tariff, as for fees.
"""

from __future__ import annotations

# $1 period (first day, date), $2 account id or NULL.  Accounts already invoiced for the period are
# left out: that is what makes a second run create nothing.
CANDIDATES = """
CREATE TEMP TABLE _inv_acct ON COMMIT DROP AS
SELECT a.id AS account_id, a.type, a.currency, t.timezone, a.tax_rate, a.payment_terms_days AS terms,
       a.name, a.email, a.address,
       ($1::date)::timestamp AT TIME ZONE t.timezone AS p_start,
       ($1::date + interval '1 month')::timestamp AT TIME ZONE t.timezone AS p_end
FROM accounts a JOIN tariffs t ON t.name = a.tariff
WHERE ($2::text IS NULL OR a.id = $2)
  AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.account_id = a.id AND i.period = $1)
"""

_NO_CDR = "Sessions not yet closed"
_FEE = """
  CASE WHEN f.kind = 'correction' THEN 'Correction: ' ELSE '' END || f.product
  || CASE WHEN f.quantity > 1 THEN ' x ' || f.quantity ELSE '' END
  || CASE WHEN f.period_days = 1 THEN ' (one-off, ' || to_char(f.period, 'YYYY-MM-DD') || ')'
          WHEN f.days < f.period_days THEN ' (' || to_char(f.period, 'YYYY-MM') || ', ' || f.days || '/'
               || f.period_days || ' days)'
          ELSE ' (' || to_char(f.period, 'YYYY-MM') || ')' END
"""

# ord: usage lines first (by service, destination), then fees, then adjustments.
LINES = f"""
CREATE TEMP TABLE _inv_lines ON COMMIT DROP AS
WITH s AS (
  SELECT u.account_id, u.session_id, u.rating_group, u.service, sum(u.units) AS units, sum(u.amount) AS amount
  FROM usage u JOIN _inv_acct c ON c.account_id = u.account_id
  WHERE u.event_time >= c.p_start AND u.event_time < c.p_end
    AND u.event_time >= (SELECT min(p_start) FROM _inv_acct) AND u.event_time < (SELECT max(p_end) FROM _inv_acct)
  GROUP BY 1, 2, 3, 4
)
SELECT s.account_id, 0 AS ord, 'usage'::text AS kind, s.service,
       CASE WHEN d.record_id IS NULL THEN '{_NO_CDR}' ELSE coalesce(nullif(d.destination, ''), 'Other') END
         AS description,
       count(*)::bigint AS calls, sum(s.units)::bigint AS units, sum(s.amount)::bigint AS amount,
       NULL::bigint AS ledger_id
FROM s LEFT JOIN cdrs d ON d.session_id = s.session_id AND d.rating_group = s.rating_group AND d.account = s.account_id
  AND d.record_id NOT LIKE 'ref:%'  -- a refused attempt's record (ocs.store.refusals) would double the line
GROUP BY s.account_id, s.service, 5
UNION ALL
SELECT l.account_id, CASE l.kind WHEN 'fee' THEN 1 ELSE 2 END, l.kind, '',
       CASE WHEN f.ledger_id IS NOT NULL THEN {_FEE}
            WHEN l.kind = 'fee' THEN coalesce(nullif(l.reason, ''), 'Fee')
            ELSE 'Adjustment: ' || coalesce(nullif(l.reason, ''), l.reference) END,
       0, 0, -l.amount, l.id
FROM ledger l JOIN _inv_acct c ON c.account_id = l.account_id
LEFT JOIN fees f ON f.ledger_id = l.id
WHERE l.kind IN ('fee', 'adjustment') AND l.created_at >= c.p_start AND l.created_at < c.p_end
"""

# One row per account with at least one line: the account's data and the exact sum of its lines.
TO_INVOICE = """
SELECT c.*, t.lines_total
FROM _inv_acct c JOIN (SELECT account_id, sum(amount)::bigint AS lines_total FROM _inv_lines GROUP BY 1) t
  USING (account_id)
ORDER BY c.account_id
"""

INVOICE_COLUMNS = ("number", "account_id", "period", "period_start", "period_end", "timezone", "account_type",
                   "currency", "issue_date", "due_date", "tax_rate", "tax_included", "lines_total", "net", "tax",
                   "gross", "status", "buyer", "seller", "settled_at")

# $1 period.  Only accounts of this run have rows in _inv_lines, so only the new invoices get lines.
INSERT_LINES = """
INSERT INTO invoice_lines (invoice_id, line, kind, service, description, calls, units, amount, ledger_id)
SELECT i.id, row_number() OVER (PARTITION BY i.id ORDER BY l.ord, l.service, l.description, l.ledger_id),
       l.kind, l.service, l.description, l.calls, l.units, l.amount, l.ledger_id
FROM _inv_lines l JOIN invoices i ON i.account_id = l.account_id AND i.period = $1
"""
