"""Prometheus metric families (docs/observability.md), created per daemon, never at import time.

Front ends and the core receive the one :class:`Metrics` instance from the
composition root.  Label values are bounded: protocol, request type and result
come from small fixed sets; RADIUS clients are labelled by their configured
name, never by source address.  As a guard against a call site that labels
with a value from the wire (a Diameter command code has 2^24 values, and each
series costs ~1 KB and a line of every scrape), a family keeps at most
:data:`MAX_SERIES` label sets; later new ones are counted under a series whose
labels are all ``"other"``.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Self, TypeVar

import prometheus_client
import prometheus_client.values
from prometheus_client import CollectorRegistry

MAX_SERIES = 1000  # label sets per family; beyond it new ones count under ("other", ...)
OVERFLOW = "other"


def _bounded(family: Any, labelvalues: tuple[object, ...], labelkwargs: dict[str, object]
             ) -> tuple[tuple[object, ...], dict[str, object]]:
    """The label values to use: as given, or all OVERFLOW when they would be a series too many."""
    if len(family._metrics) < MAX_SERIES:
        return labelvalues, labelkwargs
    names = family._labelnames
    key = tuple(str(labelkwargs[n]) for n in names) if labelkwargs else tuple(str(v) for v in labelvalues)
    if key in family._metrics:
        return labelvalues, labelkwargs
    return (OVERFLOW,) * len(names), {}


class LoopValue:
    """prometheus_client's metric value without its lock.

    Every update in ocsd happens on the event loop's thread (threads here only encode and compile
    tariffs), so the library's ``threading.Lock`` around each ``+=`` bought nothing and cost about
    a third of each of the three or four metric updates per request.  A scrape reads a float.
    Installed below unless prometheus_client runs in its multiprocess mode (then its own class stays).
    """

    _multiprocess = False
    __slots__ = ("_exemplar", "_value")

    def __init__(self, typ: object, metric_name: object, name: object, labelnames: object, labelvalues: object,
                 help_text: object, **kwargs: object) -> None:
        self._value = 0.0
        self._exemplar: object = None

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = value

    def set_exemplar(self, exemplar: object) -> None:
        self._exemplar = exemplar

    def get(self) -> float:
        return self._value

    def get_exemplar(self) -> object:
        return self._exemplar


if prometheus_client.values.ValueClass is prometheus_client.values.MutexValue:
    prometheus_client.values.ValueClass = LoopValue


class Counter(prometheus_client.Counter):
    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        labelvalues, labelkwargs = _bounded(self, labelvalues, labelkwargs)
        return super().labels(*labelvalues, **labelkwargs)

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        """The library's ``inc`` without its checks on the common path (a labelled child, +n, no exemplar)."""
        if amount < 0 or exemplar is not None or (self._labelnames and not self._labelvalues):
            super().inc(amount, exemplar)  # its errors and exemplars, as before
            return
        self._value.inc(amount)


class Gauge(prometheus_client.Gauge):
    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        labelvalues, labelkwargs = _bounded(self, labelvalues, labelkwargs)
        return super().labels(*labelvalues, **labelkwargs)


class Histogram(prometheus_client.Histogram):
    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        labelvalues, labelkwargs = _bounded(self, labelvalues, labelkwargs)
        return super().labels(*labelvalues, **labelkwargs)

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        """The library's ``observe`` with a bisection for its bucket scan (the same bucket: the first
        bound >= amount), on the common path (a labelled child, no exemplar)."""
        if exemplar is not None or (self._labelnames and not self._labelvalues):
            super().observe(amount, exemplar)
            return
        self._sum.inc(amount)
        self._buckets[bisect_left(self._upper_bounds, amount)].inc(1)


