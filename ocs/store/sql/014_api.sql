-- REST API (docs/api.md): bearer tokens and the audit log of every write.
--
-- api_tokens: one row per named token.  token_hash is SHA-256 of the token (32 random bytes from
-- the OS CSPRNG, base64url): a token that strong cannot be guessed from its hash, so a slow
-- password hash would only slow every request.  The token itself is printed once by
-- `ocsctl api token create` and never stored.  role: admin | operator | readonly | reseller;
-- reseller: the accounts.reseller value a reseller token is confined to (NULL for the other
-- roles).  A revoked token keeps its row (the audit log names it); its name can be given to a
-- new token.
CREATE TABLE api_tokens (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    token_hash  bytea NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('admin', 'operator', 'readonly', 'reseller')),
    reseller    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz,
    CHECK ((role = 'reseller') = (reseller IS NOT NULL))
);

-- api_audit: who (token name and role), what (method, path, target: the resource id in the path,
-- body: a summary with secrets masked), the HTTP status it ended with, when.  Written after the
-- response by the API itself, for every authenticated request that is not a read.
CREATE TABLE api_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    token      text NOT NULL,
    role       text NOT NULL,
    method     text NOT NULL,
    path       text NOT NULL,
    target     text NOT NULL DEFAULT '',
    body       text NOT NULL DEFAULT '',
    status     integer NOT NULL,
    result     text NOT NULL DEFAULT ''
);
CREATE INDEX api_audit_at ON api_audit (at);
