-- 009_providers: termination providers and the route table (docs/wholesale.md, "Providers, routes and margin").
--
-- A provider's rate sheet is stored as an ordinary tariff named 'provider:<name>' (tariffs,
-- tariff_versions, rate_rows, bands): the same CSV formats, validation, versions and rating rules as
-- a retail tariff, and `ocsctl tariff show|rate provider:<name>` work on it.  This table says which
-- providers exist, their currency and the timezone their bands are read in.
CREATE TABLE providers (
    name       text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    currency   char(3) NOT NULL,
    timezone   text NOT NULL DEFAULT 'UTC',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per routed prefix (digits, longest prefix wins).  `providers` is the ordered list: the
-- first that has a rate for the number terminates the call, or with `lcr` the cheapest for the call.
-- The verbs check that every name is a provider (an array cannot carry a foreign key).
CREATE TABLE routes (
    prefix     text PRIMARY KEY CHECK (prefix ~ '^[0-9]{1,32}$'),
    providers  text[] NOT NULL CHECK (cardinality(providers) > 0),
    lcr        boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
