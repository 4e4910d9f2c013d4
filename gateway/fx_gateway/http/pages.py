"""The pages the gateway serves itself: /metrics (Prometheus text), /healthz, and the 404 of any other path."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.registry import Collector

from fx_gateway.http import responses
from fx_gateway.http.answers import Answer
from fx_gateway.http.server import ClientConnection


class Pages:
    def __init__(self, collectors: Iterable[Collector], healthy: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        self.healthy = healthy  # the initial route tables loaded (NATS may have gone since)

    def open(self, client: ClientConnection, path: bytes, metrics: bool) -> Answer:
        """/healthz, /metrics when `metrics` (not on --metrics-listen elsewhere), or the 404 for any other path."""
        if path == b"/metrics" and metrics:
            return Answer(client, self._metrics)
        if path == b"/healthz":
            return Answer(client, self._health)
        return Answer(client, responses.not_found(path.decode("latin-1")))

    def _metrics(self) -> bytes:
        return responses.response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST.encode())

    def _health(self) -> bytes:
        if self.healthy():
            return responses.response(200, b'{"status": "ready"}')
        message = "not ready: waiting for NATS and the initial route tables"
        return responses.error(503, "NotReady", message)


class MetricsSide:
    """The router of --metrics-listen: /metrics and /healthz, nothing else. Its connections are counted, capped
    and swept with the others."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def open(self, client: ClientConnection, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> Answer:
        return self.pages.open(client, url.partition(b"?")[0], metrics=True)
