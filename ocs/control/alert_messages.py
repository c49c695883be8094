"""What an alert says: one document per outbox row, as a webhook body (signed) or as an e-mail.

Pure (no I/O), so the wording and the signature are tested without a server.  The webhook body is
built from the row alone, never from the clock: a retry sends the same bytes, and a receiver can
drop a repeat by its ``id`` (the outbox id; also the ``X-OCS-Delivery`` header and the mail's
Message-ID).  Amounts are decimal strings in major units, as ``ocsctl`` prints them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from ocs import money

PRICE_TERMS = ("rate", "connect_fee", "first_increment", "next_increment")
_MONEY_TERMS = {"rate", "connect_fee"}
RATE_UNIT = {"voice": "min", "data": "MiB", "sms": "message"}  # what ``rate`` prices (ocs.rating.tariff.PER_UNITS)
UNIT = {"voice": "s", "data": "octets", "sms": "messages"}


@dataclass(frozen=True)
class Alert:
    """One claimed outbox row (see :func:`ocs.store.alerts_db.claim`)."""

    id: int
    event: str
    account_id: str
    channel: str
    target: str
    payload: dict[str, Any]
    attempts: int = 1
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    changes: list[dict[str, Any]] = field(default_factory=list)
    changes_total: int = 0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_record(cls, r: Any) -> Alert:
        return cls(id=r["id"], event=r["event"], account_id=r["account_id"], channel=r["channel"],
                   target=r["target"], payload=json.loads(r["payload"]), attempts=r["attempts"],
                   created_at=r["created_at"], changes=json.loads(r["changes"] or "[]"),
                   changes_total=int(r["total"] or 0), notes=json.loads(r["notes"] or "[]"))


def _amount(value: Any) -> str | None:
    return None if value is None else money.format(int(value))


def _terms(terms: dict[str, Any] | None) -> dict[str, Any] | None:
    if terms is None:
        return None
    return {k: _amount(terms[k]) if k in _MONEY_TERMS else terms[k] for k in PRICE_TERMS}


def _usage_fields(a: Alert) -> dict[str, Any]:
    p = a.payload
    doc = {"session": p["session"], "rating_group": p["rating_group"], "service": p["service"],
           "currency": p["currency"], "time": p["time"], "record": p["record"],
           "balance": _amount(p["balance"]), "charged": _amount(p["charged"]), "used_seconds": p["used_seconds"]}
    if a.event == "low_balance":
        doc["threshold"] = _amount(p["threshold"])
    elif a.event == "credit_limit":
        doc["credit_limit"] = _amount(p["threshold"])
    elif a.event == "long_call":
        doc["threshold_seconds"] = p["threshold"]
    else:
        doc["threshold"] = _amount(p["threshold"])
    return doc


def document(a: Alert) -> dict[str, Any]:
    """The alert as data: the webhook body, and what the mail is written from."""
    doc: dict[str, Any] = {"id": a.id, "event": a.event, "account": a.account_id,
                           "created_at": a.created_at.astimezone(UTC).isoformat()}
    if a.event == "rate_change":
        p = a.payload
        doc |= {"tariff": p["tariff"], "version": p["version"], "previous_version": p["previous_version"],
                "changes_total": a.changes_total, "notes": a.notes,
                "changes": [{**{k: c[k] for k in ("service", "prefix", "destination", "band", "effective_from")},
                             "old": _terms(c["old"]), "new": _terms(c["new"])} for c in a.changes]}
    else:
        doc |= _usage_fields(a)
    return doc


def webhook_body(a: Alert) -> bytes:
    """The exact bytes POSTed (and signed): compact, keys sorted, UTF-8."""
    return json.dumps(document(a), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, body: bytes) -> str:
    """``X-OCS-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the exact body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds % 60 else f"{seconds // 60} min"


def _change_line(c: dict[str, Any]) -> str:
    head = f"{c['prefix']} {c['destination']} ({c['service']}, band {c['band']}"
    head += f", from {c['effective_from']})" if c["effective_from"] else ")"
    old, new = c["old"], c["new"]
    if old is None:
        return (f"  added    {head}: rate {new['rate']} per {RATE_UNIT.get(c['service'], 'unit')},"
                f" connect fee {new['connect_fee']}, increments {new['first_increment']}/{new['next_increment']}"
                f" {UNIT.get(c['service'], 'units')}")
    if new is None:
        return f"  removed  {head} (no longer rated by this tariff)"
    diffs = [f"{k.replace('_', ' ')} {old[k]} -> {new[k]}" for k in PRICE_TERMS if old[k] != new[k]]
    return f"  changed  {head}: {'; '.join(diffs)}"


def text(a: Alert) -> tuple[str, str]:
    """(subject, body) of the mail."""
    d = document(a)
    acct = a.account_id
    if a.event == "rate_change":
        lines = [f"Tariff {d['tariff']}, which account {acct} is rated by, has new prices"
                 f" (version {d['version']}, replacing version {d['previous_version']}).", ""]
        lines += [f"  {n}" for n in d["notes"]]
        lines += [_change_line(c) for c in d["changes"]]
        if d["changes_total"] > len(d["changes"]):
            lines.append(f"  ... and {d['changes_total'] - len(d['changes'])} more changed rows")
        return f"Price change: tariff {d['tariff']}", "\n".join(lines) + "\n"
    cur, when = d["currency"], f"session {d['session']}, {d['time']}"
    if a.event == "low_balance":
        subject = f"Low balance: account {acct} is at {d['balance']} {cur}"
        body = f"The balance of account {acct} fell below {d['threshold']} {cur}: it is {d['balance']} {cur} ({when})."
    elif a.event == "credit_limit":
        subject = f"Credit limit reached: account {acct}"
        body = (f"Account {acct} reached its credit limit of {d['credit_limit']} {cur}: the balance is"
                f" {d['balance']} {cur} ({when}). Calls are refused until it is paid or the limit raised.")
    elif a.event == "long_call":
        subject = f"Long call: account {acct}, {_minutes(d['used_seconds'])}"
        body = (f"A call of account {acct} has lasted {_minutes(d['used_seconds'])}, longer than"
                f" {_minutes(d['threshold_seconds'])} ({when}; charged so far {d['charged']} {cur}).")
    else:
        subject = f"Expensive call: account {acct}, {d['charged']} {cur}"
        body = (f"A call of account {acct} has cost {d['charged']} {cur}, at least {d['threshold']} {cur}"
                f" ({when}; {_minutes(d['used_seconds'])}).")
    return subject, body + "\n"


def email(a: Alert, sender: str, domain: str) -> EmailMessage:
    """The mail for ``a``; its Message-ID names the outbox row (a repeat is recognisable)."""
    subject, body = text(a)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = a.target
    msg["Subject"] = f"[OCS] {subject}"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<ocs-alert-{a.id}@{domain}>"
    msg["X-OCS-Event"] = a.event
    msg.set_content(body)
    return msg
