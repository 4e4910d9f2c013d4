"""Counts of API routes: plain counters on the hot path (as proxy.stats), Prometheus metrics at scrape time.

Each compiled route holds its RouteStats, so a request costs a dict increment and a bisect; the stats outlive the
route table (a change recompiles the routes, which find their stats again by (api, route key)). Requests that no
route of a served host took count under api "" and route "".
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from fx_gateway.proxy.stats import DURATION_BUCKETS, Histogram

# Why a request was refused before its integration ran; each part that refuses counts its own through `denied`.
DENIED_REASONS = ("unauthorized", "forbidden", "throttled", "quota", "no_api_key", "authorizer_error")
# Module-wide, so the parts that refuse (api keys, limits, authorizers) count without being handed an object.
_denials: dict[tuple[str, str, str], int] = {}


def denied(api: str, route: str, reason: str) -> None:
    """A request refused before its integration: `reason` is one of DENIED_REASONS."""
    key = (api, route, reason)
    _denials[key] = _denials.get(key, 0) + 1


class RouteStats:
    __slots__ = ("codes", "duration")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.duration = Histogram(DURATION_BUCKETS)

    def record(self, status: int, seconds: float) -> None:
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        self.duration.observe(seconds)


class ApiMetrics(Collector):
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], RouteStats] = {}
        self.unmatched = self.route("", "")

    def route(self, api: str, route_key: str) -> RouteStats:
        key = (api, route_key)
        stats = self.routes.get(key)
        if stats is None:
            stats = self.routes[key] = RouteStats()
        return stats

    def collect(self) -> Iterator:
        labels = ["api", "route"]
        requests = CounterMetricFamily(
            "fx_gateway_api_requests", "Requests on API routes answered, by status code", labels=[*labels, "code"]
        )
        duration = HistogramMetricFamily(
            "fx_gateway_api_request_duration_seconds", "Time from a request's arrival to its answer", labels=labels
        )
        denied = CounterMetricFamily(
            "fx_gateway_api_denied", "Requests refused before their integration, by reason", labels=[*labels, "reason"]
        )
        for key, stats in list(self.routes.items()):
            for code, count in list(stats.codes.items()):
                requests.add_metric([*key, str(code)], count)
            duration.add_metric(list(key), stats.duration.buckets(), stats.duration.sum)
        for key, count in list(_denials.items()):
            denied.add_metric(list(key), count)
        yield from (requests, duration, denied)
