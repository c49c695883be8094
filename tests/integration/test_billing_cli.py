"""ocsctl's customer data, products and fees as an operator uses them (docs/billing.md).

Exit codes, one-line errors naming the field, JSON documents, whole-file-or-nothing CSV imports,
fees posted once however many runs (also two at once) and the money proof (reconcile) after them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs import config
from ocs.billing import customers
from ocs.store.keys import Keys

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
SPEC_KEYS = ["id", "type", "currency", "tariff", "status", "balance", "reserved", "available", "credit_limit",
             "aliases"]
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
async def clean_products(pg: asyncpg.Connection) -> AsyncIterator[None]:
    """Products are not below accounts (the conftest truncation does not reach them)."""
    yield
    await pg.execute("TRUNCATE products, subscriptions, fees, billing_daily_runs CASCADE")


@pytest.fixture
async def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection, redis_client: aioredis.Redis,
              clean_products: None) -> tuple[Run, Path]:
    """ocsctl on this test's database and key prefix; tariffs t, t2 (Europe/Berlin), usd and account a1 made directly."""
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=60)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    await pg.executemany("INSERT INTO tariffs(name, currency, timezone, current_version) VALUES ($1, $2, $3, 1)",
                         [("t", "EUR", "UTC"), ("t2", "EUR", "Europe/Berlin"), ("usd", "USD", "UTC")])
    await customers.create(pg, customers.NewAccount("a1", "EUR", "t", aliases=("4915100",)))
    await customers.sync(pg, redis_client, Keys(key_prefix, config.ChargingConfig().shards), "a1")
    return run, tmp_path


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def _show(run: Run, account: str) -> dict:  # type: ignore[type-arg]
    return json.loads(run("account", "show", account, "--json").stdout)  # type: ignore[no-any-return]


def test_customer_data_at_create_and_set(ctl: tuple[Run, Path]) -> None:
    run, _ = ctl
    run("account", "create", "c1", "--currency", "EUR", "--tariff", "t", "--postpaid", "--credit-limit", "50",
        "--name", "ACME GmbH", "--email", "billing@acme.example", "--address", "Main St 1\n10115 Berlin",
        "--tax-rate", "19")
    doc = _show(run, "c1")
    assert list(doc)[:10] == SPEC_KEYS  # the provisioning keys first, unchanged
    assert {k: doc[k] for k in ("name", "email", "address", "tax_rate", "payment_terms", "reseller")} == {
        "name": "ACME GmbH", "email": "billing@acme.example", "address": "Main St 1\n10115 Berlin",
        "tax_rate": "19.0000", "payment_terms": 14, "reseller": None}
    out = json.loads(run("account", "set", "c1", "--tax-rate", "7.5", "--payment-terms", "30", "--credit-limit",
                         "80", "--tariff", "t2", "--json").stdout)
    assert out["changed"] == ["credit-limit", "payment-terms", "tariff", "tax-rate"]
    assert (out["tax_rate"], out["payment_terms"], out["credit_limit"], out["tariff"]) == ("7.5000", 30, "80.00", "t2")
    assert out["name"] == "ACME GmbH"  # untouched


async def test_set_resyncs_redis(ctl: tuple[Run, Path], key_prefix: str, redis_client: aioredis.Redis) -> None:
    run, _ = ctl
    run("account", "create", "p1", "--currency", "EUR", "--tariff", "t", "--postpaid")
    run("account", "set", "p1", "--credit-limit", "12.5", "--tariff", "t2", "--password", "s3cret")
    key = Keys(key_prefix, config.ChargingConfig().shards).account("p1")
    assert await redis_client.hmget(key, "cl", "tariff", "pw") == [b"12500000", b"t2", b"s3cret"]
    run("account", "set", "p1", "--password", "")
    assert await redis_client.hget(key, "pw") is None


SET_REFUSALS = [
    (("--email", "not-an-address"), "--email: not an e-mail address"),
    (("--tax-rate", "-1"), "--tax-rate: must not be negative"),
    (("--tax-rate", "19.12345"), "--tax-rate: not a percentage"),
    (("--tariff", "nope"), "--tariff: unknown tariff 'nope'"),
    (("--credit-limit", "5"), "--credit-limit: needs a postpaid account"),
    (("--credit-limit", "-5"), "--credit-limit: negative"),
    (("--payment-terms", "400"), "--payment-terms: not a number of days"),
    (("--name", "tab\there"), "--name: control characters"),
    (("--name", "ok", "--email", "x@y"), "--email: not an e-mail address"),  # nothing of a refused set is applied
]


