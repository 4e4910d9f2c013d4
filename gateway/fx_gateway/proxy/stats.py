"""Per-version request statistics: plain counters on the hot path, turned into Prometheus metrics at scrape time.

Updating a prometheus_client child costs a lock and a bucket scan per call; here a request costs one dict
increment and one bisect, and the registry reads the numbers only when /metrics is scraped. The same counters
feed the load reports, so metrics and autoscaling never disagree.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from math import ceil

from fx.protocol import VersionLoad, load_report_key
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COLD_START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 10000)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last slot: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative (le, count) pairs as Prometheus wants them."""
        out, total = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, total))
        return out


class VersionStats:
    """Everything counted for one function version. `in_flight` and `held` are live counts."""

    __slots__ = (
        "billed_mb_ms",
        "codes",
        "cold_start",
        "cold_starts",
        "duration",
        "errors",
        "handler",
        "held",
        "hold",
        "in_flight",
        "invocations",
        "lost",
        "reported",
        "requests",
        "retries",
        "usage_reported",
    )

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.duration = Histogram(DURATION_BUCKETS)
        self.cold_start = Histogram(COLD_START_BUCKETS)
        self.cold_starts = 0
        self.requests = 0
        self.errors = 0
        self.in_flight = 0
        self.held = 0
        self.retries = 0  # requests sent again after their replica was lost (proxy.replica_loss)
        self.lost = 0  # requests lost with their replica and not sent again (502 Runtime.ReplicaLost)
        self.reported = (0, 0)  # (requests, errors) at the previous load report
        self.hold = Histogram(COLD_START_BUCKETS)  # time held for a replica, cold or busy
        self.handler = Histogram(DURATION_BUCKETS)  # the handler's own duration, as its replica reports it
        self.invocations = 0  # invocations that reached a handler (answers with a report)
        self.billed_mb_ms = 0  # Lambda's billing: each duration rounded up to 1 ms, times the memory size in MB
        self.usage_reported = (0, 0)  # (invocations, billed_mb_ms) the controller acknowledged

    def record(self, status: int, seconds: float) -> None:
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        duration = self.duration  # Histogram.observe inlined: this runs once per request
        duration.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        duration.sum += seconds
        self.requests += 1
        if status >= 500:
            self.errors += 1

    def record_cold_start(self, seconds: float) -> None:
        self.cold_starts += 1
        self.cold_start.observe(seconds)

    def record_handler(self, ms: float, memory_mb: int) -> None:
        seconds, handler = ms / 1000, self.handler  # Histogram.observe inlined: this runs once per invocation
        handler.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        handler.sum += seconds
        self.invocations += 1
        self.billed_mb_ms += (ceil(ms) or 1) * memory_mb  # at least 1 ms billed: ms is never negative here


