"""One ``/metrics`` for a supervisor and its workers (``ocsd --workers N``): expositions merged by family.

Why one merged target, not one per worker: dashboards, alerts and the runbook's queries were written
against one process per ``http.listen``, and a worker is an implementation detail of that process
(its index changes nothing a query should see). So every family keeps its name, type, help and
labels, and each series is combined across the processes that have it:

- counters and histograms (buckets, counts, sums) add up: requests answered by any worker;
- gauges add up (peer connections, reserved money set by the one process that measures it),
  except per-process flags: ``ocs_degraded`` takes the max (degraded when any process is) and
  ``ocs_dependency_up`` the min (up only when every process reached the dependency);
- ``*_created`` (a series' start time) takes the earliest.

The sources are text expositions (a worker's ``/metrics``, the supervisor's own registry written
out the same way), so what is merged is exactly what one process would have served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

MAX_FAMILIES = frozenset({"ocs_degraded"})  # per-process flags: 1 when any process is degraded
MIN_FAMILIES = frozenset({"ocs_dependency_up"})  # 1 only when every process reached the dependency
MONOTONIC_TYPES = frozenset({"counter", "histogram"})

Key = tuple[str, tuple[tuple[str, str], ...]]  # sample name, label pairs (in exposition order)


@dataclass
class Family:
    name: str
    type: str
    documentation: str
    samples: dict[Key, float] = field(default_factory=dict)


Families = dict[str, Family]


def parse(text: str | bytes) -> Families:
    """A text exposition as families of samples (``_created`` lines are families of their own there)."""
    if isinstance(text, bytes):
        text = text.decode()
    out: Families = {}
    for m in text_string_to_metric_families(text):
        fam = out.setdefault(m.name, Family(m.name, m.type, m.documentation))
        for s in m.samples:
            fam.samples[(s.name, tuple(s.labels.items()))] = float(s.value)
    return out


def of_registry(registry: CollectorRegistry) -> Families:
    """This process's own families, read back from what it would serve (one form for every source)."""
    return parse(generate_latest(registry))


def _combiner(name: str) -> Callable[[float, float], float]:
    if name.endswith("_created"):
        return min
    if name in MAX_FAMILIES:
        return max
    if name in MIN_FAMILIES:
        return min
    return _add


def _add(a: float, b: float) -> float:
    return a + b


def merge(sources: Iterable[Families]) -> Families:
    """Families of every source, each series combined across the sources that have it.

    Order is first seen: pass the supervisor's own families first and the output lists the
    families (and their series) as one process would.
    """
    out: Families = {}
    for source in sources:
        for name, fam in source.items():
            into = out.get(name)
            if into is None:
                out[name] = Family(fam.name, fam.type, fam.documentation, dict(fam.samples))
                continue
            combine = _combiner(name)
            for key, value in fam.samples.items():
                had = into.samples.get(key)
                into.samples[key] = value if had is None else combine(had, value)
    return out


def monotonic(families: Families) -> Families:
    """Counters and histograms only: what a worker that died leaves behind so the sums never go back.

    Prometheus reads any decrease of a counter as a reset; a worker restarted from zero would
    otherwise turn the merged sum into a spike in ``rate()``.
    """
    return {n: f for n, f in families.items() if f.type in MONOTONIC_TYPES}


class _Fixed:
    """A collector serving families already computed (the merge), for prometheus_client's writer."""

    def __init__(self, families: Families) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for fam in _ordered(self.families):
            metric = Metric(fam.name, fam.documentation, fam.type)
            for (sample, labels), value in fam.samples.items():
                metric.add_sample(sample, dict(labels), value)
            yield metric


def _ordered(families: Families) -> Iterator[Family]:
    """Each family followed by its ``_created`` companion, as prometheus_client writes one registry.

    A companion exists only once a labelled series does, so in a merge it may come from a later
    source than its family; without this it would trail at the end.
    """
    companions = {n: f for n, f in families.items() if n.endswith("_created") and n[:-8] in families}
    for name, fam in families.items():
        if name in companions:
            continue
        yield fam
        if name + "_created" in companions:
            yield companions[name + "_created"]


def expose(families: Families) -> bytes:
    """The text exposition of ``families``, written by prometheus_client as for a registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)
