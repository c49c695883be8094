"""How an alert leaves: e-mail through ``[smtp]`` (aiosmtplib) and a signed webhook POST (httpx).

A channel's ``send`` returns only once the server accepted the alert (SMTP: the DATA was answered
250; HTTP: a 2xx status), and raises :class:`DeliveryError` for anything else, so the outbox
marks a row delivered exactly when it was.  Each send is bounded as a whole (the libraries'
timeouts are per operation), which bounds the lease the worker holds on the row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import httpx

from ocs.config import AlertsConfig, SmtpConfig
from ocs.control.alert_messages import Alert, email, signature, webhook_body

MailRenderer = Callable[[Alert, str, str], EmailMessage]  # (row, sender, domain) -> the mail


class DeliveryError(Exception):
    """The server did not accept the alert (or could not be reached); retried later."""


class Channel(Protocol):
    timeout: float

    async def send(self, alert: Alert) -> None: ...

    async def close(self) -> None: ...


class MailChannel:
    """One SMTP session per mail: alerts are rare, and a kept connection would only go stale.

    ``renderers`` write the mail of outbox rows that are not alerts (the invoices ``ocsctl invoice
    send`` queues, docs/billing.md), by event; every other row is an alert (:func:`email`).
    """

    def __init__(self, smtp: SmtpConfig, node_name: str, renderers: Mapping[str, MailRenderer] | None = None) -> None:
        self.smtp = smtp
        self.renderers = dict(renderers or {})
        self.sender = smtp.from_ or f"ocs@{node_name}"
        self.domain = self.sender.rpartition("@")[2] or node_name  # the same on every node: one Message-ID
        self.timeout = float(smtp.timeout_seconds)

    async def send(self, alert: Alert) -> None:
        msg = self.renderers.get(alert.event, email)(alert, self.sender, self.domain)
        s = self.smtp
        try:
            async with asyncio.timeout(self.timeout):
                await aiosmtplib.send(msg, hostname=s.host, port=s.port, username=s.username or None,
                                      password=s.password or None, start_tls=s.starttls, timeout=self.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"smtp {s.host}:{s.port}: {type(exc).__name__}: {exc}".splitlines()[0]) from None

    async def close(self) -> None:
        return None


class WebhookChannel:
    """JSON POST signed with ``alerts.webhook_secret``; redirects are not followed (the URL is the contract)."""

    def __init__(self, alerts: AlertsConfig) -> None:
        self.secret = alerts.webhook_secret
        self.timeout = float(alerts.webhook_timeout_seconds)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._client

    async def send(self, alert: Alert) -> None:
        if not self.secret:  # never unsigned: the alert waits in the outbox until a secret is configured
            raise DeliveryError("alerts.webhook_secret is empty: webhook alerts are not sent unsigned")
        body = webhook_body(alert)
        headers = {"Content-Type": "application/json", "User-Agent": "ocsd-alerts",
                   "X-OCS-Signature": signature(self.secret, body), "X-OCS-Event": alert.event,
                   "X-OCS-Delivery": str(alert.id)}
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self._http().post(alert.target, content=body, headers=headers)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            raise DeliveryError(f"webhook: {type(exc).__name__}: {exc}".splitlines()[0]) from None
        if not 200 <= resp.status_code < 300:
            raise DeliveryError(f"webhook: HTTP {resp.status_code} {resp.reason_phrase}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
