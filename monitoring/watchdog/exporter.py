"""The watchdog's Prometheus exporter: the runbook's metrics (8.1) and the watchdog's own.

Families are built from the specs in :mod:`monitoring.metrics` (one place for names, types,
help and labels) in a registry of their own, served on ``watchdog.listen`` (never 9090).
Label sets the watchdog knows in advance are created at zero when it starts, so ``increase()``
in an alert sees the very first fallback instead of a series that appears already at 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from monitoring import metrics
from monitoring.metrics import MetricSpec

#: Buckets for probe and request latency: local probes take ms, a hung upstream a timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Family = Counter | Gauge | Histogram

# The *_created series double every counter and histogram and no rule or panel reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _family(spec: MetricSpec, registry: CollectorRegistry) -> Family:
    if spec.kind == "counter":
        return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels,
                       registry=registry)
    if spec.kind == "gauge":
        return Gauge(spec.name, spec.help, spec.labels, registry=registry)
    return Histogram(spec.name, spec.help, spec.labels, registry=registry,
                     buckets=LATENCY_BUCKETS)


class Exporter:
    """Every watchdog metric family, in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.families: dict[str, Family] = {
            spec.name: _family(spec, self.registry) for spec in metrics.WATCHDOG_METRICS}

    def __getitem__(self, spec: MetricSpec) -> Any:
        return self.families[spec.name]

    def prime(self, routes: Iterable[str], targets: Iterable[str],
              reasons: Iterable[str]) -> None:
        """Create the known label sets at 0 (see the module docstring)."""
        routes, targets, reasons = list(routes), list(targets), list(reasons)
        for route in routes:
            self[metrics.LATENCY].labels(provider=route)
            self[metrics.CIRCUIT_STATE].labels(provider=route).set(0)
        for target in targets:
            self[metrics.ACTIVE_TARGET].labels(target=target).set(0)
        for source in targets:
            for dest in targets:
                if source != dest:
                    for reason in reasons:
                        self[metrics.FALLBACK_EVENTS].labels(
                            from_provider=source, to_provider=dest, reason=reason)
        self[metrics.PROXY_RESTARTS].inc(0)

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics in a background thread."""
        start_http_server(port, addr=host, registry=self.registry)
