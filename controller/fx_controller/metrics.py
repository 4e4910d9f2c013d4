"""Prometheus metrics of the controller (documented in controller/README.md)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily

disable_created_metrics()  # the *_created series only add noise to every scrape


class Metrics:
    """One registry per controller, so tests can run several side by side."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.state_bytes = Gauge(
            "fx_controller_state_bytes",
            "Bytes the state dir holds on disk by kind (code|artifacts|logs|nats|other); embedded mode only",
            ["kind"],
            registry=self.registry,
        )
        self.replicas = Gauge(
            "fx_controller_replicas",
            "Replicas by state (starting|ready|draining)",
            ["function", "version", "state"],
            registry=self.registry,
        )
        self.replica_start_seconds = Histogram(
            "fx_controller_replica_start_seconds",
            "Time from asking the backend for a replica to the replica reporting ready",
            ["function", "version"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.activations = Counter(
            "fx_controller_activations_total",
            "Activation requests from gateways by result (ok|failed|backoff|notfound)",
            ["function", "result"],
            registry=self.registry,
        )
        self.replica_exits = Counter(
            "fx_controller_replica_exits_total",
            "Replica exits by reason (stopped|crashed|init_error|timeout)",
            ["function", "reason"],
            registry=self.registry,
        )
        self.deploys = Counter(
            "fx_controller_deploys_total",
            "Deploy calls by result (created|unchanged|rejected)",
            ["result"],
            registry=self.registry,
        )
        # The autoscaler's decision per version (docs/autoscaling.md).
        self.replicas_desired = Gauge(
            "fx_controller_replicas_desired",
            "Replicas the autoscaler wants for a version",
            ["function", "version"],
            registry=self.registry,
        )
        self.concurrency_target = Gauge(
            "fx_controller_concurrency_target",
            "In-flight requests per replica the autoscaler aims at",
            ["function", "version"],
            registry=self.registry,
        )
        self.panic_mode = Gauge(
            "fx_controller_panic_mode",
            "1 while the autoscaler scales a version on its panic window, else 0",
            ["function", "version"],
            registry=self.registry,
        )

        # --- operators' metrics (issue 15) ---
        self.cold_start_phase = Histogram(
            "fx_controller_cold_start_phase_seconds",
            "Cold starts by phase: queueing (held before a replica was asked for), spawn (to the process being up), "
            "init (the runtime's init)",
            ["function", "version", "phase"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "fx_controller_reconcile_seconds",
            "Time one pass of a controller loop took (scale, rollout)",
            ["loop"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.is_leader = Gauge(
            "fx_controller_is_leader",
            "1 on the controller that holds the lease or runs alone",
            registry=self.registry,
        )
        self.nats_connected = Gauge(
            "fx_controller_nats_connected", "1 while connected to NATS, else 0", registry=self.registry
        )

    def watch_templates(self, memory: Callable[[], dict[tuple[str, int], int]]) -> None:
        """fx_controller_template_memory_bytes, read from the backend at each scrape (a dropped template's series
        goes with it)."""
        self.registry.register(_TemplateMemory(memory))

    def timed(self, loop: str, step: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """`step` (one pass of a loop), its duration observed in fx_controller_reconcile_seconds."""
        histogram = self.reconcile_seconds.labels(loop)

        async def timed_step() -> None:
            started = time.perf_counter()
            try:
                await step()
            finally:
                histogram.observe(time.perf_counter() - started)

        return timed_step

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _TemplateMemory:
    def __init__(self, memory: Callable[[], dict[tuple[str, int], int]]) -> None:
        self._memory = memory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "fx_controller_template_memory_bytes",
            "PSS of a version's idle templates and their spares (local backend, snap_start), measured when ready",
            labels=["function", "version"],
        )
        for (function, version), size in sorted(self._memory().items()):
            family.add_metric([function, str(version)], size)
        yield family
