-- 010_bundles: included voice seconds of products (bundles, docs/wholesale.md "Bundles").
--
-- products.included_seconds: voice seconds included per calendar month (0 = none), times the
--   subscription's quantity, prorated by active days like the monthly fee.
-- products.included_prefix: '' = any destination; else only numbers starting with these digits.
-- usage.included_units: the seconds of this record's usage covered by included seconds (not charged).
-- cdrs.included_seconds: the seconds of the call covered by included seconds (duration - included
--   is what the charge rates).
ALTER TABLE products
    ADD COLUMN included_seconds bigint NOT NULL DEFAULT 0 CHECK (included_seconds >= 0),
    ADD COLUMN included_prefix  text NOT NULL DEFAULT '' CHECK (included_prefix ~ '^[0-9]*$');
ALTER TABLE usage ADD COLUMN included_units bigint NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN included_seconds bigint NOT NULL DEFAULT 0;
