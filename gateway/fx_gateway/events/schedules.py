"""Schedule triggers: at each tick, store one async call with EventBridge's "Scheduled Event".

Every gateway keeps the clock of every schedule and, at each tick, publishes the call into the async stream
with the JetStream message id "<function>/<trigger key>/<tick>". The stream drops the copies the other gateways
publish within its duplicate window, so a tick runs once while any gateway is up, and from the stream on it is an
async call like any other: retries, maximum age, dead letter. A gateway that wakes more than half that window
late skips the tick (the others have stored it), so skewed clocks or a stalled host cannot run it twice. Ticks
while no gateway runs are not replayed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import nats.errors
from fx.async_streams import DUPLICATE_WINDOW_S
from fx.protocol import ASYNC_CALL_ID, ASYNC_FUNCTION, ASYNC_METHOD, ASYNC_TARGET, REPLICA_INVOKE_PATH, TriggerRoute
from fx.schedule import parse, schedule_key

from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.stats import EventStats
from fx_gateway.tasks import spawn

# Stores an async call once per message id (function, body, headers, id); False: a copy (jetstream.Storer.store).
Store = Callable[[str, bytes, dict[str, str], str], Awaitable[bool]]

log = logging.getLogger("fx_gateway")

EVENT_SOURCE = "fx.schedule"
REGION = "us-east-1"  # the runtime's default AWS_REGION
MAX_LATE_S = DUPLICATE_WINDOW_S / 2  # the other half tolerates the gateways' clock skew
MAX_SLEEP_S = 30.0  # re-read the wall clock at least this often: it may be stepped while we sleep
RETRY_S = 1.0


def message_id(function: str, key: str, tick: datetime) -> str:
    return f"{function}/{key}/{iso(tick)}"


def iso(tick: datetime) -> str:
    return tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    """The wall clock schedules keep; the tests give them one they move by hand."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def event(key: str, tick: datetime, event_id: str) -> dict:
    """What the handler receives: EventBridge's Scheduled Event, `time` being the tick, not the publish time."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": EVENT_SOURCE,
        "account": "",
        "time": iso(tick),
        "region": REGION,
        "resources": [key],
        "detail": {},
    }


class Schedules:
    """The schedule triggers this gateway keeps the clock of, kept equal to the route tables'."""

    def __init__(self, book: RouteBook, store: Store, stats: EventStats, clock: Clock | None = None) -> None:
        self.book = book
        self.store = store  # jetstream.Storer.store
        self.stats = stats
        self.clock = clock or Clock()
        self.running: dict[tuple[str, str], asyncio.Task] = {}

    def sync(self, function: str) -> None:
        routes = self.book.get(function)
        want: dict[str, TriggerRoute] = {}
        if routes is not None:
            want = {schedule_key(t.schedule, t.timezone): t for t in routes.table.triggers if t.kind == "schedule"}
        for name, key in list(self.running):
            if name == function and key not in want:
                self.running.pop((name, key)).cancel()
                log.info("function %s: schedule %s removed", function, key)
        for key, route in want.items():
            if (function, key) not in self.running:
                self.running[(function, key)] = spawn(self._tick(function, key, route))
                log.info("function %s: scheduled by %s", function, key)

    def close(self) -> None:
        for task in self.running.values():
            task.cancel()
        self.running.clear()

    async def _tick(self, function: str, key: str, route: TriggerRoute) -> None:
        schedule = parse(route.schedule, route.timezone)
        clock = self.clock
        tick = schedule.next_after(datetime.fromtimestamp(clock.time(), UTC))
        while True:
            while (wait := tick.timestamp() - clock.time()) > 0:
                await clock.sleep(min(wait, MAX_SLEEP_S))
            late = -wait
            if late > MAX_LATE_S:
                log.warning(
                    "function %s: %s: tick %s skipped, this gateway is %.0f s late", function, key, iso(tick), late
                )
                tick = schedule.next_after(datetime.fromtimestamp(clock.time(), UTC))
                continue
            await self._store(function, key, tick)
            tick = schedule.next_after(tick)

    async def _store(self, function: str, key: str, tick: datetime) -> None:
        msg_id = message_id(function, key, tick)
        event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, msg_id))  # the same on every gateway
        body = json.dumps(event(key, tick, event_id)).encode()
        headers = {
            "Content-Type": "application/json",
            ASYNC_CALL_ID: event_id,
            ASYNC_FUNCTION: function,
            ASYNC_METHOD: "POST",
            ASYNC_TARGET: REPLICA_INVOKE_PATH,
        }
        while True:
            try:
                stored = await self.store(function, body, headers, msg_id)
            except nats.errors.Error as exc:
                if self.clock.time() - tick.timestamp() + RETRY_S > MAX_LATE_S:
                    log.error("function %s: %s: tick %s not stored here: %s", function, key, iso(tick), exc)
                    self.stats.count(function, key, "error")
                    return
                await self.clock.sleep(RETRY_S)
                continue
            if stored:  # a copy from another gateway is no event of its own
                self.stats.count(function, key, "scheduled")
            return
