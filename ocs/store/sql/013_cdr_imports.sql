-- 013_cdr_imports: mediation, CDR files from switches imported once (docs/wholesale.md, "Mediation").
--
-- cdr_imports: one row per `ocsctl cdr import` run, written before the run touches Redis.  A row whose
-- finished_at is NULL is a run still going, or one that died: the next import of the same source
-- repairs it (its Redis marker sets say which records it charged) before importing anything.
CREATE TABLE cdr_imports (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,
    file        text NOT NULL DEFAULT '',
    node        text NOT NULL DEFAULT '',
    imported    bigint NOT NULL DEFAULT 0,
    duplicate   bigint NOT NULL DEFAULT 0,
    rejected    bigint NOT NULL DEFAULT 0,
    repaired    bigint NOT NULL DEFAULT 0,   -- records of a dead run this run found charged and recorded
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    repaired_by bigint                       -- the run that recorded this dead run's charged records
);
CREATE INDEX cdr_imports_open ON cdr_imports(source) WHERE finished_at IS NULL;

-- The durable duplicate check: one row per record ever charged by an import, keyed by the switch
-- (source) and the record's key: 'id:' || record_id when the file has one, else 'h:' || a hash of
-- calling, called, start_time and duration.  No foreign key: a million rows are inserted per big file
-- and the run row is only for people.
CREATE TABLE cdr_import_keys (
    source    text NOT NULL,
    key       text NOT NULL,
    import_id bigint NOT NULL,
    PRIMARY KEY (source, key)
);
