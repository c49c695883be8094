-- 005_invoices_payments: invoices and credit notes with gapless numbers, payments and their allocation to
-- invoices, and the dunning blocks (docs/billing.md: Invoices, Payments, Dunning).  Money is bigint
-- micro-units; totals on invoices are already rounded to the currency's minor unit.

-- One counter per document kind and year.  A number is taken by UPDATE ... RETURNING in the
-- transaction that writes the document, so the row lock serialises writers and a rolled-back
-- transaction gives its numbers back: the numbers of a year are consecutive, without gaps.
CREATE TABLE billing_sequences (
    kind text NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    year integer NOT NULL,
    last integer NOT NULL DEFAULT 0 CHECK (last >= 0),
    PRIMARY KEY (kind, year)
);

-- One invoice per account and month.  Period boundaries are local midnights in the timezone of
-- the account's tariff (the one fees are computed in), kept here as instants.  buyer and seller are
-- copies taken at issue: an invoice does not change when the customer data or [billing] does.
--   lines_total: exact sum of the lines (micro-units) - what the period moved on the balance;
--   net, tax, gross: rounded once each to the minor unit (tax_included: prepaid, prices include tax);
--   paid: allocated payments; credited: how much of lines_total was given back to the Redis
--   balance so far (postpaid: as it is paid; void: the rest).
CREATE TABLE invoices (
    id           bigserial PRIMARY KEY,
    number       text NOT NULL UNIQUE,
    account_id   text NOT NULL REFERENCES accounts(id),
    period       date NOT NULL CHECK (extract(day FROM period) = 1),
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    timezone     text NOT NULL,
    account_type text NOT NULL CHECK (account_type IN ('prepaid', 'postpaid')),
    currency     char(3) NOT NULL,
    issue_date   date NOT NULL,
    due_date     date NOT NULL,
    tax_rate     numeric(7,4) NOT NULL,
    tax_included boolean NOT NULL,
    lines_total  bigint NOT NULL,
    net          bigint NOT NULL,
    tax          bigint NOT NULL,
    gross        bigint NOT NULL,
    paid         bigint NOT NULL DEFAULT 0 CHECK (paid >= 0),
    credited     bigint NOT NULL DEFAULT 0,
    status       text NOT NULL CHECK (status IN ('open', 'paid', 'void')),
    buyer        jsonb NOT NULL,
    seller       jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    settled_at   timestamptz,
    voided_at    timestamptz,
    void_reason  text NOT NULL DEFAULT '',
    UNIQUE (account_id, period)
);
CREATE INDEX invoices_open ON invoices (account_id, issue_date, id) WHERE status = 'open';
CREATE INDEX invoices_period ON invoices (period);

-- kind usage: one line per (service, destination), calls = sessions with usage in the period,
-- units = seconds (voice), octets (data) or messages (sms) reported in the period.
-- kind fee / adjustment: one line per ledger row (ledger_id), amount = what the customer owes.
CREATE TABLE invoice_lines (
    invoice_id  bigint NOT NULL REFERENCES invoices(id) ON DELETE CASCADE,
    line        integer NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('usage', 'fee', 'adjustment')),
    service     text NOT NULL DEFAULT '',
    description text NOT NULL,
    calls       bigint NOT NULL DEFAULT 0,
    units       bigint NOT NULL DEFAULT 0,
    amount      bigint NOT NULL,
    ledger_id   bigint REFERENCES ledger(id),
    PRIMARY KEY (invoice_id, line)
);

-- The credit note that voids an invoice: the invoice's amounts negated, its own gapless numbers.
CREATE TABLE credit_notes (
    id         bigserial PRIMARY KEY,
    number     text NOT NULL UNIQUE,
    invoice_id bigint NOT NULL UNIQUE REFERENCES invoices(id),
    account_id text NOT NULL REFERENCES accounts(id),
    issue_date date NOT NULL,
    reason     text NOT NULL,
    net        bigint NOT NULL,
    tax        bigint NOT NULL,
    gross      bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A payment received (ocsctl payment import).  The reference is what makes it count once.
-- unallocated: the part not (yet) settling an invoice - the account's credit.
-- invoice: the number the payer named ('' = none).
CREATE TABLE payments (
    id          bigserial PRIMARY KEY,
    reference   text NOT NULL UNIQUE,
    account_id  text NOT NULL REFERENCES accounts(id),
    paid_on     date NOT NULL,
    amount      bigint NOT NULL CHECK (amount > 0),
    currency    char(3) NOT NULL,
    invoice     text NOT NULL DEFAULT '',
    unallocated bigint NOT NULL CHECK (unallocated >= 0 AND unallocated <= amount),
    source      text NOT NULL DEFAULT '',
    imported_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_account ON payments (account_id, paid_on, id);
CREATE INDEX payments_credit ON payments (account_id, id) WHERE unallocated > 0;

-- Which payment settled how much of which invoice.  released_at: the invoice was voided and the
-- amount went back to the payment's credit (the row stays as the record of what happened).
CREATE TABLE payment_allocations (
    id          bigserial PRIMARY KEY,
    payment_id  bigint NOT NULL REFERENCES payments(id),
    invoice_id  bigint NOT NULL REFERENCES invoices(id),
    amount      bigint NOT NULL CHECK (amount > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz
);
CREATE INDEX payment_allocations_invoice ON payment_allocations (invoice_id) WHERE released_at IS NULL;
CREATE INDEX payment_allocations_payment ON payment_allocations (payment_id);

-- Accounts the daily run blocked for an overdue invoice: only these are unblocked by a payment
-- (an account an operator blocked stays blocked whatever is paid).
CREATE TABLE dunning_blocks (
    account_id text PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    invoice_id bigint NOT NULL REFERENCES invoices(id),
    blocked_on date NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Money given back to the balance by billing: 'payment' (a prepaid account's payment; the share of
-- a paid postpaid invoice's charges) and 'credit_note' (a voided invoice's charges).  Neither is an
-- invoice line.  Every kind 004 listed is kept.
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check
    CHECK (kind IN ('topup', 'adjustment', 'fee', 'payment', 'credit_note'));

-- The invoice run reads one month of usage; without this it would read every record ever kept.
CREATE INDEX usage_event_time ON usage (event_time);
CREATE INDEX ledger_created ON ledger (created_at) WHERE kind IN ('fee', 'adjustment');

-- An invoice e-mailed by `ocsctl invoice send` is a row of the alerts' outbox (docs/billing.md,
-- "Sending"): subject = the invoice number, so the UNIQUE key sends it once; the payload carries the
-- whole mail with the PDF.  Every event 003 listed is kept.
ALTER TABLE alert_outbox DROP CONSTRAINT alert_outbox_event_check;
ALTER TABLE alert_outbox ADD CONSTRAINT alert_outbox_event_check
    CHECK (event IN ('low_balance', 'credit_limit', 'long_call', 'expensive_call', 'rate_change', 'invoice'));
