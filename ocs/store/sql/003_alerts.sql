-- 003_alerts: alerts to people (docs/alerts.md): per-account settings, the delivery outbox, and the
-- price changes of a tariff import that rate-change alerts list.

-- What an account wants to be told, and where.  NULL threshold = that alert is off; '' = no channel.
-- Money in micro-units.  An account without a row costs the flush nothing (docs/alerts.md, Cost).
CREATE TABLE alert_settings (
    account_id        text PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    low_balance       bigint CHECK (low_balance >= 0),
    long_call_seconds bigint CHECK (long_call_seconds > 0),
    expensive_call    bigint CHECK (expensive_call > 0),
    email             text NOT NULL DEFAULT '',
    webhook           text NOT NULL DEFAULT '',
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per event and channel, written in the transaction that detected the event (the usage
-- flush, the tariff import).  The UNIQUE key is what makes an alert happen once: a replayed stream
-- entry or an import run again proposes the same key and ON CONFLICT DO NOTHING drops it.
--   subject: the usage record id (low_balance, credit_limit: one crossing = one record),
--            the session id (long_call, expensive_call: once per session),
--            'tariff:version' (rate_change).
-- Delivery (ocs/control/alerts_delivery.py) leases due rows with FOR UPDATE SKIP LOCKED, sends, and
-- sets delivered_at only after the server accepted; a failure records attempts, last_error and
-- the next attempt (exponential back-off).  failed_at: given up after alerts.max_attempts (kept;
-- ocsctl alert retry requeues it).
CREATE TABLE alert_outbox (
    id              bigserial PRIMARY KEY,
    event           text NOT NULL CHECK (event IN ('low_balance', 'credit_limit', 'long_call', 'expensive_call',
                                                   'rate_change')),
    account_id      text NOT NULL,
    subject         text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'webhook')),
    target          text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text NOT NULL DEFAULT '',
    delivered_at    timestamptz,
    failed_at       timestamptz,
    UNIQUE (event, account_id, subject, channel)
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX alert_outbox_account ON alert_outbox (account_id, created_at);

-- What a tariff import changed in prices against the version before it, stored once per version
-- (the rate-change alerts of all the tariff's accounts refer to it).  changes: the first
-- 200 changed rows in (service, prefix, band, effective_from) order; total: all of them.
CREATE TABLE tariff_changes (
    tariff           text NOT NULL,
    version          integer NOT NULL,
    previous_version integer NOT NULL,
    total            integer NOT NULL,
    changes          jsonb NOT NULL,
    notes            jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tariff, version),
    FOREIGN KEY (tariff, version) REFERENCES tariff_versions(tariff, version) ON DELETE CASCADE
);
