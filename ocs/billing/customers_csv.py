"""Accounts in bulk: ``ocsctl account import FILE.csv`` / ``account export`` (docs/billing.md, "Customer data").

The columns are the options of ``account create`` / ``account set``, so a file says what the
operator would have typed.  An import is one transaction: every line is checked (each in its own
savepoint, so one bad line does not hide the next), every problem is reported with its line
number, and a single problem rolls the whole file back.  A line whose id exists updates that
account with the cells that are not empty; a new id creates the account.  Importing the same file
again changes nothing, so after a crash between the commit and the Redis copy the operator simply
imports it again.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import asyncpg

from ocs import money
from ocs.billing import customers
from ocs.billing.errors import Invalid, Refused
from ocs.store import accounts_db
from ocs.store.provision import Conn

COLUMNS = ("id", "currency", "tariff", "postpaid", "credit-limit", "name", "email", "address", "tax-rate",
           "payment-terms", "password", "alias")
EXPORTED = tuple(c for c in COLUMNS if c != "password")  # a RADIUS secret does not leave in a file
PROFILE = ("name", "email", "address", "tax-rate", "payment-terms", "credit-limit", "tariff", "password")
BOOLEAN = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
MAX_ERRORS_SHOWN = 50


@dataclass(frozen=True)
class Line:
    number: int  # the file line the record starts on (quoted cells may span lines)
    values: dict[str, str]  # non-empty cells only


class ImportRefused(Refused):
    """Some lines are wrong; ``errors`` has one ``line N: field: reason`` each; nothing was imported."""

    def __init__(self, errors: list[str], lines: int) -> None:
        super().__init__(f"{errors[0]} ({len(errors)} of {lines} lines rejected; nothing imported)")
        self.errors = errors


def parse(data: bytes) -> list[Line]:
    """Split the file into lines of non-empty cells; a bad encoding or header refuses the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Refused(f"not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [c.strip().lower().replace("_", "-") for c in next(reader, [])]
    if not any(header):
        raise Refused("empty file")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise Refused(f"line 1: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    if "id" not in header or len(set(header)) != len(header):
        raise Refused("line 1: the header needs an id column and no column twice")
    lines, start = [], reader.line_num + 1
    for cells in reader:
        if any(c.strip() for c in cells):
            if len(cells) > len(header):
                raise Refused(f"line {start}: {len(cells)} cells for {len(header)} columns")
            lines.append(Line(start, {k: v for k, v in zip(header, cells, strict=False) if v.strip()}))
        start = reader.line_num + 1
    return lines


def _postpaid(raw: str | None) -> bool | None:
    if raw is None:
        return None
    value = BOOLEAN.get(raw.strip().lower())
    if value is None:
        raise Invalid("postpaid", f"true or false: {raw!r}")
    return value


async def _update(conn: Conn, row: asyncpg.Record, values: dict[str, str], profile: customers.Profile) -> None:
    postpaid = _postpaid(values.get("postpaid"))
    if postpaid is not None and postpaid != (row["type"] == "postpaid"):
        raise Invalid("postpaid", f"account {row['id']} is {row['type']}; the type does not change")
    currency = values.get("currency", row["currency"]).strip().upper()
    if currency != row["currency"].strip():
        raise Invalid("currency", f"account {row['id']} is in {row['currency'].strip()}; the currency does not change")
    await customers.update(conn, row["id"], profile)
    for value in values.get("alias", "").split():
        if await accounts_db.alias_owner(conn, value) != row["id"]:
            await customers.add_alias(conn, row["id"], value)


async def _apply(conn: Conn, line: Line) -> bool:
    """Create or update the line's account; True if created."""
    values = line.values
    profile = customers.parse_profile({k: values.get(k) for k in PROFILE})
    row = await accounts_db.get(conn, values["id"])
    if row is not None:
        await _update(conn, row, values, profile)
        return False
    for required in ("currency", "tariff"):
        if required not in values:
            raise Invalid(required, "needed for a new account")
    new = customers.NewAccount(values["id"], values["currency"], values["tariff"],
                               bool(_postpaid(values.get("postpaid"))), tuple(values.get("alias", "").split()),
                               profile)
    await customers.create(conn, new)
    return True


async def _line(conn: Conn, line: Line, seen: dict[str, int]) -> bool:
    if "id" not in line.values:
        raise Invalid("id", "missing")
    first = seen.setdefault(line.values["id"], line.number)
    if first != line.number:
        raise Invalid("id", f"{line.values['id']!r} is already on line {first}")
    try:
        async with conn.transaction():  # a savepoint: this line's failure leaves the others checkable
            return await _apply(conn, line)
    except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
        raise Refused(str(exc).splitlines()[0]) from None


async def import_lines(conn: Conn, lines: list[Line]) -> tuple[list[str], list[str]]:
    """Import every line or none (:class:`ImportRefused`); returns the ids (created, updated)."""
    created: list[str] = []
    updated: list[str] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    async with conn.transaction():
        for line in lines:
            try:
                (created if await _line(conn, line, seen) else updated).append(line.values["id"])
            except Refused as exc:
                errors.append(f"line {line.number}: {exc}")
        if errors:
            raise ImportRefused(errors, len(lines))
    return created, updated


async def export_rows(conn: Conn) -> list[dict[str, str]]:
    """Every account with the :data:`EXPORTED` columns as text (aliases blank-separated), by id."""
    rows = await conn.fetch("SELECT a.*, (SELECT string_agg(value, ' ' ORDER BY value) FROM aliases"
                            " WHERE account_id = a.id) AS alias FROM accounts a ORDER BY a.id")
    return [dict(zip(EXPORTED, (
        r["id"], r["currency"].strip(), r["tariff"], "true" if r["type"] == "postpaid" else "false",
        money.format(int(r["credit_limit"])), r["name"], r["email"], r["address"], str(r["tax_rate"]),
        str(r["payment_terms_days"]), r["alias"] or ""), strict=True)) for r in rows]


def to_csv(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, EXPORTED, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()
