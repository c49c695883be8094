"""The lock-free metric value and the shortcut ``inc``/``observe`` (ocs.metrics) say what the library says."""

from __future__ import annotations

import prometheus_client
import prometheus_client.values
import pytest
from prometheus_client import CollectorRegistry

from ocs.metrics import LATENCY_BUCKETS, Counter, Histogram, LoopValue, Metrics


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in registry.collect() for s in fam.samples if not s.name.endswith("_created")}


def test_values_are_the_lock_free_class() -> None:
    assert prometheus_client.values.ValueClass is LoopValue
    m = Metrics()
    child = m.child(m.requests, "diameter", "update", "granted")
    assert isinstance(child._value, LoopValue)


def test_observe_and_inc_match_the_library() -> None:
    """Every bucket edge, between edges, beyond the last, zero: the same exposition as prometheus_client's own."""
    ours_reg, lib_reg = CollectorRegistry(), CollectorRegistry()
    ours_h = Histogram("lat", "h", ["p"], buckets=LATENCY_BUCKETS, registry=ours_reg)
    lib_h = prometheus_client.Histogram("lat", "h", ["p"], buckets=LATENCY_BUCKETS, registry=lib_reg)
    ours_c = Counter("req", "c", ["p"], registry=ours_reg)
    lib_c = prometheus_client.Counter("req", "c", ["p"], registry=lib_reg)
    amounts = [0.0, *LATENCY_BUCKETS, *(b * 1.0001 for b in LATENCY_BUCKETS), *(b * 0.9999 for b in LATENCY_BUCKETS), 99.0]
    for a in amounts:
        ours_h.labels("x").observe(a)
        lib_h.labels("x").observe(a)
        ours_c.labels("x").inc()
        lib_c.labels("y").inc(2.5)
        ours_c.labels("y").inc(2.5)
        lib_c.labels("x").inc()
    assert _samples(ours_reg) == _samples(lib_reg)


def test_the_library_checks_still_apply() -> None:
    reg = CollectorRegistry()
    c = Counter("c", "c", ["p"], registry=reg)
    h = Histogram("h", "h", ["p"], registry=reg)
    with pytest.raises(ValueError):
        c.inc()  # a labelled family, no labels
    with pytest.raises(ValueError):
        h.observe(1.0)
    with pytest.raises(ValueError):
        c.labels("x").inc(-1)
    c.labels("x").inc(1, exemplar={"trace": "1"})  # exemplars take the library's path
    assert c.labels("x")._value.get_exemplar() is not None
