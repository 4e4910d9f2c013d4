"""Throttles and quotas of API routes: token buckets per route, per API and per API key, and per-key quotas per
UTC day or month. `admit` runs on every limited request: synchronous, a few dict lookups and float operations.

Across N gateways (README "API keys and throttling"): every gateway reports its per-key counts to the controller
every --api-usage-interval (1 s) and learns from the reply how many gateways reported lately (N) and each quota's
totals. A throttle of rate R and burst B is enforced as R/N and max(1, B/N) by each gateway, so the gateways
together admit at most R·T + B over T seconds when the callers are spread evenly (a load balancer's job), and
fewer when they are not. A quota counts the totals of the last reply plus what this gateway admitted since; the
other gateways' requests of the last two intervals may be missing, so a quota is overshot by at most what the
others admit in two intervals: for a key with rate R and burst B, under 2*R*interval + B. One gateway (the
embedded mode) is exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from math import ceil
from typing import TYPE_CHECKING

import nats.errors
from fx import nats_client
from fx.protocol import SUBJECT_API_KEY_USAGE, ApiKeyUsageReply, ApiKeyUsageReport
from fx.quota_periods import DAY_S, day_of, month_of, period_end
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fx_gateway.api.api_keys import ApiKey, ApiKeys
from fx_gateway.api.decisions import Deny
from fx_gateway.api.metrics import denied
from fx_gateway.api.request import ApiRequest
from fx_gateway.config import Settings
from fx_gateway.nats_link import NatsLink

if TYPE_CHECKING:
    from fx_gateway.api.table import Route

log = logging.getLogger("fx_gateway")

THROTTLED = "Too Many Requests"
QUOTA_EXCEEDED = "Limit Exceeded"  # API Gateway's answer to a key over its usage plan's quota


class Bucket:
    """A token bucket: `burst` tokens at most, `rate` more each second, one per request."""

    __slots__ = ("burst", "gateways", "rate", "source", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float, source: object = None, gateways: int = 1) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now
        self.source = source  # what it was made from (a throttle's dict, a key): remade when that changes
        self.gateways = gateways  # the N it was made for

    @classmethod
    def share(cls, rate: float, burst: float, gateways: int, now: float, source: object, old: Bucket | None) -> Bucket:
        """This gateway's share of a throttle over `gateways` gateways; an old bucket's tokens are kept (up to
        the new burst), so a change of N or of the throttle neither refills nor empties it."""
        bucket = cls(rate / gateways, max(1.0, burst / gateways), now, source, gateways)
        if old is not None:
            old.refill(now)
            bucket.tokens = min(old.tokens, bucket.burst)
        return bucket

    def refill(self, now: float) -> None:
        tokens = self.tokens + (now - self.stamp) * self.rate
        self.tokens = tokens if tokens < self.burst else self.burst
        self.stamp = now

    def wait(self, now: float) -> float:
        """0 if a token is there (not taken: `take` does), else the seconds until one is."""
        self.refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


class ApiBuckets:
    __slots__ = ("bucket", "routes")

    def __init__(self) -> None:
        self.bucket: Bucket | None = None
        self.routes: dict[str, Bucket] = {}


class KeyCount:
    """One key's requests on this gateway, and the totals the controller last acknowledged, in UTC days."""

    __slots__ = (
        "bucket",
        "carried",
        "carry",
        "day",
        "day_end",
        "flight",
        "key",
        "month",
        "period_end",
        "requests",
        "today",
        "unsent",
    )

    def __init__(self, key: ApiKey, now: float) -> None:
        self.key = key
        self.bucket: Bucket | None = None
        self.requests = 0  # admitted by this gateway, ever (fx_gateway_api_key_requests_total)
        self.unsent = 0  # admitted today, not yet reported
        self.flight = 0  # of today's, reported and not yet acknowledged
        self.carry: list[tuple[int, int]] = []  # (day, requests) of earlier days not yet acknowledged
        self.carried = 0  # of those, the ones in this month: they count against a monthly quota until acknowledged
        self.today = self.month = 0  # the controller's totals, all gateways, as of its last reply
        self.day = day_of(now)
        self.day_end = (self.day + 1) * DAY_S
        self.period_end = period_end(now, key.period)

    def roll(self, now: float) -> None:
        """A new UTC day: today's counts become an earlier day's."""
        day = day_of(now)
        same_month = month_of(day) == month_of(self.day)
        if self.unsent:
            self.carry.append((self.day, self.unsent))
        self.carried = self.carried + self.unsent + self.flight if same_month else 0
        self.unsent = self.flight = self.today = 0
        if not same_month:
            self.month = 0
        self.day, self.day_end = day, (day + 1) * DAY_S
        self.period_end = period_end(now, self.key.period)

    def used(self) -> int:
        """Requests against the quota: the controller's totals plus what it has not acknowledged from here."""
        if self.key.period == "day":
            return self.today + self.unsent + self.flight
        return self.month + self.carried + self.unsent + self.flight

    def take_report(self) -> list[tuple[str, int, int]]:
        counts = [(self.key.id, day, n) for day, n in self.carry]
        if self.unsent:
            counts.append((self.key.id, self.day, self.unsent))
        self.flight += self.unsent
        self.unsent = 0
        self.carry = []
        return counts

    def acknowledged(self, reply: ApiKeyUsageReply) -> None:
        self.flight = self.carried = 0
        used = reply.used.get(self.key.id)
        if used is not None and reply.day == self.day:
            self.today, self.month = used

    def not_acknowledged(self, counts: list[tuple[str, int, int]]) -> None:
        """The report was lost: its counts go again with the next one."""
        self.flight = 0
        for _, day, n in counts:
            if day == self.day:
                self.unsent += n
            else:
                self.carry.append((day, n))


