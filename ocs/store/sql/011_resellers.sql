-- 011_resellers: resellers (docs/wholesale.md "Resellers").
--
-- A reseller is an account of its own (accounts row: currency, its wholesale tariff as `tariff`,
-- status, credit limit; top-ups and adjustments through the ledger like any account); this table
-- says which accounts are resellers.  A subscriber names its reseller in accounts.reseller (the
-- customer-data column of 004), set once by `account create --reseller` and never changed:
-- the subscriber's Redis keys live on its reseller's shard (Redis hash `placement`), so moving it
-- would mean moving its keys.
--
-- usage.reseller / usage.reseller_amount and cdrs.reseller / cdrs.reseller_charge (007) carry
-- what each charge debited the reseller; reconcile proves a reseller's balance from them.
CREATE TABLE resellers (
    id         text PRIMARY KEY REFERENCES accounts(id),
    created_at timestamptz NOT NULL DEFAULT now()
);
