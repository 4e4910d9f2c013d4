"""The event engines on the gateway's NATS connection: async calls stored and run, NATS and durable triggers,
schedules. Started once connected, kept equal to the route tables by `sync`."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from nats.aio.client import Client as NATS

from fx_gateway.config import Settings
from fx_gateway.events import jetstream
from fx_gateway.events.async_accept import StoreUnavailable, StoreUnconfirmed
from fx_gateway.events.async_worker import AsyncWorker
from fx_gateway.events.backlog import BacklogSampler
from fx_gateway.events.batches import Batcher
from fx_gateway.events.callback_delivery import Callbacks
from fx_gateway.events.callback_policy import CallbackPolicy
from fx_gateway.events.durable_triggers import DurableTriggers
from fx_gateway.events.nats_triggers import NatsTriggers
from fx_gateway.events.schedules import Schedules
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.stats import AsyncStats, EventStats
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")


class Events:
    def __init__(self, settings: Settings, book: RouteBook, policy: CallbackPolicy) -> None:
        self.settings = settings
        self.book = book
        self.policy = policy  # where callbacks may go
        self.async_stats = AsyncStats()
        self.event_stats = EventStats()
        self.nc: NATS | None = None
        self.triggers: NatsTriggers | None = None
        self.durable: DurableTriggers | None = None
        self.worker: AsyncWorker | None = None  # None: async calls are off (their streams are missing)
        self.schedules: Schedules | None = None  # ticks are async calls: off with them
        self.storer: jetstream.Storer | None = None  # stores async calls: off with them too
        self._worker_task: asyncio.Task | None = None
        self._sampler_task: asyncio.Task | None = None

    async def start(self, nc: NATS) -> None:
        settings, book = self.settings, self.book
        self.nc = nc
        batcher = Batcher(book, settings.trigger_batch_max)
        self.triggers = NatsTriggers(book, nc, settings, self.event_stats, batcher)
        self.durable = DurableTriggers(book, nc, self.event_stats, settings.async_ack_wait, batcher)
        js = nc.jetstream()
        storer = jetstream.Storer(nc)
        try:
            await jetstream.ensure_streams(js, settings.async_ack_wait, settings.nats_replicas)
            await storer.start()
        except nats.errors.Error as exc:
            log.error("async calls disabled: cannot set up their JetStream streams: %s", exc)
            return
        self.storer = storer
        callbacks = Callbacks(nc, self.policy, self.async_stats)
        self.worker = AsyncWorker(book, nc, settings, self.async_stats, callbacks, batcher)
        self.schedules = Schedules(book, self.storer.store, self.event_stats)
        durable = self.durable
        sampler = BacklogSampler(
            js, self.async_stats, self.event_stats, lambda: list(durable.running.values()), settings.backlog_interval
        )
        self._sampler_task = spawn(sampler.run())

    def loaded(self) -> None:
        """The initial route tables are in: run stored calls from now on (none is taken for a function not yet
        known, which would dead-letter it)."""
        if self.worker is not None and self._worker_task is None:
            self._worker_task = spawn(self.worker.run())

    async def sync(self, function: str) -> None:
        """Subscribe to the function's triggers as its route table now says."""
        if self.triggers is not None and self.durable is not None:
            await self.triggers.sync(function)
            await self.durable.sync(function)
        if self.schedules is not None:
            self.schedules.sync(function)

    async def enqueue(self, function: str, body: bytes, headers: dict[str, str]) -> None:
        """Store an async call; returns once JetStream has it (raises StoreUnavailable otherwise: StoreUnconfirmed
        when its acknowledgement did not come in time, the call perhaps stored)."""
        nc, stats = self.nc, self.async_stats
        try:
            if nc is None or not nc.is_connected or self.storer is None:
                raise StoreUnavailable("NATS JetStream is not reachable")
            try:
                await self.storer.store(function, body, headers)
            except nats.errors.TimeoutError as exc:
                raise StoreUnconfirmed(
                    f"no acknowledgement from JetStream within {jetstream.STORE_TIMEOUT_S:g} s"
                ) from exc
            except nats.errors.Error as exc:
                raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        except StoreUnavailable:
            stats.count(stats.refused, function)
            raise
        stats.count(stats.accepted, function)

    async def close(self, timeout: float) -> None:
        """Stop every engine; the async calls under way get `timeout` s to finish."""
        for task in (self._worker_task, self._sampler_task):
            if task is not None:
                task.cancel()
        if self.schedules is not None:
            self.schedules.close()
        if self.storer is not None:
            self.storer.close()
        if self.durable is not None:
            await self.durable.close()
        if self.worker is not None:
            await self.worker.close(timeout)