class Limits(Collector):
    def __init__(
        self,
        settings: Settings,
        link: NatsLink,
        keys: ApiKeys,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.keys = keys
        self.interval = settings.api_usage_interval
        self.gateways = 1  # live gateways, as the controller last said: each enforces rate / gateways
        self._totals = ApiKeyUsageReply(1, 0, {})  # the last reply: a key first used here starts from its totals
        self._clock = clock
        self._wall = wall
        self._apis: dict[str, ApiBuckets] = {}
        self._counts: dict[str, KeyCount] = {}  # key id -> its counts, once it is used here
        self._throttled: dict[int, Deny] = {}  # Retry-After seconds -> its answer, made once
        self.reports = {"ok": 0, "failed": 0}  # API key reports the controller acknowledged, or not

    def admit(self, request: ApiRequest, route: Route, key_id: str | None) -> Deny | None:
        """None if the request may go on (it is counted); else the 429 that refuses it, with Retry-After. Route,
        API and key throttles are checked before any takes a token, so a refused request costs none."""
        now = self._clock()
        gateways = self.gateways
        route_bucket = api_bucket = key_bucket = None
        wait = 0.0
        throttle = route.throttle
        if throttle is not None:
            buckets = self._apis.get(route.api.name) or self._api(route.api.name)
            route_bucket = buckets.routes.get(route.key)
            if route_bucket is None or route_bucket.source is not throttle or route_bucket.gateways != gateways:
                route_bucket = buckets.routes[route.key] = Bucket.share(
                    throttle["rate"], throttle["burst"], gateways, now, throttle, route_bucket
                )
            wait = route_bucket.wait(now)
        throttle = route.api.throttle
        if throttle is not None and not wait:
            buckets = self._apis.get(route.api.name) or self._api(route.api.name)
            api_bucket = buckets.bucket
            if api_bucket is None or api_bucket.source is not throttle or api_bucket.gateways != gateways:
                api_bucket = buckets.bucket = Bucket.share(
                    throttle["rate"], throttle["burst"], gateways, now, throttle, api_bucket
                )
            wait = api_bucket.wait(now)
        count = None
        if key_id is not None and not wait:
            count = self._counts.get(key_id)
            if count is None:
                key = self.keys.get(key_id)
                if key is not None:  # else removed since its check: limited by its route and API only
                    count = self._counts[key_id] = KeyCount(key, self._wall())
                    count.acknowledged(self._totals)  # a quota used elsewhere (or before a restart) counts
            if count is not None:
                key = count.key
                wall = self._wall()
                if wall >= count.day_end:
                    count.roll(wall)
                if key.rate is not None:
                    key_bucket = count.bucket
                    if key_bucket is None or key_bucket.gateways != gateways:
                        burst = key.burst or ceil(key.rate)
                        key_bucket = count.bucket = Bucket.share(key.rate, burst, gateways, now, key, key_bucket)
                    wait = key_bucket.wait(now)
                if not wait and key.quota is not None and count.used() >= key.quota:
                    denied(request.api, request.route_key, "quota")
                    retry = max(1, ceil(count.period_end - wall))
                    return Deny(429, QUOTA_EXCEEDED, ((b"Retry-After", b"%d" % retry),))
        if wait:
            denied(request.api, request.route_key, "throttled")
            return self._throttle(max(1, ceil(wait)))
        if route_bucket is not None:
            route_bucket.take()
        if api_bucket is not None:
            api_bucket.take()
        if key_bucket is not None:
            key_bucket.take()
        if count is not None:
            count.unsent += 1
            count.requests += 1
        return None

    def _api(self, name: str) -> ApiBuckets:
        self._apis[name] = buckets = ApiBuckets()
        return buckets

    def _throttle(self, retry: int) -> Deny:
        deny = self._throttled.get(retry)
        if deny is None:
            deny = self._throttled[retry] = Deny(429, THROTTLED, ((b"Retry-After", b"%d" % retry),))
        return deny

    # --- the reports to the controller ---------------------------------------------------------------

    async def report(self) -> None:
        """Every interval, the first at once: this gateway's counts to the controller (KeyCount), and back the
        number of gateways and the quotas' totals. Sent even when there is nothing to count: that is how the
        others learn N, and how a gateway just started learns the quotas used."""
        while True:
            nc = self.link.nc
            if nc is not None and nc.is_connected:  # else the counts keep adding up until a report can go out
                await self._report(nc)
            await asyncio.sleep(self.interval)

    async def _report(self, nc: nats_client.Client) -> None:
        taken = {key_id: count.take_report() for key_id, count in self._counts.items()}
        counts = [entry for entries in taken.values() for entry in entries]
        report = ApiKeyUsageReport(self.link.gateway_id, self.interval, counts)
        try:
            msg = await nc.request(SUBJECT_API_KEY_USAGE, report.to_json(), timeout=max(self.interval, 1.0))
            reply = ApiKeyUsageReply.from_json(msg.data)
        except (nats.errors.Error, TimeoutError, ValueError, KeyError, TypeError) as exc:
            log.debug("API key usage not acknowledged (%s); sent again next time", exc)
            self.reports["failed"] += 1
            for key_id, entries in taken.items():
                if key_id in self._counts:
                    self._counts[key_id].not_acknowledged(entries)
            return
        self.reports["ok"] += 1
        self.acknowledged(reply)

    def acknowledged(self, reply: ApiKeyUsageReply) -> None:
        if reply.gateways != self.gateways:
            log.info("API throttles: %d gateways share them (was %d)", reply.gateways, self.gateways)
            self.gateways = reply.gateways
        self._totals = reply
        for key_id, count in list(self._counts.items()):
            count.acknowledged(reply)
            if self.keys.get(key_id) is None:  # removed (a key never changes: ids are not reused)
                del self._counts[key_id]

    def collect(self) -> Iterator:
        requests = CounterMetricFamily(
            "fx_gateway_api_key_requests",
            "Requests admitted on API routes, by API key (its name)",
            labels=["api", "key"],
        )
        for count in list(self._counts.values()):
            requests.add_metric([count.key.api, count.key.name], count.requests)
        gateways = GaugeMetricFamily(
            "fx_gateway_api_gateways", "Gateways sharing each API throttle, as the controller last said (rate / N each)"
        )
        gateways.add_metric([], self.gateways)
        reports = CounterMetricFamily(
            "fx_gateway_api_usage_reports",
            "API key reports to the controller: ok (acknowledged, totals and N received), failed (sent again)",
            labels=["result"],
        )
        for result, n in self.reports.items():
            reports.add_metric([result], n)
        yield from (requests, gateways, reports)
