"""The queues behind the gateway, sampled on a slow timer for /metrics: the async calls waiting per function (and
the age of the oldest) and every durable trigger's consumer (pending, ack-pending).

A few JetStream API requests per --backlog-interval, none per request: the async stream's per-subject counts in
one stream info, one message read per function that has a backlog (at most MAX_OLDEST of them), one consumer
info per durable trigger this gateway runs. Every gateway samples the same numbers: dashboards take the max.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime

import nats.errors
import nats.js.errors
from fx.protocol import ASYNC_PREFIX, ASYNC_SUBJECTS, STREAM_ASYNC, async_subject
from nats.js import JetStreamContext

from fx_gateway.events.durable_triggers import DurableTrigger, consumer_name
from fx_gateway.proxy.stats import AsyncStats, EventStats

log = logging.getLogger("fx_gateway")

MAX_OLDEST = 100  # functions with a backlog whose oldest call is read per sample; the rest show age 0


class BacklogSampler:
    def __init__(
        self,
        js: JetStreamContext,
        async_stats: AsyncStats,
        event_stats: EventStats,
        triggers: Callable[[], list[DurableTrigger]],
        interval: float,
    ) -> None:
        self.js = js
        self.async_stats = async_stats
        self.event_stats = event_stats
        self.triggers = triggers
        self.interval = interval

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except (nats.errors.Error, OSError) as exc:  # NATS away: the last numbers stay until it is back
                log.debug("backlog sample failed: %s", exc)
            except Exception:  # a bug: said, and the next sample tried all the same
                log.exception("backlog sample failed")
            await asyncio.sleep(self.interval)

    async def sample(self) -> None:
        await self._async_backlog()
        await self._consumers()

    async def _async_backlog(self) -> None:
        info = await self.js.stream_info(STREAM_ASYNC, subjects_filter=ASYNC_SUBJECTS)
        counts = {subject.removeprefix(ASYNC_PREFIX): n for subject, n in (info.state.subjects or {}).items()}
        now, backlog = time.time(), {}
        for i, (function, n) in enumerate(sorted(counts.items(), key=lambda item: -item[1])):
            age = 0.0
            if i < MAX_OLDEST:
                oldest = await self.js.get_msg(STREAM_ASYNC, seq=1, subject=async_subject(function), next=True)
                age = max(now - _stored_at(oldest.time), 0.0)
            backlog[function] = (n, age)
        self.async_stats.backlog = backlog  # functions whose backlog emptied drop to 0 below

    async def _consumers(self) -> None:
        pending = {}
        for trigger in self.triggers():
            try:
                info = await self.js.consumer_info(trigger.route.stream, consumer_name(trigger.function, trigger.route))
            except nats.js.errors.NotFoundError:
                continue  # being made again (the stream was lost): no number is better than a stale one
            pending[(trigger.function, trigger.key)] = (info.num_pending or 0, info.num_ack_pending or 0)
        self.event_stats.pending = pending


def _stored_at(stamp: datetime | str | None) -> float:
    """A JetStream message's time (nats-py gives a datetime; older ones the RFC 3339 text) as a Unix time."""
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if not stamp:
        return time.time()
    return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
