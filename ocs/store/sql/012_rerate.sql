-- 012_rerate: re-rating a period's CDRs after a rate correction (docs/wholesale.md, "Re-rating").
--
-- cdrs.rerated_from (007) keeps the charge before the last re-rating; cdrs.charge becomes the new one.
-- rerate_adjusted: the sum of the re-rating adjustments posted to the ledger for this record.  The flush
-- never writes it (it is not a stream field), so when a session charged again after it closed brings a
-- higher CDR revision (charge back at the price the core rated, rerated_from empty), the next re-rating
-- still knows what was already corrected and posts only the rest: nothing is adjusted twice.
ALTER TABLE cdrs ADD COLUMN rerate_adjusted bigint NOT NULL DEFAULT 0;

-- One row per committed re-rating (not for --dry-run): what was asked, what it did.  Its id is in the
-- reference of the ledger adjustments it posted ('rerate:<id>:<account>'), so an accountant can tell
-- which run made which adjustment.
CREATE TABLE rerate_runs (
    id          bigserial PRIMARY KEY,
    period_from timestamptz NOT NULL,
    period_to   timestamptz NOT NULL,
    account     text NOT NULL DEFAULT '',
    tariff      text NOT NULL DEFAULT '',
    examined    bigint NOT NULL,
    changed     bigint NOT NULL,
    unrated     bigint NOT NULL,
    accounts    integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
