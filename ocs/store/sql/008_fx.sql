-- 008_fx: exchange rates (docs/wholesale.md, "Currencies and FX").
-- A row means 1 BASE = RATE QUOTE from valid_from until the next row of the same pair (base, quote).
-- numeric(30,12): rates are stored exactly as typed (up to 12 decimals); ocsctl refuses more rather than
-- rounding.  Provider LCR, re-rating and CDR import read this table as it is: keep its shape.
CREATE TABLE fx_rates (
    base       text NOT NULL,
    quote      text NOT NULL,
    valid_from timestamptz NOT NULL,
    rate       numeric(30,12) NOT NULL CHECK (rate > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (base, quote, valid_from)
);
