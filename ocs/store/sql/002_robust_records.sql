-- 002_robust_records: wire integers fit their columns, excess usage is recorded, and a record
-- PostgreSQL refuses on its own goes to a dead-letter table instead of blocking the flush.

-- CC-Request-Number is an Unsigned32 (RFC 4006 section 8.2) and RADIUS request numbers are
-- synthesised above 2^32 (docs/radius.md): integer (int32) cannot hold them.
ALTER TABLE usage ALTER COLUMN request_number TYPE bigint;
-- Rating-Group is an Unsigned32 too (RFC 4006 section 8.29).
ALTER TABLE usage ALTER COLUMN rating_group TYPE bigint;
ALTER TABLE cdrs ALTER COLUMN rating_group TYPE bigint;

-- Seconds reported beyond grant + charging.max_overuse_seconds and therefore not charged.
ALTER TABLE usage ADD COLUMN excess_units bigint NOT NULL DEFAULT 0;
ALTER TABLE cdrs ADD COLUMN excess_units bigint NOT NULL DEFAULT 0;

-- How many CDRs were written for this session and rating group: a session charged again after it
-- closed (late usage after the reaper, a RADIUS Start after its hold expired) writes its CDR again
-- with a higher revision, and the flush keeps the highest (docs/provisioning.md).
ALTER TABLE cdrs ADD COLUMN revision integer NOT NULL DEFAULT 0;

-- A stream entry PostgreSQL refused even alone (after bisecting its batch).  ``fields`` is the
-- whole entry as ASCII JSON (a NUL or an undecodable octet survives as a \u escape), so nothing
-- is lost: ``ocsctl usage retry ID`` writes it again once the cause is fixed.
CREATE TABLE usage_dead_letters (
    id          bigserial PRIMARY KEY,
    stream      text NOT NULL,
    entry_id    text NOT NULL,
    record_id   text NOT NULL DEFAULT '',
    fields      text NOT NULL,
    error       text NOT NULL,
    node        text NOT NULL DEFAULT '',
    attempts    integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    UNIQUE (stream, entry_id)
);
CREATE INDEX usage_dead_letters_open ON usage_dead_letters(id) WHERE resolved_at IS NULL;