F = TypeVar("F", Counter, Gauge, Histogram)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """All metric families of one process, on their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._request_metrics(self.registry)
        self._session_metrics(self.registry)
        self._usage_metrics(self.registry)
        self._health_metrics(self.registry)
        self._control_metrics(self.registry)
        self._api_metrics(self.registry)

    def requests_answered(self) -> float:
        """Every charging request answered so far (all protocols, types, results): the dashboard's rate."""
        return sum(s.value for m in self.requests.collect() for s in m.samples if s.name.endswith("_total"))

    def _request_metrics(self, r: CollectorRegistry) -> None:
        """Requests answered, their latency, and what was dropped or replayed."""
        self.requests = Counter(
            "ocs_requests_total",
            "Charging requests answered, by protocol, request type and result.",
            ["protocol", "type", "result"],
            registry=r,
        )
        self.latency = Histogram(
            "ocs_request_duration_seconds",
            "Time from request decoded to answer written, by protocol and type.",
            ["protocol", "type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.core_latency = Histogram(
            "ocs_charging_duration_seconds",
            "Time spent in a charging verb, by verb.",
            ["verb"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dropped = Counter(
            "ocs_dropped_packets_total",
            "Packets or messages dropped without an answer, by protocol and reason.",
            ["protocol", "reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "ocs_duplicate_requests_total",
            "Retransmitted requests answered from a cache or stored outcome.",
            ["protocol"],
            registry=r,
        )

    def _session_metrics(self, r: CollectorRegistry) -> None:
        """Open sessions, reserved money, reaped holds, implausible usage."""
        self.active_sessions = Gauge(
            "ocs_active_sessions", "Open charging sessions holding a reservation.", registry=r
        )
        self.reserved = Gauge(
            "ocs_reserved_micros",
            "Money currently reserved by open sessions, in micro-units of the accounts' currencies.",
            registry=r,
        )
        self.reaped = Counter(
            "ocs_reaped_sessions_total", "Sessions whose holds were released after validity + grace.",
            registry=r,
        )
        self.overuse = Counter(
            "ocs_overuse_requests_total",
            "Requests whose reported usage exceeded grant + charging.max_overuse_seconds (excess not charged).",
            ["protocol"],
            registry=r,
        )
        self.overuse_units = Counter(
            "ocs_overuse_units_total",
            "Units (seconds) reported beyond grant + charging.max_overuse_seconds and not charged.",
            ["protocol"],
            registry=r,
        )

    def _usage_metrics(self, r: CollectorRegistry) -> None:
        """The usage stream and its flush to PostgreSQL."""
        self.stream_lag = Gauge(
            "ocs_usage_stream_lag_records",
            "Usage records in the Redis stream not yet committed to PostgreSQL.",
            registry=r,
        )
        self.stream_lag_seconds = Gauge(
            "ocs_usage_stream_lag_seconds",
            "Age of the oldest usage record not yet committed to PostgreSQL.",
            registry=r,
        )
        self.stream_pending = Gauge(
            "ocs_usage_stream_pending_records",
            "Usage records read by a flusher (consumer group pending entries) but not yet acknowledged.",
            registry=r,
        )
        self.flushed = Counter(
            "ocs_usage_flushed_records_total", "Usage records committed to PostgreSQL.", registry=r
        )
        self.flush_errors = Counter(
            "ocs_usage_flush_errors_total", "Failed flush attempts (PostgreSQL unreachable or failing).",
            registry=r,
        )
        self.dead_letters = Counter(
            "ocs_usage_dead_letters_total",
            "Usage records PostgreSQL refused on their own, moved to the dead-letter table.",
            registry=r,
        )

    def _health_metrics(self, r: CollectorRegistry) -> None:
        """Peers, dependencies, background tasks, degraded state."""
        self.peers = Gauge(
            "ocs_diameter_peers", "Diameter peer connections by state.", ["state"], registry=r
        )
        self.dependency_up = Gauge(
            "ocs_dependency_up", "1 when the dependency answered its last check.", ["dependency"],
            registry=r,
        )
        self.task_restarts = Counter(
            "ocs_task_restarts_total",
            "Background tasks (flusher, reaper, ...) restarted after an unexpected failure, by task.",
            ["task"],
            registry=r,
        )
        self.workers = Gauge(
            "ocs_workers",
            "Charging worker processes running and ready (ocsd --workers N under one supervisor; 1 without one).",
            registry=r,
        )
        self.worker_restarts = Counter(
            "ocs_worker_restarts_total",
            "Charging worker processes the supervisor started again after one died or stopped answering.",
            registry=r,
        )
        self.degraded = Gauge(
            "ocs_degraded",
            "1 while the node runs degraded for a reason (postgres_down, schema_unchecked, ...).",
            ["reason"],
            registry=r,
        )

    def _control_metrics(self, r: CollectorRegistry) -> None:
        """Server-initiated requests (docs/control.md) and alerts (docs/alerts.md)."""
        self.control_requests = Counter(
            "ocs_control_requests_total",
            "Server-initiated requests by protocol, kind (asr, rar, disconnect, coa) and result"
            " (acked, unknown_session, refused, no_answer, peer_gone, not_enabled, bad_answer).",
            ["protocol", "kind", "result"],
            registry=r,
        )
        self.control_retries = Counter(
            "ocs_control_retries_total",
            "Server-initiated requests sent again after no answer, by protocol and kind.",
            ["protocol", "kind"],
            registry=r,
        )
        self.coa_naks = Counter(
            "ocs_radius_coa_nak_total",
            "Disconnect-NAK and CoA-NAK received, by kind and Error-Cause (RFC 5176 3.5; 'other' beyond the"
            " registered values).",
            ["kind", "error_cause"],
            registry=r,
        )
        self.alerts = Counter(
            "ocs_alerts_total",
            "Alerts by event (low_balance, credit_limit, long_call, expensive_call, rate_change), channel"
            " (email, webhook) and result (queued, delivered, retry, failed).",
            ["event", "channel", "result"],
            registry=r,
        )
        self.alert_outbox = Gauge(
            "ocs_alert_outbox_pending", "Alert deliveries waiting in the PostgreSQL outbox.", registry=r
        )

    def _api_metrics(self, r: CollectorRegistry) -> None:
        """The REST API (docs/api.md): requests by method and status, and how long they took."""
        self.api_requests = Counter(
            "ocs_api_requests_total",
            "REST API requests answered, by method and HTTP status (503: over api.max_inflight or a store away).",
            ["method", "status"],
            registry=r,
        )
        self.api_duration = Histogram(
            "ocs_api_request_seconds", "REST API requests: time from arrival to the last byte of the answer.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15), registry=r,
        )

    def child(self, family: F, *labels: str) -> F:
        """``family.labels(*labels)``, memoised: prometheus_client's lookup costs µs on every request."""
        key = (id(family), labels)
        found = self._children.get(key)
        if found is None:
            found = family.labels(*labels)
            if len(self._children) < MAX_SERIES:  # the memo is bounded like the families
                self._children[key] = found
        return found
