"""The gateway's NATS side: route tables in (KV watch), activation requests and load reports out,
async calls stored (JetStream) and run (AsyncWorker)."""

from __future__ import annotations

import asyncio
import logging

import nats
import nats.errors
import nats.js.errors
from fx import kv_watch
from fx.protocol import (
    KV_ROUTES,
    LOAD_REPORT_INTERVAL_S,
    STREAM_ASYNC,
    SUBJECT_ACTIVATE,
    SUBJECT_LOAD,
    ActivationReply,
    ActivationRequest,
    LoadReport,
    RouteTable,
    async_subject,
)
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from fx_gateway.app import Gateway
from fx_gateway.async_accept import StoreUnavailable
from fx_gateway.async_worker import AsyncWorker, ensure_streams
from fx_gateway.dispatch import NoController
from fx_gateway.durable_triggers import DurableTriggers
from fx_gateway.nats_triggers import NatsTriggers
from fx_gateway.schedules import Schedules
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

CONNECT_RETRY_S = 0.5
STORE_TIMEOUT_S = 5.0  # for JetStream's acknowledgement of a stored async call


class NatsLink:
    def __init__(self, gateway: Gateway, url: str, gateway_id: str) -> None:
        self.gateway = gateway
        self.url = url
        self.gateway_id = gateway_id
        self.nc: NATS | None = None
        self.loaded = False  # the initial route tables are in
        self.worker: AsyncWorker | None = None
        self.triggers: NatsTriggers | None = None
        self.durable: DurableTriggers | None = None
        self.schedules: Schedules | None = None
        self._tasks: list[asyncio.Task] = []
        gateway.activator = self.activate
        gateway.healthy = self.healthy
        gateway.enqueue = self.enqueue

    def healthy(self) -> bool:
        return self.loaded and self.nc is not None and self.nc.is_connected

    async def start(self) -> None:
        """Connect (retrying until NATS is up, so start order does not matter), then follow the route tables."""
        warned = False
        while self.nc is None:
            try:
                self.nc = await nats.connect(
                    self.url,
                    name=f"fx-gateway {self.gateway_id}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=CONNECT_RETRY_S,
                    allow_reconnect=True,
                    connect_timeout=2,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._error,
                    user_credentials=self.gateway.settings.nats_creds,
                )
            except (OSError, nats.errors.Error) as exc:
                if not warned:
                    log.warning("NATS at %s not reachable (%s); retrying", self.url, exc)
                    warned = True
                await asyncio.sleep(CONNECT_RETRY_S)
        log.info("connected to NATS at %s", self.url)
        kv = await self._bucket()
        gateway = self.gateway
        self.triggers = NatsTriggers(gateway, self.nc, gateway.settings.trigger_concurrency, gateway.event_stats)
        self.durable = DurableTriggers(gateway, self.nc, gateway.event_stats)
        try:
            await ensure_streams(self.nc.jetstream(), self.gateway.settings.async_ack_wait)  # type: ignore[union-attr]
            self.worker = AsyncWorker(self.gateway, self.nc, self.gateway.settings, self.gateway.async_stats)  # type: ignore[arg-type]
            self.schedules = Schedules(gateway, self.worker.js, gateway.event_stats)  # ticks are async calls
        except nats.errors.Error as exc:
            log.error("async calls disabled: cannot set up their JetStream streams: %s", exc)
        self._tasks = [spawn(self._watch(kv)), spawn(self._report())]

    async def _bucket(self) -> KeyValue:
        """The route tables' bucket. Only on a NATS without auth may a gateway create it; with its own user
        it waits for the controller to (start order does not matter)."""
        js = self.nc.jetstream()  # type: ignore[union-attr]
        warned = False
        while True:
            try:
                return await js.key_value(KV_ROUTES)
            except nats.js.errors.BucketNotFoundError:
                pass
            try:
                return await js.create_key_value(bucket=KV_ROUTES, history=1)
            except nats.js.errors.Error:  # the controller made it meanwhile
                return await js.key_value(KV_ROUTES)
            except nats.errors.Error as exc:  # not allowed to: the controller will
                if not warned:
                    log.warning("waiting for the controller to create KV %s (%s)", KV_ROUTES, exc)
                    warned = True
                await asyncio.sleep(CONNECT_RETRY_S)

    async def _watch(self, kv: KeyValue) -> None:
        async for entry in kv_watch.watch(kv):
            if entry is None:  # everything that existed when the watch began has been delivered
                if not self.loaded:
                    self.loaded = True
                    log.info("route tables loaded: %d functions", len(self.gateway.functions))
                    if self.worker is not None:  # only now: a call for a function not yet loaded is not lost
                        self._tasks.append(spawn(self.worker.run()))
                continue
            if entry.operation in kv_watch.DELETED:
                self.gateway.remove(entry.key)
            else:
                try:
                    table = RouteTable.from_json(entry.value)
                except (ValueError, TypeError, KeyError) as exc:
                    log.error("route table %r unreadable, ignored: %s", entry.key, exc)
                    continue
                self.gateway.apply(table)
            try:
                await self.triggers.sync(entry.key)  # type: ignore[union-attr]
                await self.durable.sync(entry.key)  # type: ignore[union-attr]
                if self.schedules is not None:
                    self.schedules.sync(entry.key)
            except nats.errors.Error as exc:
                log.error("function %s: cannot subscribe to its triggers: %s", entry.key, exc)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(LOAD_REPORT_INTERVAL_S)
            nc = self.nc
            if nc is None or not nc.is_connected:
                continue  # counts keep accumulating until a report can go out
            report = LoadReport(self.gateway_id, self.gateway.stats.load())
            await nc.publish(SUBJECT_LOAD, report.to_json())

    async def activate(self, request: ActivationRequest, timeout: float) -> ActivationReply:
        nc = self.nc
        if nc is None or not nc.is_connected:
            raise NoController
        try:
            msg = await nc.request(SUBJECT_ACTIVATE, request.to_json(), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NoController from None
        except nats.errors.TimeoutError:
            raise TimeoutError from None
        except nats.errors.Error as exc:
            log.warning("activation request failed: %s", exc)
            raise NoController from None
        return ActivationReply.from_json(msg.data)

    async def enqueue(self, function: str, body: bytes, headers: dict[str, str]) -> None:
        """Store an async call; returns once JetStream has it (raises StoreUnavailable otherwise)."""
        nc, stats = self.nc, self.gateway.async_stats
        try:
            if nc is None or not nc.is_connected or self.worker is None:
                raise StoreUnavailable("NATS JetStream is not reachable")
            try:
                js = self.worker.js
                await js.publish(async_subject(function), body, STORE_TIMEOUT_S, STREAM_ASYNC, headers)
            except nats.errors.Error as exc:
                raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        except StoreUnavailable:
            stats.count(stats.refused, function)
            raise
        stats.count(stats.accepted, function)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.schedules is not None:
            self.schedules.close()
        if self.durable is not None:
            await self.durable.close()
        if self.worker is not None:
            await self.worker.close(self.gateway.settings.drain_timeout)
        if self.nc is not None:
            try:
                await self.nc.drain()
            except (nats.errors.Error, OSError):
                await self.nc.close()

    async def _disconnected(self) -> None:
        log.warning("NATS disconnected; serving from the route tables held")

    async def _reconnected(self) -> None:
        log.info("NATS reconnected")

    async def _error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)
