-- 004_customers_fees: customer data on accounts, products, subscriptions and the recurring fees they
-- post to the ledger, and the record of the daemon's daily run (docs/billing.md).

-- Customer data.  '' means "not given".  tax_rate is a percentage (19.0000 = 19 %), exact: it is
-- applied to invoice totals, never to money in flight.  payment_terms_days: an invoice is due this
-- many days after its issue date (14 unless set).  reseller: the reseller the account belongs to
-- (NULL = none); the wholesale work adds the resellers themselves, here it is what
-- `ocsctl account list --reseller R` filters on.
ALTER TABLE accounts
    ADD COLUMN name               text NOT NULL DEFAULT '',
    ADD COLUMN email              text NOT NULL DEFAULT '',
    ADD COLUMN address            text NOT NULL DEFAULT '',
    ADD COLUMN tax_rate           numeric(7,4) NOT NULL DEFAULT 0 CHECK (tax_rate >= 0 AND tax_rate <= 100),
    ADD COLUMN payment_terms_days integer NOT NULL DEFAULT 14 CHECK (payment_terms_days BETWEEN 0 AND 365),
    ADD COLUMN reseller           text;
CREATE INDEX accounts_reseller ON accounts(reseller) WHERE reseller IS NOT NULL;

-- A fee is a ledger entry like a top-up (negative amount; a correction is positive): written ahead
-- here, then applied once to the Redis balance by topup.lua keyed by the ledger id.  Migrations
-- that redefine this CHECK later must keep every kind listed here.
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN ('topup', 'adjustment', 'fee'));

CREATE TABLE products (
    name        text PRIMARY KEY,
    amount      bigint NOT NULL CHECK (amount >= 0),      -- micro-units per month (monthly) or once
    currency    char(3) NOT NULL,
    period      text NOT NULL CHECK (period IN ('monthly', 'once')),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Days are calendar days in the timezone of the account's tariff.  A subscription is active on
-- the days [start_date, end_date): end_date is the first day no longer charged (NULL = open).
-- amount and period are the product's, copied at subscribe time.  final: ended and every fee and
-- correction posted, so the fee run no longer looks at it.
CREATE TABLE subscriptions (
    id          bigserial PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    product     text NOT NULL REFERENCES products(name),
    quantity    integer NOT NULL DEFAULT 1 CHECK (quantity > 0),
    amount      bigint NOT NULL CHECK (amount >= 0),
    period      text NOT NULL CHECK (period IN ('monthly', 'once')),
    start_date  date NOT NULL,
    end_date    date CHECK (end_date >= start_date),
    final       boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz
);
CREATE INDEX subscriptions_account ON subscriptions(account_id, product);
CREATE INDEX subscriptions_live ON subscriptions(id) WHERE NOT final;

-- One row per fee posted.  The primary key is what makes a fee happen once, whatever the number
-- of runs or nodes: a second run proposes the same key and ON CONFLICT DO NOTHING drops it.
--   period: the first day of the month charged (monthly), the start date (once);
--   kind:   'charge' (posted in advance) or 'correction' (the part of a charge given back when
--           the subscription ended after the charge was posted: amount < 0);
--   amount: what the customer owes for it, micro-units (the ledger entry is its negative).
-- The ledger row is inserted in the same transaction, after this row: hence DEFERRABLE.
CREATE TABLE fees (
    subscription_id bigint NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    period          date NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('charge', 'correction')),
    account_id      text NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    product         text NOT NULL,
    quantity        integer NOT NULL,
    days            integer NOT NULL,                      -- days charged in the period
    period_days     integer NOT NULL,                      -- days in the period (1 for once)
    amount          bigint NOT NULL,
    currency        char(3) NOT NULL,
    due_date        date NOT NULL,
    ledger_id       bigint NOT NULL UNIQUE REFERENCES ledger(id) DEFERRABLE INITIALLY DEFERRED,
    posted_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, period, kind)
);
CREATE INDEX fees_account ON fees(account_id, period);

-- The daemon's daily run: one row per UTC day and step, written by the node that did it (under an
-- advisory lock, so two nodes never run a step at once); a finished row means no node runs that
-- step again that day.
CREATE TABLE billing_daily_runs (
    day         date NOT NULL,
    step        text NOT NULL,
    node        text NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    result      text NOT NULL DEFAULT '',
    PRIMARY KEY (day, step)
);
