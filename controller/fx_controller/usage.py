"""Billed usage per function version and hour, kept in NATS (KV_USAGE) so it outlives the controller: the
gateways report what their replicas billed (UsageReport, every --usage-interval), GET /system/usage sums a window.

One key per version and hour ("<hour>.<function>.<version>" -> {"invocations": n, "mb_ms": m}); a key expires
--usage-retention after its last change. All keys are read once at start (a few thousand: 24 a day per version
in use) and kept in memory; a report is acknowledged once its keys are stored, so a gateway sends again what a
controller lost before storing it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from fx import kv_watch
from fx.models import NAME_RE
from fx.nats_client import Client
from fx.protocol import KV_USAGE, SUBJECT_USAGE, UsageReport
from fx.usage import Usage, UsageRow
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

log = logging.getLogger("fx_controller.usage")

HOUR_S = 3600


class UsageBook:
    def __init__(
        self, js: JetStreamContext, retention: float, replicas: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._js = js
        self._retention = retention
        self._replicas = replicas
        self._clock = clock
        self._kv: KeyValue | None = None
        self._hours: dict[tuple[int, str, int], list[int]] = {}  # (hour, function, version) -> [invocations, mb_ms]

    @classmethod
    async def open(cls, js: JetStreamContext, retention: float, replicas: int) -> UsageBook:
        book = cls(js, retention, replicas)
        # kv_watch.load, not kv.keys(): nats-py's watch may say "no more keys" before the stored ones arrive
        # (nats-io/nats.py#842), and a controller restarting on a busy host then lost the hours it had billed.
        for key, raw in (await kv_watch.load(await book._bucket())).items():
            hour, function, version = key.split(".")
            value = json.loads(raw or b"{}")
            book._hours[(int(hour), function, int(version))] = [value.get("invocations", 0), value.get("mb_ms", 0)]
        return book

    async def _bucket(self) -> KeyValue:
        """The bucket, made again if NATS lost it (what it held is lost with it)."""
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(KV_USAGE)
            except nats.js.errors.BucketNotFoundError:
                config = {"bucket": KV_USAGE, "history": 1, "ttl": self._retention, "replicas": self._replicas}
                self._kv = await self._js.create_key_value(**config)
        return self._kv

    async def serve(self, nc: Client) -> None:
        await nc.subscribe(SUBJECT_USAGE, cb=self._on_report)

    async def _on_report(self, msg: Msg) -> None:
        try:
            report = UsageReport.from_json(msg.data)
        except (ValueError, KeyError, TypeError, IndexError):
            log.warning("ignoring a malformed usage report: %r", msg.data[:200])
            await msg.respond(b"malformed")  # sending it again would not help
            return
        try:
            await self.add(report)
        except nats.errors.Error as exc:  # not stored: no reply, and the gateway sends it again
            log.warning("usage report from %s not stored (%s); it comes again", report.gateway, exc)
            self._kv = None  # looked up (or made) again next time
            return
        await msg.respond(b"ok")

    async def add(self, report: UsageReport) -> None:
        """Adds a gateway's report to the current hour: stored first, then counted, so a report that failed half
        way and comes again is not counted twice."""
        hour = int(self._clock() // HOUR_S)
        for old in [k for k in self._hours if (hour - k[0]) * HOUR_S > self._retention]:  # gone from NATS too
            del self._hours[old]
        updated = {}
        for key, (invocations, mb_ms) in report.versions.items():
            function, _, version = key.rpartition("/")
            if not NAME_RE.match(function) or not version.isdigit() or invocations < 0 or mb_ms < 0:
                log.warning("usage report from %s: %r is no function version; ignored", report.gateway, key)
                continue
            hour_key = (hour, function, int(version))
            totals = self._hours.get(hour_key, [0, 0])
            updated[hour_key] = [totals[0] + invocations, totals[1] + mb_ms]
        kv = await self._bucket()
        for (_, function, version), (invocations, mb_ms) in updated.items():
            value = json.dumps({"invocations": invocations, "mb_ms": mb_ms}).encode()
            await kv.put(f"{hour}.{function}.{version}", value)
        self._hours.update(updated)

    def window(self, since: float) -> Usage:
        """Usage of the last `since` seconds, widened to the whole hours it touches."""
        now = self._clock()
        first = int((now - since) // HOUR_S)
        sums: dict[tuple[str, int], list[int]] = {}
        for (hour, function, version), (invocations, mb_ms) in self._hours.items():
            if hour >= first:
                totals = sums.setdefault((function, version), [0, 0])
                totals[0] += invocations
                totals[1] += mb_ms
        rows = [
            UsageRow(function=f, version=v, invocations=n, gb_seconds=mb_ms / 1024 / 1000)
            for (f, v), (n, mb_ms) in sorted(sums.items())
        ]
        return Usage(
            since=datetime.fromtimestamp(first * HOUR_S, UTC), until=datetime.fromtimestamp(now, UTC), rows=rows
        )
