"""Route tables: what each gateway needs to route a function, written to KV fx_routes on every change."""

from __future__ import annotations

import time

from fx.models import TriggerSpec
from fx.protocol import RouteTable, TriggerRoute, VersionRoute, kv_stream, kv_subject
from nats.js.kv import KeyValue

from ..replicas.fleet import Fleet
from .store import FunctionRecord, FunctionStore

MAX_REQUEST_BYTES = 6 * 1024 * 1024


def build_table(record: FunctionRecord, fleet: Fleet, revision: int) -> RouteTable:
    return RouteTable(
        function=record.name,
        revision=revision,
        traffic={str(v): pct for v, pct in record.traffic.items()},
        versions={
            str(v.version): VersionRoute(
                endpoints=fleet.endpoints(record.name, v.version),
                concurrency=v.spec.scale.concurrency,
                token=fleet.token(record.name, v.version),
                standby=fleet.standby(record.name, v.version),
            )
            for v in record.versions
        },
        aliases={alias: str(v) for alias, v in record.aliases.items()},
        alias_traffic={a: {str(v): pct for v, pct in split.items()} for a, split in record.alias_traffic.items()},
        timeout_ms=int(max(v.spec.timeout for v in record.versions) * 1000),  # the gateway's backstop
        max_request_bytes=MAX_REQUEST_BYTES,
        sticky=record.sticky,
        triggers=triggers(record),
    )


def triggers(record: FunctionRecord) -> list[TriggerRoute]:
    """The triggers of every version that takes traffic, each once (in version order)."""
    found: dict[str, TriggerRoute] = {}
    for version in record.versions:
        if record.traffic.get(version.version, 0) > 0:
            for trigger in version.spec.triggers:
                found.setdefault(trigger.key, route(trigger))
    return list(found.values())


def route(trigger: TriggerSpec) -> TriggerRoute:
    if trigger.jetstream is not None:
        js = trigger.jetstream
        kind, subject, stream, durable = "jetstream", js.subject or "", js.stream, js
    elif trigger.kv is not None:
        kv = trigger.kv
        kind, subject, stream, durable = "kv", kv_subject(kv.bucket, kv.keys), kv_stream(kv.bucket), kv
    elif trigger.schedule is not None:
        return TriggerRoute("schedule", schedule=trigger.schedule, timezone=trigger.timezone or "UTC")
    else:
        return TriggerRoute("nats", trigger.nats or "")
    return TriggerRoute(
        kind,
        subject,
        stream,
        durable.batch,
        durable.window_ms,
        durable.max_in_flight,
        durable.max_deliver,
        durable.backoff,
    )


class RoutePublisher:
    def __init__(self, kv: KeyValue, store: FunctionStore, fleet: Fleet) -> None:
        self._kv = kv
        self._store = store
        self._fleet = fleet
        self._revision = 0

    def _next_revision(self) -> int:
        # Wall-clock nanoseconds keep revisions increasing across controller restarts.
        self._revision = max(self._revision + 1, time.time_ns())
        return self._revision

    async def publish(self, name: str) -> None:
        record = self._store.get(name)
        if record is None:  # deleted meanwhile: its key is gone and must stay gone
            return
        table = build_table(record, self._fleet, self._next_revision())
        await self._kv.put(name, table.to_json())

    async def publish_all(self) -> None:
        for record in self._store.all():
            await self.publish(record.name)

    async def delete(self, name: str) -> None:
        await self._kv.delete(name)
