"""Refused call attempts as records, so a report's ASR counts them (docs/reports.md).

A session the OCS refuses (unknown subscriber, blocked, no credit, destination not rated, bad
password) leaves a CDR of duration 0, charge 0, whose termination cause is the refusal.  It goes
through the same shard usage stream and flush as every record: a burst of refusals becomes a few
batched COPYs, never a statement per refusal.

Its record id is ``ref:<session>:<rating group>:<request number>``: a retransmitted request that is
refused again (a Diameter CCR-I the client repeats, a RADIUS Access-Request retransmitted past the
duplicate cache) proposes the same id and PostgreSQL keeps one row.  A retransmission the charging
scripts answer from the stored outcome (``duplicate``) writes nothing at all.

Writing the record is one XADD queued on the tick's pipeline, on the refusal path only; if it fails,
the refusal is still answered (the record is what is lost, and a warning says so).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import structlog

from ocs.model import ChargeRequest, Outcome, Status
from ocs.rating.engine import Selection, normalize_number
from ocs.store.keys import Keys, shard_of
from ocs.store.pipeline import AutoPipeline

log = structlog.get_logger("ocs.charging")

REFUSALS = frozenset({Status.OUT_OF_CREDIT, Status.UNKNOWN_SUBSCRIBER, Status.BLOCKED, Status.NOT_RATED,
                      Status.BAD_CREDENTIALS})


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _storable(text: str) -> str:
    """A refused request's subscriber as the calling number: it never became an account, so it may still
    hold what PostgreSQL text cannot (a NUL from a fuzzed Subscription-Id); controls are written as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if _CONTROL.search(text) else text


class RefusalRecords:
    def __init__(self, rp: AutoPipeline, keys: Keys, node: str) -> None:
        self.rp = rp
        self.keys = keys
        self.node = node

    def fields(self, req: ChargeRequest, out: Outcome, sel: Selection | None) -> list[str]:
        """The CDR of a refused attempt, as stream fields (the names ocs.store.usage_rows reads)."""
        now = datetime.now(UTC).isoformat()
        number = sel.number if sel is not None else normalize_number(req.destination)
        return ["t", "c", "record_id", f"ref:{req.session}:{req.rating_group}:{req.request_number}",
                "session_id", req.session, "rating_group", str(req.rating_group), "account", out.account,
                "protocol", req.protocol, "service", req.service.value, "calling", _storable(req.calling),
                "called", number, "prefix", sel.prefix if sel is not None else "",
                "destination", sel.destination if sel is not None else "",
                "start_time", (req.event_time or datetime.now(UTC)).astimezone(UTC).isoformat(),
                "duration", "0", "billed_seconds", "0", "charge", "0", "currency", out.currency,
                "termination_cause", out.status.value, "end_time", now, "node", self.node, "revision", "0"]

    async def record(self, req: ChargeRequest, out: Outcome, sel: Selection | None) -> None:
        """Queue the refusal's record; never raises (the refusal is answered whatever happens here)."""
        if out.status not in REFUSALS or out.duplicate:
            return
        shard = shard_of(out.account or req.subscriber or req.session, self.keys.shards)
        try:
            await self.rp.submit("XADD", self.keys.usage(shard), "*", *self.fields(req, out, sel))
        except Exception as exc:  # a lost record must not turn a refusal into an error
            log.warning("refusal_record_not_written", session=req.session, status=out.status.value, error=str(exc))
