"""Requests per API key and UTC day, all gateways together, kept in NATS (KV fx_api_usage) so quotas outlive the
controller.

Every gateway sends what it admitted per key since its last acknowledged report (ApiKeyUsageReport, every
--api-usage-interval, 1 s) and gets back, once that is stored, the day's and month's totals of every key with a
quota and the number of gateways that reported lately (ApiKeyUsageReply): a gateway refuses a key whose totals
plus its own unreported count reach the quota, and enforces rate / gateways of each throttle.

One KV key per API key and day ("<key id>.<day>" -> count), expiring 35 days after its last change (a month's
quota needs its month's days); all are read once at start and kept in memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import nats.errors
from fx import kv_watch
from fx.nats_client import Client
from fx.protocol import KV_API_USAGE, SUBJECT_API_KEY_USAGE, ApiKeyUsageReply, ApiKeyUsageReport
from fx.quota_periods import DAY_S, day_of, month_of
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from ..nats_buckets import open_kv

log = logging.getLogger("fx_controller.api_keys")

RETENTION_S = 35 * DAY_S
LIVE_REPORTS = 3  # a gateway is live while its last report is at most this many of its intervals old


class ApiKeyUsage:
    def __init__(
        self,
        js: JetStreamContext,
        replicas: int,
        quota_keys: Callable[[], Iterable[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`quota_keys`: the ids of the keys with a quota, whose totals every reply carries."""
        self._js = js
        self.quota_keys = quota_keys
        self._replicas = replicas
        self._clock = clock
        self._kv: KeyValue | None = None
        self._days: dict[tuple[str, int], int] = {}  # (key id, day) -> requests
        self._months: dict[tuple[str, tuple[int, int]], int] = {}  # (key id, (year, month)) -> requests
        self._seen: dict[str, float] = {}  # gateway -> monotonic deadline until which it counts as live

    @classmethod
    async def open(cls, js: JetStreamContext, replicas: int, quota_keys: Callable[[], Iterable[str]]) -> ApiKeyUsage:
        usage = cls(js, replicas, quota_keys)
        for key, value in (await kv_watch.load(await usage._bucket())).items():  # one watch, not a get per key
            key_id, _, day = key.rpartition(".")
            usage._set(key_id, int(day), int(value or b"0"))
        return usage

    async def _bucket(self) -> KeyValue:
        """The bucket, made again if NATS lost it (what it held is lost with it)."""
        if self._kv is None:
            self._kv = await open_kv(self._js, KV_API_USAGE, self._replicas, ttl=RETENTION_S)
        return self._kv

    async def serve(self, nc: Client) -> None:
        await nc.subscribe(SUBJECT_API_KEY_USAGE, cb=self._on_report)

    async def _on_report(self, msg: Msg) -> None:
        try:
            report = ApiKeyUsageReport.from_json(msg.data)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed API key usage report: %r", msg.data[:200])
            return
        try:
            await self.add(report.counts)
        except nats.errors.Error as exc:  # not stored: no reply, and the gateway sends its counts again
            log.warning("API key usage from %s not stored (%s); it comes again", report.gateway, exc)
            self._kv = None
            return
        now = time.monotonic()
        self._seen[report.gateway] = now + LIVE_REPORTS * report.interval
        self._seen = {gateway: until for gateway, until in self._seen.items() if until >= now}
        await msg.respond(self.reply(len(self._seen)).to_json())

    async def add(self, counts: list[tuple[str, int, int]]) -> None:
        """Stored first, then counted, so a report that failed half way and comes again is not counted twice."""
        updated: dict[tuple[str, int], int] = {}
        for key_id, day, n in counts:
            if n > 0:
                key = (key_id, day)
                updated[key] = updated.get(key, self._days.get(key, 0)) + n
        if not updated:
            return
        kv = await self._bucket()
        for (key_id, day), total in updated.items():
            await kv.put(f"{key_id}.{day}", str(total).encode())
        for (key_id, day), total in updated.items():
            self._set(key_id, day, total)

    def _set(self, key_id: str, day: int, total: int) -> None:
        """A day's total, and its month's with it (a reply names every quota's month: no sum over days)."""
        month = (key_id, month_of(day))
        self._months[month] = self._months.get(month, 0) + total - self._days.get((key_id, day), 0)
        self._days[(key_id, day)] = total

    def reply(self, gateways: int) -> ApiKeyUsageReply:
        today = day_of(self._clock())
        return ApiKeyUsageReply(gateways, today, {key: self.used(key, today) for key in self.quota_keys()})

    def used(self, key_id: str, today: int | None = None) -> tuple[int, int]:
        """A key's requests (today, this month), UTC."""
        today = day_of(self._clock()) if today is None else today
        return self._days.get((key_id, today), 0), self._months.get((key_id, month_of(today)), 0)

    async def forget(self, key_id: str) -> None:
        """A removed key's counts go with it (a new key never has its id: ids are random)."""
        kv = await self._bucket()
        for key in [k for k in self._days if k[0] == key_id]:
            await kv.purge(f"{key_id}.{key[1]}")
            del self._days[key]
        for month in [m for m in self._months if m[0] == key_id]:
            del self._months[month]
