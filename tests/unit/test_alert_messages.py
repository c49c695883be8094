"""What an alert says, as mail and as a signed webhook body (docs/alerts.md); pure, no server."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from ocs.control.alert_messages import Alert, document, email, signature, text, webhook_body

AT = datetime(2026, 11, 23, 10, 2, tzinfo=UTC)


def usage_alert(event: str, threshold: int, **over: object) -> Alert:
    payload = {"record": "s03:17", "session": "sess-1", "rating_group": 0, "service": "voice", "balance": 860_000,
               "amount": 60_000, "used_seconds": 3725, "charged": 5_200_000, "currency": "EUR",
               "time": "2026-11-23T10:02:00+00:00", "threshold": threshold, **over}
    return Alert(id=42, event=event, account_id="alice", channel="email", target="a@example.com", payload=payload,
                 created_at=AT)


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = webhook_body(usage_alert("low_balance", 900_000))
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature("k", body) != signature("k", body + b"\n") != signature("other", body)


def test_webhook_body_is_the_document_compact_and_stable() -> None:
    a = usage_alert("low_balance", 900_000)
    body = webhook_body(a)
    assert body == webhook_body(a) and b" " not in body  # the same bytes on every retry
    doc = json.loads(body)
    assert doc == document(a) and list(doc) == sorted(doc)
    assert {k: doc[k] for k in ("id", "event", "account", "balance", "threshold", "created_at")} == {
        "id": 42, "event": "low_balance", "account": "alice", "balance": "0.86", "threshold": "0.90",
        "created_at": "2026-11-23T10:02:00+00:00"}


@pytest.mark.parametrize(("event", "threshold", "subject", "says"), [
    ("low_balance", 900_000, "Low balance: account alice is at 0.86 EUR", "fell below 0.90 EUR"),
    ("credit_limit", 500_000, "Credit limit reached: account alice", "credit limit of 0.50 EUR"),
    ("long_call", 3600, "Long call: account alice, 62 min 05 s", "longer than 60 min"),
    ("expensive_call", 5_000_000, "Expensive call: account alice, 5.20 EUR", "at least 5.00 EUR"),
])
def test_mail_text_per_event(event: str, threshold: int, subject: str, says: str) -> None:
    got_subject, body = text(usage_alert(event, threshold))
    assert got_subject == subject
    assert says in body and "sess-1" in body


def test_rate_change_lists_changes_and_what_is_left_out() -> None:
    changes = [
        {"service": "voice", "prefix": "1", "destination": "USA", "band": "any", "effective_from": None, "old": None,
         "new": {"rate": 10_000, "connect_fee": 0, "first_increment": 60, "next_increment": 60}},
        {"service": "data", "prefix": "10", "destination": "Data", "band": "any",
         "effective_from": "2027-01-01T00:00:00+00:00",
         "old": {"rate": 1_000_000, "connect_fee": 0, "first_increment": 1024, "next_increment": 1024},
         "new": {"rate": 2_000_000, "connect_fee": 0, "first_increment": 1024, "next_increment": 1024}},
    ]
    a = Alert(id=7, event="rate_change", account_id="a1", channel="email", target="a@example.com",
              payload={"tariff": "t", "version": 3, "previous_version": 2, "currency": "EUR"}, created_at=AT,
              changes=changes, changes_total=205, notes=["time bands changed"])
    subject, body = text(a)
    assert subject == "Price change: tariff t"
    assert "added    1 USA (voice, band any): rate 0.01 per min, connect fee 0.00, increments 60/60 s" in body
    assert "changed  10 Data (data, band any, from 2027-01-01T00:00:00+00:00): rate 1.00 -> 2.00" in body
    assert "time bands changed" in body and "... and 203 more changed rows" in body
    assert document(a)["changes"][1]["new"]["rate"] == "2.00"


def test_email_headers_name_the_outbox_row() -> None:
    msg = email(usage_alert("low_balance", 900_000), "ocs@example.net", "example.net")
    assert (msg["From"], msg["To"], msg["Message-ID"], msg["X-OCS-Event"]) == (
        "ocs@example.net", "a@example.com", "<ocs-alert-42@example.net>", "low_balance")
    assert msg["Subject"].startswith("[OCS] Low balance")
