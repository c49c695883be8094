"""The alert outbox delivered through a real SMTP server and a real HTTP receiver (docs/alerts.md).

One mail and one POST per event and channel: also when the server was down at the event (retried
with back-off once it is up), also with two workers on one outbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from email.message import EmailMessage

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs import config
from ocs.charging import Charging
from ocs.control.alert_channels import MailChannel
from ocs.control.alert_messages import Alert
from ocs.control.alerts_delivery import AlertDelivery
from ocs.metrics import Metrics
from ocs.rating.tariff import RateRow
from ocs.store import alerts_db, tariffs
from ocs.store.alerts_db import Settings
from ocs.store.flush import Flusher
from tests.support.alert_sinks import HttpSink, SmtpSink
from tests.support.alerts import pg_account
from tests.support.balance import provision, voice
from tests.support.daemon import free_port

pytestmark = pytest.mark.integration

SECRET = "s3cret"


def alert_cfg(pg_dsn: str, smtp_port: int, **alerts: object) -> config.Config:
    return config.from_mapping({
        "postgres": {"dsn": pg_dsn}, "node": {"name": "t1"},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "from": "ocs@example.net", "timeout_seconds": 5},
        "alerts": {"webhook_secret": SECRET, "retry_base_seconds": 1, "retry_max_seconds": 2,
                   "webhook_timeout_seconds": 5, **alerts}}, env={})


@pytest.fixture
async def pool(pg_dsn: str, pg: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink(free_port())  # not started: each test decides when the server is up
    yield sink
    await sink.stop()


@pytest.fixture
async def http() -> AsyncIterator[HttpSink]:
    sink = HttpSink(free_port())
    await sink.start()
    yield sink
    await sink.stop()


def _usage_payload(balance: int = 860_000) -> str:
    return json.dumps({"record": "s00:1", "session": "s1", "rating_group": 0, "service": "voice", "balance": balance,
                       "amount": 60_000, "used_seconds": 120, "charged": 140_000, "currency": "EUR",
                       "time": "2026-11-23T10:02:00+00:00", "threshold": 900_000})


async def _queue(pg: asyncpg.Connection, n: int, channel: str = "email", target: str = "ops@example.com") -> None:
    await pg.executemany(
        "INSERT INTO alert_outbox (event, account_id, subject, channel, target, payload)"
        " VALUES ('low_balance', 'alice', $1, $2, $3, $4::jsonb)",
        [(f"s00:{i}", channel, target, _usage_payload()) for i in range(n)])


def _verify(req_body: bytes, header: str) -> bool:
    """What a receiver does (docs/alerts.md): HMAC the raw body, compare in constant time."""
    expected = "sha256=" + hmac.new(SECRET.encode(), req_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


async def test_event_during_smtp_outage_is_mailed_once_after_it_is_back(
        core: Charging, redis_client: aioredis.Redis, flusher: Flusher, pg: asyncpg.Connection,
        pool: asyncpg.Pool, pg_dsn: str, smtp: SmtpSink, http: HttpSink) -> None:
    await provision(redis_client, core.keys, "alice", 1_000_000)
    await pg_account(pg, "alice", low_balance=900_000, email="alice@example.com", webhook=http.url())
    await core.initiate(voice("s1", 0))
    await core.update(voice("s1", 1, used=120))  # 0.14: 0.86, below 0.90
    await flusher.flush_all()
    metrics = Metrics()
    worker = AlertDelivery(alert_cfg(pg_dsn, smtp.port), pool, metrics)

    assert await worker.deliver_once() == 2  # SMTP down: the mail fails, the webhook goes
    row = await pg.fetchrow("SELECT attempts, last_error, next_attempt_at > now() AS later, delivered_at"
                            " FROM alert_outbox WHERE channel = 'email'")
    assert (row["attempts"], row["later"], row["delivered_at"]) == (1, True, None)
    assert "smtp 127.0.0.1" in row["last_error"]
    assert metrics.alert_outbox._value.get() == 1
    assert await worker.deliver_once() == 0  # backing off: not due yet

    await smtp.start()
    await asyncio.sleep(1.2)  # retry_base_seconds = 1
    assert await worker.deliver_once() == 1
    await asyncio.sleep(2.2)
    assert await worker.deliver_once() == 0  # delivered is delivered: never sent again
    assert len(smtp.messages) == 1 and len(http.accepted()) == 1
    mail = smtp.messages[0]
    outbox_id = await pg.fetchval("SELECT id FROM alert_outbox WHERE channel = 'email'")
    assert (mail["To"], mail["From"], mail["Message-ID"]) == (
        "alice@example.com", "ocs@example.net", f"<ocs-alert-{outbox_id}@example.net>")
    assert mail["Subject"] == "[OCS] Low balance: account alice is at 0.86 EUR"
    assert "fell below 0.90 EUR" in mail.get_content()
    assert smtp.recipients == [["alice@example.com"]]
    child = metrics.child
    assert child(metrics.alerts, "low_balance", "email", "retry")._value.get() == 1
    assert child(metrics.alerts, "low_balance", "email", "delivered")._value.get() == 1
    assert child(metrics.alerts, "low_balance", "webhook", "delivered")._value.get() == 1
    assert metrics.alert_outbox._value.get() == 0
    assert await pg.fetchval("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL") == 0


async def test_webhook_is_signed_and_retried_until_accepted(pg: asyncpg.Connection, pool: asyncpg.Pool,
                                                            pg_dsn: str, http: HttpSink) -> None:
    await _queue(pg, 1, "webhook", http.url("/ocs"))
    worker = AlertDelivery(alert_cfg(pg_dsn, free_port()), pool, Metrics())
    http.status = 503
    assert await worker.deliver_once() == 1
    assert "HTTP 503" in await pg.fetchval("SELECT last_error FROM alert_outbox")
    http.status = 200
    await asyncio.sleep(1.2)
    assert await worker.deliver_once() == 1
    await asyncio.sleep(2.2)
    assert await worker.deliver_once() == 0
    assert [r.status for r in http.requests] == [503, 200]
    first, second = http.requests
    assert first.body == second.body  # a retry sends the same bytes
    req = http.accepted()[0]
    assert req.path == "/ocs" and req.headers["content-type"] == "application/json"
    assert _verify(req.body, req.headers["x-ocs-signature"])
    assert not _verify(req.body + b" ", req.headers["x-ocs-signature"])
    doc = json.loads(req.body)
    assert doc["id"] == int(req.headers["x-ocs-delivery"])
    assert {k: doc[k] for k in ("event", "account", "balance", "threshold", "currency", "session")} == {
        "event": "low_balance", "account": "alice", "balance": "0.86", "threshold": "0.90", "currency": "EUR",
        "session": "s1"}


async def test_no_webhook_secret_means_the_alert_waits(pg: asyncpg.Connection, pool: asyncpg.Pool, pg_dsn: str,
                                                       http: HttpSink) -> None:
    await _queue(pg, 1, "webhook", http.url())
    worker = AlertDelivery(alert_cfg(pg_dsn, free_port(), webhook_secret=""), pool, Metrics())
    assert await worker.deliver_once() == 1
    assert http.requests == []
    assert "webhook_secret is empty" in await pg.fetchval("SELECT last_error FROM alert_outbox")


async def test_two_workers_deliver_each_alert_once(pg: asyncpg.Connection, pool: asyncpg.Pool, pg_dsn: str,
                                                   smtp: SmtpSink) -> None:
    await smtp.start()
    await _queue(pg, 45)
    cfg = alert_cfg(pg_dsn, smtp.port)
    a, b = AlertDelivery(cfg, pool, Metrics()), AlertDelivery(cfg, pool, Metrics())
    leased = 0
    for _ in range(5):
        leased += sum(await asyncio.gather(a.deliver_once(), b.deliver_once()))
    assert leased == 45
    ids = [m["Message-ID"] for m in smtp.messages]
    assert len(ids) == 45 and len(set(ids)) == 45


async def test_given_up_delivery_is_kept_and_requeued(pg: asyncpg.Connection, pool: asyncpg.Pool, pg_dsn: str,
                                                      smtp: SmtpSink) -> None:
    await _queue(pg, 1)
    metrics = Metrics()
    worker = AlertDelivery(alert_cfg(pg_dsn, smtp.port, max_attempts=1), pool, metrics)
    assert await worker.deliver_once() == 1
    assert await pg.fetchval("SELECT failed_at IS NOT NULL FROM alert_outbox")
    assert metrics.child(metrics.alerts, "low_balance", "email", "failed")._value.get() == 1
    await asyncio.sleep(1.2)
    assert await worker.deliver_once() == 0  # given up: not retried by itself
    await smtp.start()
    assert await alerts_db.requeue(pg, None) == 1
    assert await worker.deliver_once() == 1
    assert len(smtp.messages) == 1


async def test_rate_change_mail_lists_what_changed(pg: asyncpg.Connection, pool: asyncpg.Pool, pg_dsn: str,
                                                   smtp: SmtpSink) -> None:
    await smtp.start()
    v1 = [RateRow("49", "Germany", 60_000, 20_000, 30, 6, line=2), RateRow("44", "United Kingdom", 30_000, line=3)]
    await tariffs.import_version(pg, "t", "EUR", "UTC", v1, [])
    await pg.execute("INSERT INTO accounts (id, type, currency, tariff) VALUES ('a1', 'prepaid', 'EUR', 't')")
    await alerts_db.put_settings(pg, Settings("a1", email="a1@example.com"))
    v2 = [RateRow("49", "Germany", 70_000, 20_000, 30, 6, line=2), RateRow("33", "France", 50_000, line=3)]
    await tariffs.import_version(pg, "t", "EUR", "UTC", v2, [])
    assert await AlertDelivery(alert_cfg(pg_dsn, smtp.port), pool, Metrics()).deliver_once() == 1
    (mail,) = smtp.messages
    assert mail["Subject"] == "[OCS] Price change: tariff t"
    body = mail.get_content()
    assert "version 2, replacing version 1" in body
    assert "changed  49 Germany (voice, band any): rate 0.06 -> 0.07" in body
    assert "added    33 France (voice, band any): rate 0.05 per min" in body
    assert "removed  44 United Kingdom" in body


async def test_mail_of_rows_that_are_not_alerts_comes_from_their_renderer(smtp: SmtpSink) -> None:
    """Other kinds of outbox rows (invoices, docs/billing.md) bring their own mail; the channel sends it."""
    await smtp.start()

    def invoice(a: Alert, sender: str, domain: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, a.target, f"Invoice {a.payload['number']}"
        msg["Message-ID"] = f"<ocs-invoice-{a.id}@{domain}>"
        msg.set_content("attached")
        return msg

    channel = MailChannel(alert_cfg("postgresql://x", smtp.port).smtp, "t1", {"invoice": invoice})
    await channel.send(Alert(id=5, event="invoice", account_id="a1", channel="email", target="a1@example.com",
                             payload={"number": "INV-2026-000001"}))
    await channel.send(Alert(id=6, event="low_balance", account_id="a1", channel="email", target="a1@example.com",
                             payload=json.loads(_usage_payload())))
    assert [m["Subject"] for m in smtp.messages] == ["Invoice INV-2026-000001",
                                                     "[OCS] Low balance: account a1 is at 0.86 EUR"]
    assert smtp.messages[0]["Message-ID"] == "<ocs-invoice-5@example.net>"
