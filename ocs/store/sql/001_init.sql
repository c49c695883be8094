-- 001_init: tariffs, accounts, aliases, ledger, usage and CDRs.
-- Money columns are BIGINT micro-units (1 major unit = 1_000_000); never numeric/float.

CREATE TABLE tariffs (
    name            text PRIMARY KEY,
    currency        char(3) NOT NULL,
    timezone        text NOT NULL,
    current_version integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tariff_versions (
    tariff      text NOT NULL REFERENCES tariffs(name) ON DELETE CASCADE,
    version     integer NOT NULL,
    currency    char(3) NOT NULL,
    timezone    text NOT NULL,
    rows        integer NOT NULL,
    source      text NOT NULL DEFAULT '',
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tariff, version)
);

CREATE TABLE rate_rows (
    tariff          text NOT NULL,
    version         integer NOT NULL,
    line            integer NOT NULL,
    service         text NOT NULL DEFAULT 'voice' CHECK (service IN ('voice', 'data', 'sms')),
    prefix          text NOT NULL,
    destination     text NOT NULL,
    rate            bigint NOT NULL CHECK (rate >= 0),
    connect_fee     bigint NOT NULL DEFAULT 0 CHECK (connect_fee >= 0),
    first_increment integer NOT NULL CHECK (first_increment > 0),
    next_increment  integer NOT NULL CHECK (next_increment > 0),
    band            text NOT NULL DEFAULT 'any',
    effective_from  timestamptz,
    FOREIGN KEY (tariff, version) REFERENCES tariff_versions(tariff, version) ON DELETE CASCADE,
    UNIQUE NULLS NOT DISTINCT (tariff, version, service, prefix, band, effective_from)
);

CREATE TABLE bands (
    tariff       text NOT NULL,
    version      integer NOT NULL,
    band         text NOT NULL,
    days         smallint[] NOT NULL,          -- 0 = Monday ... 6 = Sunday
    start_minute smallint NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
    end_minute   smallint NOT NULL CHECK (end_minute BETWEEN 1 AND 1440),
    FOREIGN KEY (tariff, version) REFERENCES tariff_versions(tariff, version) ON DELETE CASCADE
);

CREATE TABLE accounts (
    id            text PRIMARY KEY,
    type          text NOT NULL CHECK (type IN ('prepaid', 'postpaid')),
    currency      char(3) NOT NULL,
    tariff        text NOT NULL REFERENCES tariffs(name),
    credit_limit  bigint NOT NULL DEFAULT 0 CHECK (credit_limit >= 0),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked')),
    password      text,                          -- RADIUS PAP/CHAP secret; cleartext because CHAP (RFC 1994) needs it (docs/security.md)
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE aliases (
    value      text PRIMARY KEY,
    account_id text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('msisdn', 'imsi', 'sip', 'nai', 'pin', 'other')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX aliases_account ON aliases(account_id);

-- Top-ups and adjustments.  A row is written (committed) before Redis is
-- touched; applied_at is set once the Redis balance script has applied it
-- (idempotently, keyed by id), so a crash in between is repaired by
-- re-applying rows with applied_at IS NULL.  See docs/architecture.md.
CREATE TABLE ledger (
    id         bigserial PRIMARY KEY,
    account_id text NOT NULL REFERENCES accounts(id),
    kind       text NOT NULL CHECK (kind IN ('topup', 'adjustment')),
    amount     bigint NOT NULL,
    reference  text NOT NULL UNIQUE,
    reason     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    applied_at timestamptz
);
CREATE INDEX ledger_account ON ledger(account_id);
CREATE INDEX ledger_unapplied ON ledger(id) WHERE applied_at IS NULL;

-- One row per debit (or refund, amount < 0) made in Redis; copied from the
-- usage stream exactly once thanks to the unique record_id.
CREATE TABLE usage (
    record_id      text PRIMARY KEY,
    account_id     text NOT NULL,
    session_id     text NOT NULL,
    rating_group   integer NOT NULL DEFAULT 0,
    request_number integer NOT NULL DEFAULT 0,
    kind           text NOT NULL,              -- initial / update / terminate / event / refund / orphan
    protocol       text NOT NULL DEFAULT '',
    service        text NOT NULL DEFAULT 'voice',
    units          bigint NOT NULL DEFAULT 0,  -- reported by this request
    used_total     bigint NOT NULL DEFAULT 0,  -- session total after this request
    amount         bigint NOT NULL,            -- micro-units debited (negative: credited)
    charged_total  bigint NOT NULL DEFAULT 0,
    balance_after  bigint,
    currency       char(3) NOT NULL DEFAULT '',
    event_time     timestamptz NOT NULL,
    node           text NOT NULL DEFAULT '',
    inserted_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_account ON usage(account_id);
CREATE INDEX usage_session ON usage(session_id, rating_group);

-- One CDR per session and rating group (spec section 7).
CREATE TABLE cdrs (
    record_id         text PRIMARY KEY,
    session_id        text NOT NULL,
    rating_group      integer NOT NULL DEFAULT 0,
    account           text NOT NULL,
    protocol          text NOT NULL DEFAULT '',
    service           text NOT NULL DEFAULT 'voice',
    calling           text NOT NULL DEFAULT '',
    called            text NOT NULL DEFAULT '',
    prefix            text NOT NULL DEFAULT '',
    destination       text NOT NULL DEFAULT '',
    start_time        timestamptz NOT NULL,
    duration          bigint NOT NULL DEFAULT 0,
    billed_seconds    bigint NOT NULL DEFAULT 0,
    charge            bigint NOT NULL DEFAULT 0,
    currency          char(3) NOT NULL DEFAULT '',
    termination_cause text NOT NULL DEFAULT '',
    end_time          timestamptz,
    node              text NOT NULL DEFAULT '',
    inserted_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cdrs_start ON cdrs(start_time);
CREATE INDEX cdrs_account ON cdrs(account, start_time);