def test_set_refusals_name_the_field_and_change_nothing(ctl: tuple[Run, Path]) -> None:
    run, _ = ctl
    before = _show(run, "a1")
    for args, needle in SET_REFUSALS:
        assert needle in _one_line(run("account", "set", "a1", *args, ok=1)), args
    assert _show(run, "a1") == before


def test_set_tariff_in_another_currency_is_accepted(ctl: tuple[Run, Path]) -> None:
    """docs/wholesale.md (FX, Accounts): a tariff in another currency is converted, no longer refused."""
    run, _ = ctl
    run("account", "set", "a1", "--tariff", "usd")
    shown = _show(run, "a1")
    assert shown["tariff"] == "usd" and shown["currency"] == "EUR", shown


def test_set_usage_and_unknown_account(ctl: tuple[Run, Path]) -> None:
    run, _ = ctl
    assert "nothing to change" in _one_line(run("account", "set", "a1", ok=2))
    assert "unknown account 'zz'" in _one_line(run("account", "set", "zz", "--name", "x", ok=1))
    assert "--email: not an e-mail" in _one_line(run("account", "create", "c9", "--currency", "EUR", "--tariff", "t",
                                                     "--email", "x@", ok=1))
    assert "unknown account" in _one_line(run("account", "show", "c9", ok=1))


async def test_account_list_json(ctl: tuple[Run, Path], pg: asyncpg.Connection) -> None:
    run, _ = ctl
    run("account", "create", "b2", "--currency", "EUR", "--tariff", "t", "--name", "Bee")
    run("account", "create", "b3", "--currency", "EUR", "--tariff", "t")
    run("account", "block", "b3")
    await pg.execute("UPDATE accounts SET reseller = 'r1' WHERE id IN ('a1', 'b3')")
    doc = json.loads(run("account", "list", "--json").stdout)
    assert [a["id"] for a in doc["accounts"]] == ["a1", "b2", "b3"] and doc["count"] == 3
    assert doc["accounts"][1]["name"] == "Bee" and doc["accounts"][1]["status"] == "active"
    assert [a["id"] for a in json.loads(run("account", "list", "--status", "blocked", "--json").stdout)["accounts"]] \
        == ["b3"]
    assert [a["id"] for a in json.loads(run("account", "list", "--reseller", "r1", "--json").stdout)["accounts"]] \
        == ["a1", "b3"]
    assert json.loads(run("account", "list", "--reseller", "r1", "--status", "active", "--json").stdout)["count"] == 1
    run("account", "list", "--status", "gone", ok=2)


def test_import_creates_updates_and_export_round_trips(ctl: tuple[Run, Path]) -> None:
    run, tmp = ctl
    (tmp / "in.csv").write_text(
        "id,currency,tariff,postpaid,credit-limit,name,email,address,tax-rate,payment-terms,password,alias\n"
        "n1,EUR,t,true,100,New One,n1@example.com,\"Line 1\nLine 2\",19,30,pw1,4917001 4917002\n"
        "n2,EUR,t2,,,,,,,,,\n"
        "a1,,,,,Renamed,,,,,,4915100 4915199\n")
    doc = json.loads(run("account", "import", str(tmp / "in.csv"), "--json").stdout)
    assert (doc["created"], doc["updated"], doc["lines"]) == (["n1", "n2"], ["a1"], 3)
    n1 = _show(run, "n1")
    assert (n1["type"], n1["credit_limit"], n1["address"], n1["tax_rate"], n1["aliases"]) == (
        "postpaid", "100.00", "Line 1\nLine 2", "19.0000", ["4917001", "4917002"])
    assert _show(run, "a1")["name"] == "Renamed" and _show(run, "a1")["aliases"] == ["4915100", "4915199"]
    out = run("account", "export").stdout
    assert out.splitlines()[0] == "id,currency,tariff,postpaid,credit-limit,name,email,address,tax-rate," \
                                  "payment-terms,alias"
    (tmp / "again.csv").write_text(out)
    run("account", "export", "-o", str(tmp / "file.csv"))
    assert (tmp / "file.csv").read_text() == out
    before = [_show(run, a) for a in ("a1", "n1", "n2")]
    again = json.loads(run("account", "import", str(tmp / "again.csv"), "--json").stdout)
    assert again["created"] == [] and again["updated"] == ["a1", "n1", "n2"]
    assert [_show(run, a) for a in ("a1", "n1", "n2")] == before


