-- 015_report_rollups: usage reports read rollups, not the CDR table (docs/reports.md).
--
-- A month of 10 million CDRs grouped on the fly takes seconds of CPU per report; the rollups keep
-- per dimension and bucket what a report sums (attempts, answered calls, seconds, revenue, cost),
-- so a report reads thousands of rows.  They are kept by statement-level triggers on cdrs: every
-- writer (the flusher's upsert of a new CDR revision, re-rating, a CDR import, a manual fix) moves
-- them by the difference it makes, in its own transaction, so a rollup always equals its CDRs.
--
--   dim 'hour'        bucket = the UTC hour of start_time, key ''
--   dim 'account' / 'destination' / 'provider' / 'reseller'
--                     bucket = the UTC day of start_time, key = that column (reseller: only CDRs
--                     that have one)
-- attempts counts every CDR (refused attempts are CDRs of duration 0); answered those with a
-- duration; seconds the duration of voice CDRs (minutes, ACD); revenue the charge; cost the
-- provider cost (in cost_currency; NULL counts as 0); reseller_charge the reseller's debit.
CREATE TABLE report_rollup (
    dim             text NOT NULL CHECK (dim IN ('hour', 'account', 'destination', 'provider', 'reseller')),
    bucket          timestamptz NOT NULL,
    key             text NOT NULL,
    service         text NOT NULL,
    currency        text NOT NULL,
    cost_currency   text NOT NULL,
    attempts        bigint NOT NULL,
    answered        bigint NOT NULL,
    seconds         bigint NOT NULL,
    revenue         bigint NOT NULL,
    cost            bigint NOT NULL,
    reseller_charge bigint NOT NULL,
    PRIMARY KEY (dim, bucket, key, service, currency, cost_currency)
);

-- Move the rollups by what one statement did: take away its rows' old images, add their new ones,
-- in one pass; groups whose sums do not change (a CDR rewritten with the same numbers) are skipped.
-- Rows are merged in key order, so two transactions touching the same rollup rows lock them in the
-- same order (no deadlock).
CREATE FUNCTION report_rollup_apply(old_rows cdrs[], new_rows cdrs[]) RETURNS void LANGUAGE sql AS $$
INSERT INTO report_rollup AS r (dim, bucket, key, service, currency, cost_currency, attempts, answered,
                                seconds, revenue, cost, reseller_charge)
SELECT * FROM (
    SELECT d.dim,
           date_trunc(CASE WHEN d.dim = 'hour' THEN 'hour' ELSE 'day' END, c.start_time, 'UTC') AS bucket,
           CASE d.dim WHEN 'hour' THEN '' WHEN 'account' THEN c.account WHEN 'destination' THEN c.destination
                      WHEN 'provider' THEN c.provider ELSE c.reseller END AS key,
           c.service, rtrim(c.currency) AS currency, c.cost_currency,
           sum(c.s) AS attempts, coalesce(sum(c.s) FILTER (WHERE c.duration > 0), 0) AS answered,
           coalesce(sum(c.s * c.duration) FILTER (WHERE c.service = 'voice'), 0) AS seconds,
           sum(c.s * c.charge) AS revenue, sum(c.s * coalesce(c.cost, 0)) AS cost,
           sum(c.s * coalesce(c.reseller_charge, 0)) AS reseller_charge
    FROM (SELECT o.*, -1 AS s FROM unnest(old_rows) AS o UNION ALL SELECT n.*, 1 FROM unnest(new_rows) AS n) AS c
    CROSS JOIN (VALUES ('hour'), ('account'), ('destination'), ('provider'), ('reseller')) AS d(dim)
    WHERE d.dim <> 'reseller' OR c.reseller <> ''
    GROUP BY 1, 2, 3, 4, 5, 6
) AS delta
WHERE (attempts, answered, seconds, revenue, cost, reseller_charge) <> (0, 0, 0, 0, 0, 0)
ORDER BY 1, 2, 3, 4, 5, 6
ON CONFLICT (dim, bucket, key, service, currency, cost_currency) DO UPDATE SET
    attempts = r.attempts + EXCLUDED.attempts, answered = r.answered + EXCLUDED.answered,
    seconds = r.seconds + EXCLUDED.seconds, revenue = r.revenue + EXCLUDED.revenue,
    cost = r.cost + EXCLUDED.cost, reseller_charge = r.reseller_charge + EXCLUDED.reseller_charge
$$;

CREATE FUNCTION report_rollup_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM report_rollup_apply('{}', ARRAY(SELECT n::cdrs FROM new_cdrs n));
    RETURN NULL;
END $$;

CREATE FUNCTION report_rollup_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM report_rollup_apply(ARRAY(SELECT o::cdrs FROM old_cdrs o), ARRAY(SELECT n::cdrs FROM new_cdrs n));
    RETURN NULL;
END $$;

CREATE FUNCTION report_rollup_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM report_rollup_apply(ARRAY(SELECT o::cdrs FROM old_cdrs o), '{}');
    RETURN NULL;
END $$;

CREATE TRIGGER cdrs_rollup_insert AFTER INSERT ON cdrs REFERENCING NEW TABLE AS new_cdrs
    FOR EACH STATEMENT EXECUTE FUNCTION report_rollup_inserted();
CREATE TRIGGER cdrs_rollup_update AFTER UPDATE ON cdrs REFERENCING OLD TABLE AS old_cdrs NEW TABLE AS new_cdrs
    FOR EACH STATEMENT EXECUTE FUNCTION report_rollup_updated();
CREATE TRIGGER cdrs_rollup_delete AFTER DELETE ON cdrs REFERENCING OLD TABLE AS old_cdrs
    FOR EACH STATEMENT EXECUTE FUNCTION report_rollup_deleted();

-- Rebuild every rollup from the CDRs, one UTC day at a time (bounded memory on a big table): for the
-- CDRs written before this migration, and after a bulk load made with the triggers disabled.
CREATE FUNCTION report_rollup_rebuild() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d timestamptz;
BEGIN
    DELETE FROM report_rollup;
    FOR d IN SELECT DISTINCT date_trunc('day', start_time, 'UTC') FROM cdrs ORDER BY 1 LOOP
        PERFORM report_rollup_apply('{}', ARRAY(SELECT c FROM cdrs c WHERE start_time >= d
                                                AND start_time < d + interval '1 day'));
    END LOOP;
END $$;

SELECT report_rollup_rebuild();
