-- 006_pins: voucher and calling-card PINs (docs/billing.md, "Vouchers and calling cards").
--
-- A lot is one `ocsctl pin generate` run.  PINs are never stored in cleartext here: pin_hash is
-- HMAC-SHA256(pepper, PIN) with a pepper kept outside the database (billing.pin_pepper_file), so a
-- copy of this table alone does not give the PINs.  The hash is deterministic so that redeeming
-- finds the row through the unique index, without trying every row.  A card's PIN is also its
-- account's alias and RADIUS password (cleartext by necessity, docs/security.md).

CREATE TABLE pin_lots (
    name        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('voucher', 'card')),
    value       bigint NOT NULL CHECK (value > 0),        -- micro-units credited per PIN
    currency    char(3) NOT NULL,
    tariff      text REFERENCES tariffs(name),            -- cards only: the card accounts' tariff
    pin_length  smallint NOT NULL,
    count       integer NOT NULL CHECK (count > 0),
    expires_at  timestamptz,                              -- vouchers: not redeemable from this instant
    pepper_id   text NOT NULL,                            -- which pepper hashed this lot (not the pepper)
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'card') = (tariff IS NOT NULL)),
    CHECK (kind = 'voucher' OR expires_at IS NULL)
);

CREATE TABLE pins (
    id          bigserial PRIMARY KEY,
    lot         text NOT NULL REFERENCES pin_lots(name),
    serial      integer NOT NULL,                         -- 1..count, printed on the card
    pin_hash    bytea NOT NULL UNIQUE,                    -- HMAC-SHA256(pepper, PIN): unique across all lots
    account_id  text REFERENCES accounts(id),             -- cards: the card's own account
    redeemed_by text REFERENCES accounts(id),             -- vouchers: the account credited
    redeemed_at timestamptz,
    ledger_id   bigint REFERENCES ledger(id),             -- the top-up written ahead for it
    UNIQUE (lot, serial),
    CHECK ((redeemed_by IS NULL) = (redeemed_at IS NULL))
);
CREATE INDEX pins_account ON pins(account_id) WHERE account_id IS NOT NULL;
CREATE INDEX pins_redeemed_by ON pins(redeemed_by) WHERE redeemed_by IS NOT NULL;