class Stats(Collector):
    """All VersionStats by (function, version); unknown functions share ("", "") to bound cardinality."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], VersionStats] = {}

    def get(self, function: str, version: str) -> VersionStats:
        key = (function, version)
        stats = self.versions.get(key)
        if stats is None:
            stats = self.versions[key] = VersionStats()
        return stats

    def load(self) -> dict[str, VersionLoad]:
        """The load since the previous call, for versions that are busy or were used."""
        out = {}
        for (function, version), s in self.versions.items():
            if not function:
                continue
            requests, errors = s.requests - s.reported[0], s.errors - s.reported[1]
            if requests or s.in_flight or s.held:
                s.reported = (s.requests, s.errors)
                out[load_report_key(function, version)] = VersionLoad(s.in_flight, s.held, requests, errors)
        return out

    def usage(self) -> tuple[dict[str, tuple[int, int]], dict[tuple[str, str], tuple[int, int]]]:
        """Usage the controller has not acknowledged: (load_report_key -> (invocations, billed MB-ms) since the
        last acknowledgement, the totals to pass to usage_acknowledged once it is)."""
        deltas, totals = {}, {}
        for key, s in self.versions.items():
            now, then = (s.invocations, s.billed_mb_ms), s.usage_reported
            if key[0] and now != then:
                deltas[load_report_key(*key)] = (now[0] - then[0], now[1] - then[1])
                totals[key] = now
        return deltas, totals

    def usage_acknowledged(self, totals: dict[tuple[str, str], tuple[int, int]]) -> None:
        for key, reported in totals.items():
            self.versions[key].usage_reported = reported

    def collect(self) -> Iterator:
        labels = ["function", "version"]
        requests = CounterMetricFamily(
            "fx_gateway_requests", "Requests answered, by status code", labels=[*labels, "code"]
        )
        duration = HistogramMetricFamily(
            "fx_gateway_request_duration_seconds", "Time from a request's arrival to its answer", labels=labels
        )
        in_flight = GaugeMetricFamily("fx_gateway_in_flight", "Requests being answered by a replica", labels=labels)
        held = GaugeMetricFamily("fx_gateway_held", "Requests held waiting for a replica", labels=labels)
        cold = CounterMetricFamily("fx_gateway_cold_starts", "Requests that waited for an activation", labels=labels)
        cold_seconds = HistogramMetricFamily(
            "fx_gateway_cold_start_seconds", "Time a request was held waiting for an activation", labels=labels
        )
        retries = CounterMetricFamily(
            "fx_gateway_replica_retries", "Requests sent again after their replica was lost", labels=labels
        )
        lost = CounterMetricFamily(
            "fx_gateway_replica_lost", "Requests lost with their replica and not sent again (502)", labels=labels
        )
        handler = HistogramMetricFamily(
            "fx_gateway_function_duration_seconds",
            "The handler's own duration, as its replica reports it",
            labels=labels,
        )
        invocations = CounterMetricFamily(
            "fx_gateway_invocations", "Invocations that reached a handler (Lambda's billed requests)", labels=labels
        )
        billed = CounterMetricFamily(
            "fx_gateway_billed_gigabyte_seconds",
            "Lambda's billed compute: each duration rounded up to 1 ms, times the memory size in GB",
            labels=labels,
        )
        hold = HistogramMetricFamily(
            "fx_gateway_hold_seconds", "Time a request was held waiting for a replica, cold or busy", labels=labels
        )
        for key, s in list(self.versions.items()):
            values = list(key)
            for code, count in list(s.codes.items()):
                requests.add_metric([*values, str(code)], count)
            duration.add_metric(values, s.duration.buckets(), s.duration.sum)
            in_flight.add_metric(values, s.in_flight)
            held.add_metric(values, s.held)
            if key[0]:
                cold.add_metric(values, s.cold_starts)
                cold_seconds.add_metric(values, s.cold_start.buckets(), s.cold_start.sum)
                retries.add_metric(values, s.retries)
                lost.add_metric(values, s.lost)
                handler.add_metric(values, s.handler.buckets(), s.handler.sum)
                invocations.add_metric(values, s.invocations)
                billed.add_metric(values, s.billed_mb_ms / 1024 / 1000)
                hold.add_metric(values, s.hold.buckets(), s.hold.sum)
        yield from (requests, duration, in_flight, held, cold, cold_seconds, retries, lost)
        yield from (handler, invocations, billed, hold)


class AsyncStats(Collector):
    """Counters of async calls, by function: accepted, attempted, dead-lettered, called back."""

    def __init__(self) -> None:
        self.accepted: dict[str, int] = {}
        self.refused: dict[str, int] = {}  # not stored: the caller got a 503
        self.attempts: dict[tuple[str, str], int] = {}  # (function, "ok" | "error")
        self.dead: dict[tuple[str, str], int] = {}  # (function, reason)
        self.callbacks: dict[str, int] = {}  # "ok" | "failed"
        self.in_flight = 0
        self.retries: dict[str, int] = {}  # failed attempts sent back to the stream for another
        self.backlog: dict[str, tuple[int, float]] = {}  # function -> (calls stored, oldest's age): BacklogSampler

    @staticmethod
    def count(counter: dict, key) -> None:
        counter[key] = counter.get(key, 0) + 1

    def collect(self) -> Iterator:
        accepted = CounterMetricFamily(
            "fx_gateway_async_accepted", "Async calls stored in JetStream and answered 202", labels=["function"]
        )
        refused = CounterMetricFamily(
            "fx_gateway_async_refused", "Async calls that could not be stored (answered 503)", labels=["function"]
        )
        attempts = CounterMetricFamily(
            "fx_gateway_async_attempts", "Invocations of async calls, by result", labels=["function", "result"]
        )
        dead = CounterMetricFamily(
            "fx_gateway_async_dead_letters", "Async calls dead-lettered", labels=["function", "reason"]
        )
        callbacks = CounterMetricFamily("fx_gateway_async_callbacks", "Result callbacks, by result", labels=["result"])
        for function, n in list(self.accepted.items()):
            accepted.add_metric([function], n)
        for function, n in list(self.refused.items()):
            refused.add_metric([function], n)
        for key, n in list(self.attempts.items()):
            attempts.add_metric(list(key), n)
        for key, n in list(self.dead.items()):
            dead.add_metric(list(key), n)
        for result, n in list(self.callbacks.items()):
            callbacks.add_metric([result], n)
        in_flight = GaugeMetricFamily("fx_gateway_async_in_flight", "Async calls this gateway is running")
        in_flight.add_metric([], self.in_flight)
        yield from (accepted, refused, attempts, dead, callbacks, in_flight)
        retries = CounterMetricFamily(
            "fx_gateway_async_retries", "Failed async attempts given another try", labels=["function"]
        )
        backlog = GaugeMetricFamily(
            "fx_gateway_async_backlog", "Async calls stored and not yet done (sampled)", labels=["function"]
        )
        oldest = GaugeMetricFamily(
            "fx_gateway_async_oldest_age_seconds", "Age of the oldest async call stored (sampled)", labels=["function"]
        )
        for function, n in list(self.retries.items()):
            retries.add_metric([function], n)
        for function in set(self.accepted) | set(self.backlog):  # 0 once a backlog empties, not a vanished series
            count, age = self.backlog.get(function, (0, 0.0))
            backlog.add_metric([function], count)
            oldest.add_metric([function], age)
        yield from (retries, backlog, oldest)


class EventStats(Collector):
    """Events from triggers, by function, trigger and result ("ok", "error", "dropped", "scheduled")."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str, str], int] = {}
        self.batches: dict[tuple[str, str], Histogram] = {}  # durable triggers' batch sizes
        self.redeliveries: dict[tuple[str, str], int] = {}  # messages of those batches delivered before
        self.pending: dict[tuple[str, str], tuple[int, int]] = {}  # consumer (pending, ack pending): BacklogSampler

    def count(self, function: str, trigger: str, result: str) -> None:
        key = (function, trigger, result)
        self.events[key] = self.events.get(key, 0) + 1

    def batch(self, function: str, trigger: str, size: int, redelivered: int) -> None:
        key = (function, trigger)
        histogram = self.batches.get(key)
        if histogram is None:
            histogram = self.batches[key] = Histogram(BATCH_BUCKETS)
        histogram.observe(size)
        if redelivered:
            self.redeliveries[key] = self.redeliveries.get(key, 0) + redelivered

    def collect(self) -> Iterator:
        events = CounterMetricFamily(
            "fx_gateway_trigger_events",
            "Trigger events that invoked a function, by result (and NATS messages dropped while too many waited)",
            labels=["function", "trigger", "result"],
        )
        for key, n in list(self.events.items()):
            events.add_metric(list(key), n)
        yield events
        labels = ["function", "trigger"]
        batches = HistogramMetricFamily(
            "fx_gateway_trigger_batch_size", "Messages per batch of a durable trigger", labels=labels
        )
        redeliveries = CounterMetricFamily(
            "fx_gateway_trigger_redeliveries", "Messages of durable triggers delivered again", labels=labels
        )
        pending = GaugeMetricFamily(
            "fx_gateway_trigger_pending", "Messages a durable trigger's consumer has yet to deliver", labels=labels
        )
        ack_pending = GaugeMetricFamily(
            "fx_gateway_trigger_ack_pending", "Messages delivered and not yet acknowledged", labels=labels
        )
        for key, histogram in list(self.batches.items()):
            batches.add_metric(list(key), histogram.buckets(), histogram.sum)
            redeliveries.add_metric(list(key), self.redeliveries.get(key, 0))
        for key, (n, acks) in list(self.pending.items()):
            pending.add_metric(list(key), n)
            ack_pending.add_metric(list(key), acks)
        yield from (batches, redeliveries, pending, ack_pending)


class NatsState(Collector):
    """fx_gateway_nats_connected: whether the gateway's NATS connection is up, read at scrape time."""

    def __init__(self, connected: Callable[[], bool]) -> None:
        self.connected = connected

    def collect(self) -> Iterator:
        gauge = GaugeMetricFamily("fx_gateway_nats_connected", "1 while connected to NATS, else 0")
        gauge.add_metric([], 1 if self.connected() else 0)
        yield gauge
