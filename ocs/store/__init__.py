"""Stores: Redis (money, sessions, usage streams) and PostgreSQL (ledger, tariffs, records)."""

import asyncpg

# What asyncpg raises when PostgreSQL is away or failing: the flusher backs off on it and the
# tariff cache rates on the last known version (charging must not depend on PostgreSQL).
POSTGRES_DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