def test_import_errors_have_line_numbers_and_change_nothing(ctl: tuple[Run, Path]) -> None:
    run, tmp = ctl
    (tmp / "bad.csv").write_text(
        "id,currency,tariff,email,tax-rate,alias\n"
        "ok1,EUR,t,ok@example.com,19,4917777\n"   # line 2: fine alone
        "ok2,EUR,t,broken,,\n"                    # 3: bad e-mail
        "\n"                                      # 4: blank, skipped
        "ok3,EUR,nope,,,\n"                       # 5: unknown tariff
        "a1,,,,-3,\n"                             # 6: negative tax rate on an existing account
        "ok4,EUR,t,,,4915100\n"                   # 7: alias of a1
        "ok1,EUR,t,,,\n")                         # 8: id twice
    before = _show(run, "a1")
    res = run("account", "import", str(tmp / "bad.csv"), ok=1)
    err = res.stderr
    for needle in ("line 3: email: not an e-mail address", "line 5: tariff: unknown tariff 'nope'",
                   "line 6: tax-rate: must not be negative", "line 7: alias '4915100' already belongs",
                   "line 8: id: 'ok1' is already on line 2", "5 of 6 lines rejected; nothing imported"):
        assert needle in err, err
    assert "line 2:" not in err
    assert json.loads(run("account", "list", "--json").stdout)["count"] == 1
    assert _show(run, "a1") == before


@pytest.mark.parametrize(("content", "needle"), [
    (b"", "empty file"),
    (b"id,colour\nx,red\n", "line 1: unknown column 'colour'"),
    (b"name,email\nx,y@z.de\n", "needs an id column"),
    (b"id,name\nx,\xe9\n", "not UTF-8"),
    (b"id,name\nnew,N\n", "line 2: currency: needed for a new account"),
    (b"id,postpaid\na1,maybe\n", "line 2: postpaid: true or false"),
    (b"id,postpaid\na1,yes\n", "line 2: postpaid: account a1 is prepaid"),
])
def test_bad_import_files(ctl: tuple[Run, Path], content: bytes, needle: str) -> None:
    run, tmp = ctl
    (tmp / "f.csv").write_bytes(content)
    assert needle in run("account", "import", str(tmp / "f.csv"), ok=1).stderr


def test_products_and_subscriptions(ctl: tuple[Run, Path]) -> None:
    run, _ = ctl
    doc = json.loads(run("product", "create", "line", "--amount", "10", "--currency", "eur", "--period", "monthly",
                         "--description", "Line rental", "--json").stdout)
    assert doc == {"name": "line", "amount": "10.00", "currency": "EUR", "period": "monthly",
                   "description": "Line rental"}
    assert "already exists" in _one_line(run("product", "create", "line", "--amount", "1", "--currency", "EUR",
                                             "--period", "once", ok=1))
    assert "--amount: negative" in _one_line(run("product", "create", "x", "--amount", "-1", "--currency", "EUR",
                                                 "--period", "once", ok=1))
    run("product", "create", "x", "--amount", "1", "--currency", "EUR", "--period", "yearly", ok=2)
    run("product", "create", "usdline", "--amount", "10", "--currency", "USD", "--period", "monthly")
    assert "one currency per account" in _one_line(run("subscribe", "a1", "usdline", ok=1))
    assert "unknown product" in _one_line(run("subscribe", "a1", "nope", ok=1))
    assert "unknown account" in _one_line(run("subscribe", "zz", "line", ok=1))
    sub = json.loads(run("subscribe", "a1", "line", "--from", "2026-03-15", "--quantity", "2", "--json").stdout)
    assert (sub["from"], sub["until"], sub["quantity"]) == ("2026-03-15", None, 2)
    assert "already subscribes" in _one_line(run("subscribe", "a1", "line", "--from", "2026-05-01", ok=1))
    run("subscribe", "a1", "line", "--from", "2026-13-01", ok=2)
    end = json.loads(run("unsubscribe", "a1", "line", "--at", "2026-06-10", "--json").stdout)
    assert (end["until"], end["last_day"]) == ("2026-06-10", "2026-06-09")
    assert "already ends on 2026-06-10" in _one_line(run("unsubscribe", "a1", "line", "--at", "2026-06-01", ok=1))
    run("subscribe", "a1", "line", "--from", "2026-06-10")  # back to back: no overlap
    assert len(json.loads(run("subscription", "list", "--account", "a1", "--json").stdout)["subscriptions"]) == 2


