-- 007_wholesale_records: the columns wholesale rating adds to usage records and CDRs (docs/wholesale.md).
-- Later wholesale migrations (008 ...) add their own tables; the record columns live here, together,
-- because every one of those features writes them through the same stream and flush.
--
-- CDR (spec: cdr export columns after termination_cause, in this order):
--   rate_currency    the tariff's currency when it differs from the account's ('' otherwise)
--   fx_rate          the FX rate used (exact decimal text, '' when no conversion)
--   provider         the provider that terminated the call ('' when no route)
--   cost, cost_currency   the provider's price of the call (micro-units in cost_currency; NULL: no route)
--   reseller, reseller_charge   the reseller and what it was charged at its wholesale tariff (NULL: none)
--   rerated_from     the charge before the last re-rating (NULL: never re-rated)
-- and, not exported but what re-rating and reports need: the tariff and version that rated the call.
ALTER TABLE cdrs
    ADD COLUMN rate_currency   text NOT NULL DEFAULT '',
    ADD COLUMN fx_rate         text NOT NULL DEFAULT '',
    ADD COLUMN provider        text NOT NULL DEFAULT '',
    ADD COLUMN cost            bigint,
    ADD COLUMN cost_currency   text NOT NULL DEFAULT '',
    ADD COLUMN reseller        text NOT NULL DEFAULT '',
    ADD COLUMN reseller_charge bigint,
    ADD COLUMN rerated_from    bigint,
    ADD COLUMN tariff          text NOT NULL DEFAULT '',
    ADD COLUMN tariff_version  integer;

-- A usage row of a reseller's subscriber also says what the reseller was debited by the same step
-- (reconcile proves the reseller's balance from these).
ALTER TABLE usage
    ADD COLUMN reseller        text NOT NULL DEFAULT '',
    ADD COLUMN reseller_amount bigint NOT NULL DEFAULT 0;
CREATE INDEX usage_reseller ON usage(reseller) WHERE reseller <> '';
