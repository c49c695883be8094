#!/usr/bin/env bash
# Setup-and-run: install what is needed, migrate, load the demo tariff and
# accounts, and run ocsd in the foreground (Ctrl-C / SIGTERM stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
export OCS_CONFIG="${OCS_CONFIG:-config/ocs.toml}"
# The shipped config points at database "ocs": create it when missing.
dsn="${OCS_POSTGRES_DSN:-$(.venv/bin/python -c 'from ocs import config; print(config.load().postgres.dsn)')}"
.venv/bin/python - "$dsn" <<'PY'
import asyncio, sys
import asyncpg

async def main(dsn: str) -> None:
    base, _, name = dsn.rpartition("/")
    name = name.split("?")[0]
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(base + "/postgres")
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        print(f"run-demo: created database {name}")
    else:
        await conn.close()

asyncio.run(main(sys.argv[1]))
PY
./scripts/load-demo.sh
# the REST API, the dashboard (/ui) and self-care (/my) on 127.0.0.1:8080 unless told otherwise
export OCS_API_LISTEN="${OCS_API_LISTEN:-127.0.0.1:8080}"
exec .venv/bin/ocsd
