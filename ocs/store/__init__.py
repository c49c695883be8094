"""Stores: Redis (money, sessions, usage streams) and PostgreSQL (ledger, tariffs, records)."""

import asyncpg

# What asyncpg raises when PostgreSQL is away or failing: the flusher backs off on it and the
# tariff cache rates on the last known version (charging must not depend on PostgreSQL).
POSTGRES_DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

# What a write raises when PostgreSQL is up but refuses the *data* (SQLSTATE classes 22 and 23:
# a NUL in text, a number out of range, a broken constraint) or the client cannot encode a value
# at all.  Retrying the same rows cannot succeed, so the flusher isolates them (dead letters)
# instead of backing off.  Checked before POSTGRES_DOWN, which also covers these.
POSTGRES_REFUSED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValueError, OverflowError,
                    UnicodeError, TypeError)