def test_fees_run_posts_once_and_reconcile_holds(ctl: tuple[Run, Path]) -> None:
    run, _ = ctl
    run("topup", "a1", "100", "--reference", "t1")
    run("product", "create", "line", "--amount", "10", "--currency", "EUR", "--period", "monthly")
    run("product", "create", "setup", "--amount", "25", "--currency", "EUR", "--period", "once")
    run("subscribe", "a1", "line", "--from", "2026-03-15")
    run("subscribe", "a1", "setup", "--from", "2026-03-15")
    assert json.loads(run("fees", "run", "--at", "2026-03-14", "--json").stdout)["count"] == 0
    doc = json.loads(run("fees", "run", "--at", "2026-04-01", "--json").stdout)
    assert sorted((p["product"], p["period"], p["amount"]) for p in doc["posted"]) == [
        ("line", "2026-03-01", "5.483871"), ("line", "2026-04-01", "10.00"), ("setup", "2026-03-15", "25.00")]
    assert json.loads(run("fees", "run", "--at", "2026-04-01", "--json").stdout)["count"] == 0
    assert _show(run, "a1")["balance"] == "59.516129"  # 100 - 5.483871 - 10 - 25
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0
    listed = json.loads(run("fees", "list", "--account", "a1", "--json").stdout)["fees"]
    assert len(listed) == 3 and all(f["currency"] == "EUR" for f in listed)


def test_two_fee_runs_at_once_post_each_fee_once(ctl: tuple[Run, Path], tmp_path: Path) -> None:
    run, _ = ctl
    run("product", "create", "line", "--amount", "3", "--currency", "EUR", "--period", "monthly")
    accounts = [f"m{i}" for i in range(4)]
    for acct in accounts:
        run("account", "create", acct, "--currency", "EUR", "--tariff", "t", "--postpaid")
        run("subscribe", acct, "line", "--from", "2025-01-01")
    cfg = tmp_path / "ocs.toml"
    procs = [subprocess.Popen([str(BIN), "--config", str(cfg), "fees", "run", "--at", "2026-12-31", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    posted = [(f["account"], f["period"]) for out, _ in outs for f in json.loads(out)["posted"]]
    assert len(posted) == len(set(posted)) == 4 * 24  # 24 months each, once
    for acct in accounts:
        assert _show(run, acct)["balance"] == "-72.00"
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0


def test_unsubscribe_stops_fees_and_gives_back_unused_days(ctl: tuple[Run, Path]) -> None:
    run, _ = ctl
    run("topup", "a1", "100", "--reference", "t1")
    run("product", "create", "line", "--amount", "31", "--currency", "EUR", "--period", "monthly")
    run("subscribe", "a1", "line", "--from", "2026-01-01")
    assert json.loads(run("fees", "run", "--at", "2026-03-01", "--json").stdout)["count"] == 3  # Jan, Feb, Mar
    run("unsubscribe", "a1", "line", "--at", "2026-03-11")  # active 1..10 March: 10 of 31 days
    doc = json.loads(run("fees", "run", "--at", "2026-12-01", "--json").stdout)
    assert [(p["period"], p["kind"], p["amount"]) for p in doc["posted"]] == [("2026-03-01", "correction", "-21.00")]
    assert json.loads(run("fees", "run", "--at", "2027-01-01", "--json").stdout)["count"] == 0
    assert _show(run, "a1")["balance"] == "28.00"  # 100 - 31 (Jan) - 31 (Feb: a whole month) - 10 (10/31 of Mar)
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0
