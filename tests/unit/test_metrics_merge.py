"""ocs.metrics_merge: a supervisor's one /metrics looks exactly like one process's (``ocsd --workers N``)."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ocs import metrics_merge as mm
from ocs.metrics import Metrics


def _busy(m: Metrics, n: int) -> Metrics:
    m.requests.labels("radius", "start", "granted").inc(n)
    m.latency.labels("radius", "start").observe(0.003 * n)
    m.peers.labels("open").set(n)
    return m


def _values(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_one_source_round_trips_byte_for_byte() -> None:
    m = _busy(Metrics(), 3)
    m.degraded.labels("postgres_down").set(1)
    assert mm.expose(mm.merge([mm.of_registry(m.registry)])) == generate_latest(m.registry)


def test_counters_histograms_and_gauges_add_up() -> None:
    a, b = _busy(Metrics(), 2), _busy(Metrics(), 5)
    b.requests.labels("diameter", "initial", "success").inc()  # a series only one worker has
    out = _values(mm.expose(mm.merge([mm.of_registry(a.registry), mm.of_registry(b.registry)])))
    assert out[("ocs_requests_total", (("protocol", "radius"), ("result", "granted"), ("type", "start")))] == 7
    assert out[("ocs_requests_total", (("protocol", "diameter"), ("result", "success"), ("type", "initial")))] == 1
    assert out[("ocs_request_duration_seconds_count", (("protocol", "radius"), ("type", "start")))] == 2
    assert out[("ocs_request_duration_seconds_bucket", (("le", "0.01"), ("protocol", "radius"),
                                                        ("type", "start")))] == 1  # 0.006 yes, 0.015 no
    assert out[("ocs_diameter_peers", (("state", "open"),))] == 7


def test_flags_are_not_summed_and_created_is_the_earliest() -> None:
    a, b = Metrics(), Metrics()
    a.degraded.labels("postgres_down").set(1)
    b.degraded.labels("postgres_down").set(1)
    a.dependency_up.labels("redis").set(1)
    b.dependency_up.labels("redis").set(0)
    a.requests.labels("radius", "start", "granted").inc()
    b.requests.labels("radius", "start", "granted").inc()
    fa, fb = mm.of_registry(a.registry), mm.of_registry(b.registry)
    out = _values(mm.expose(mm.merge([fa, fb])))
    assert out[("ocs_degraded", (("reason", "postgres_down"),))] == 1  # max, not 2
    assert out[("ocs_dependency_up", (("dependency", "redis"),))] == 0  # min: one process cannot reach it
    key = ("ocs_requests_created", (("protocol", "radius"), ("result", "granted"), ("type", "start")))
    assert out[key] == min(_values(generate_latest(a.registry))[key], _values(generate_latest(b.registry))[key])


def test_what_a_dead_worker_leaves_is_its_counters_only() -> None:
    dead = _busy(Metrics(), 4)
    kept = mm.monotonic(mm.of_registry(dead.registry))
    assert "ocs_requests" in kept and "ocs_request_duration_seconds" in kept
    assert "ocs_diameter_peers" not in kept and "ocs_requests_created" not in kept  # gauges go with the process
    fresh = _busy(Metrics(), 1)  # its restarted successor counts from zero again
    out = _values(mm.expose(mm.merge([mm.of_registry(Metrics().registry), kept, mm.of_registry(fresh.registry)])))
    assert out[("ocs_requests_total", (("protocol", "radius"), ("result", "granted"), ("type", "start")))] == 5
    assert out[("ocs_diameter_peers", (("state", "open"),))] == 1


def test_families_keep_the_order_of_the_first_source() -> None:
    own = Metrics()
    worker = _busy(Metrics(), 1)
    names = [f.name for f in text_string_to_metric_families(
        mm.expose(mm.merge([mm.of_registry(own.registry), mm.of_registry(worker.registry)])).decode())]
    single = [f.name for f in text_string_to_metric_families(generate_latest(worker.registry).decode())]
    assert names == single
