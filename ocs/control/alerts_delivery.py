"""The alert outbox's delivery worker: due rows -> e-mail / webhook, each delivered once.

Runs as a supervised task on every ocsd node (``AlertDelivery(cfg, pool, metrics).run``).  Nodes
share the outbox without coordination: a round leases due rows with ``FOR UPDATE SKIP LOCKED``
(:func:`ocs.store.alerts_db.claim`), which pushes their next attempt past the longest a send can
take, so no other node takes them meanwhile, and no lock or connection is held while sending.

- accepted by the server -> ``delivered_at`` (once; only then);
- anything else -> ``attempts``, ``last_error`` and ``next_attempt_at`` = now + back-off
  (``alerts.retry_base_seconds`` doubling up to ``alerts.retry_max_seconds``); given up only after
  ``alerts.max_attempts`` when that is set (kept as failed, requeued by ``ocsctl alert retry``);
- PostgreSQL away -> the loop backs off; a delivery whose "delivered" mark could not be written is
  kept in memory and marked before the next lease, so it is not sent again by this node.

What remains is the window every outbox has with an outside server: a crash after the server
accepted and before the mark commits sends that alert again after the lease.  The outbox id
travels with it (``X-OCS-Delivery``, Message-ID) so a receiver can drop the repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import asyncpg
import structlog

from ocs.config import Config
from ocs.control.alert_channels import Channel, DeliveryError, MailChannel, MailRenderer, WebhookChannel
from ocs.control.alert_messages import Alert
from ocs.metrics import Metrics
from ocs.store import POSTGRES_DOWN, alerts_db

log = structlog.get_logger("ocs.alerts")

BATCH = 20  # rows leased per round (sent concurrently)
LEASE_MARGIN = 60.0  # seconds beyond the longest send before a leased row is due again
MAX_BACKOFF = 30.0  # the loop's own back-off while PostgreSQL is away


class AlertDelivery:
    """``mail_renderers``: mail of outbox rows that are not alerts, by event (see :class:`MailChannel`);
    ``channels`` replaces the real ones (tests)."""

    def __init__(self, cfg: Config, pool: asyncpg.Pool, metrics: Metrics, *,
                 mail_renderers: Mapping[str, MailRenderer] | None = None,
                 channels: dict[str, Channel] | None = None) -> None:
        self.cfg = cfg
        self.pool = pool
        self.metrics = metrics
        self.channels: dict[str, Channel] = channels or {
            "email": MailChannel(cfg.smtp, cfg.node.name, mail_renderers), "webhook": WebhookChannel(cfg.alerts)}
        self.lease = max(c.timeout for c in self.channels.values()) + LEASE_MARGIN
        self._unmarked: dict[int, Alert] = {}  # delivered, "delivered" not yet written

    async def run(self) -> None:
        """Deliver forever; a round that found a full batch goes on at once, else waits ``alerts.poll_seconds``."""
        backoff = 1.0
        try:
            while True:
                try:
                    n = await self.deliver_once()
                    backoff = 1.0
                    if n < BATCH:
                        await asyncio.sleep(self.cfg.alerts.poll_seconds)
                except POSTGRES_DOWN as exc:
                    log.warning("alert_outbox_unavailable", error=repr(exc), retry_in=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(MAX_BACKOFF, backoff * 2)
        finally:
            await self.close()

    async def deliver_once(self) -> int:
        """One round: lease due rows, send them concurrently, record each outcome; returns rows leased."""
        await self._mark_delivered()
        if self._unmarked:
            return 0  # PostgreSQL refused the marks: lease nothing new until they are written
        async with self.pool.acquire() as conn:
            rows = await alerts_db.claim(conn, BATCH, self.lease)
        await asyncio.gather(*(self._deliver(Alert.from_record(r)) for r in rows))
        await self._mark_delivered()
        async with self.pool.acquire() as conn:
            self.metrics.alert_outbox.set(await alerts_db.pending_count(conn))
        return len(rows)

    async def _deliver(self, alert: Alert) -> None:
        try:
            await self.channels[alert.channel].send(alert)
        except DeliveryError as exc:
            await self._failed(alert, str(exc))
            return
        except Exception as exc:  # a bug in one alert must not stop the others: retried, and loud
            log.error("alert_delivery_bug", id=alert.id, alert_event=alert.event, exc_info=True)
            await self._failed(alert, f"{type(exc).__name__}: {exc}")
            return
        self._unmarked[alert.id] = alert
        self.metrics.child(self.metrics.alerts, alert.event, alert.channel, "delivered").inc()
        log.info("alert_delivered", id=alert.id, alert_event=alert.event, channel=alert.channel,
                 account=alert.account_id, attempts=alert.attempts)

    def retry_in(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: base, doubling, capped."""
        a = self.cfg.alerts
        return float(min(a.retry_max_seconds, a.retry_base_seconds * 2 ** min(attempts - 1, 30)))

    async def _failed(self, alert: Alert, error: str) -> None:
        max_attempts = self.cfg.alerts.max_attempts
        give_up = 0 < max_attempts <= alert.attempts
        retry_in = self.retry_in(alert.attempts)
        result = "failed" if give_up else "retry"
        self.metrics.child(self.metrics.alerts, alert.event, alert.channel, result).inc()
        log.warning("alert_delivery_failed", id=alert.id, alert_event=alert.event, channel=alert.channel,
                    account=alert.account_id, attempts=alert.attempts, error=error,
                    **({"given_up": True} if give_up else {"retry_in": retry_in}))
        try:
            async with self.pool.acquire() as conn:
                await alerts_db.mark_failed_attempt(conn, alert.id, alert.attempts, error, retry_in, give_up)
        except POSTGRES_DOWN as exc:  # the lease runs out and the row is due again: nothing lost
            log.warning("alert_failure_not_recorded", id=alert.id, error=repr(exc))

    async def _mark_delivered(self) -> None:
        if not self._unmarked:
            return
        try:
            async with self.pool.acquire() as conn:
                for outbox_id in list(self._unmarked):
                    await alerts_db.mark_delivered(conn, outbox_id)
                    del self._unmarked[outbox_id]
        except POSTGRES_DOWN as exc:
            log.warning("alert_delivered_mark_deferred", ids=sorted(self._unmarked), error=repr(exc))

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
