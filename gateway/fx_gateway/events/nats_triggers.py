"""NATS core triggers: a queue-group subscription per function and subject; each message invokes the function.

Every gateway subscribes in the same queue group, so N gateways share a subject's messages and each message is
handled once. Core NATS is at-most-once: a message that arrives while no gateway listens, or whose invocation
fails, is not retried (durable triggers are for that). A message with a reply subject gets the result.
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections import deque
from functools import partial

import nats.errors
from fx.protocol import REPLY_FUNCTION_ERROR, REPLY_STATUS
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from fx_gateway.config import Settings
from fx_gateway.events.batches import Batcher, gateway_error, removed
from fx_gateway.events.messages import encode_basestring, message_json
from fx_gateway.events.publish import header_block, publish
from fx_gateway.events.pulls import Handoff
from fx_gateway.proxy import internal
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.stats import EventStats

log = logging.getLogger("fx_gateway")

# A publisher picks a message's reply subject, and the gateway publishes the function's result there: one
# under fx's or NATS's own subjects ($JS.API..., $KV...) would make the gateway a caller's deputy.
NOT_A_REPLY = ("$", "fx.")

EVENT_SOURCE = "fx:nats"


def queue_group(function: str, subject: str) -> str:
    """One group per function and trigger: two functions on a subject each get every message."""
    return f"fx.{function}.{zlib.crc32(subject.encode()):08x}"


def event(trigger: str, msg: Msg) -> bytes:
    """The event a NATS-triggered handler receives (documented in README.md, "NATS triggers"), as JSON."""
    reply = encode_basestring(msg.reply) if msg.reply else "null"
    return (
        f'{{"eventSource": "{EVENT_SOURCE}", "trigger": {encode_basestring(trigger)}, {message_json(msg)},'
        f' "reply": {reply}}}'
    ).encode()


@functools.lru_cache(maxsize=64)
def reply_headers(status: int, function_error: bytes | None) -> bytes:
    """A reply's headers: the status, and on failure the function error (Unhandled, Handled, or Platform, the
    gateway's own). A handful of combinations in practice: each is made once."""
    headers = {REPLY_STATUS: str(status)}
    if function_error is not None:
        headers[REPLY_FUNCTION_ERROR] = function_error.decode("latin-1")
    return header_block(headers)


class NatsTriggers:
    """Each message is taken as nats-py reads it (pulls.Handoff) and sent to the function there (several per
    request when they wait for a replica: batches.py), its answer taken in a callback and its reply written there
    too (publish.py): no task or coroutine per event. Past --trigger-concurrency events running, messages wait
    here in the order read, up to --trigger-waiting-max and --trigger-waiting-bytes (then new ones are dropped, as
    nats-py dropped a slow consumer's)."""

    def __init__(self, book: RouteBook, nc: NATS, settings: Settings, stats: EventStats, batcher: Batcher) -> None:
        self.book = book
        self.batcher = batcher
        self.nc = nc
        self.stats = stats
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self._free = settings.trigger_concurrency  # events this gateway may still start
        self._waiting_max, self._waiting_bytes_max = settings.trigger_waiting_max, settings.trigger_waiting_bytes
        self._waiting: deque[tuple[str, str, Msg]] = deque()  # read while none was free
        self._waiting_bytes = 0
        self._dropping = False  # said once per overflow, until the line is empty again
        self._starting = False  # _start_waiting is running

    async def sync(self, function: str) -> None:
        """Subscribe to the function's current trigger subjects, unsubscribe from the others."""
        routes = self.book.get(function)
        want = {t.subject for t in routes.table.triggers if t.kind == "nats"} if routes is not None else set()
        have = {subject for name, subject in self.subscriptions if name == function}
        for subject in have - want:
            await self.subscriptions.pop((function, subject)).unsubscribe()
            log.info("function %s: trigger %s removed", function, subject)
        for subject in want - have:
            handoff = Handoff(partial(self._received, function, subject), f"function {function}: trigger {subject}")
            self.subscriptions[(function, subject)] = await self.nc.subscribe(
                subject,
                queue=queue_group(function, subject),
                future=handoff,  # type: ignore[arg-type]
            )
            log.info("function %s: triggered by NATS subject %s", function, subject)
        if want - have:
            await self.nc.flush()  # the server has the subscriptions: a message published from now on is seen

    def _received(self, function: str, trigger: str, msg: Msg) -> None:
        if self._free and not self._waiting:
            self._start(function, trigger, msg)
            return
        if len(self._waiting) >= self._waiting_max or self._waiting_bytes + len(msg.data) > self._waiting_bytes_max:
            self.stats.count(function, trigger, "dropped")
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "NATS triggers: %d events waiting for a free slot (--trigger-concurrency); dropping new ones "
                    "(core NATS is at most once) until they are done (--trigger-waiting-max, --trigger-waiting-bytes)",
                    len(self._waiting),
                )
            return
        self._waiting.append((function, trigger, msg))
        self._waiting_bytes += len(msg.data)

    def _start(self, function: str, trigger: str, msg: Msg) -> None:
        self._free -= 1
        done = partial(self._answered, function, trigger, msg)
        routes = self.book.get(function)
        if routes is None:
            done(removed(function))
            return
        body = event(trigger, msg)
        limit = min(routes.max_request_bytes, self.book.settings.max_request_bytes)
        if len(body) > limit:
            message = f"the event from {msg.subject} is {len(body)} bytes; function {function!r} takes {limit}"
            done(gateway_error(413, "RequestTooLarge", message))
            return
        self.batcher.send(routes, body, done)

    def _answered(self, function: str, trigger: str, msg: Msg, result: internal.Result) -> None:
        self._free += 1
        failed = result.status != 200 or result.function_error is not None
        self.stats.count(function, trigger, "error" if failed else "ok")
        if msg.reply and msg.reply.startswith(NOT_A_REPLY):
            log.warning("function %s: no reply to %s: %r is not a reply subject", function, msg.subject, msg.reply)
        elif msg.reply:
            error = (result.function_error or b"Platform") if failed else None
            try:
                publish(self.nc, msg.reply, result.body, reply_headers(result.status, error))
            except nats.errors.Error as exc:
                log.warning("function %s: reply to %s failed: %s", function, msg.subject, exc)
        if self._waiting and not self._starting:
            self._start_waiting()

    def _start_waiting(self) -> None:
        """The freed slots to the messages that waited longest; in a loop, not by recursion: an event answered at
        once (its function removed) frees its slot from inside _start."""
        self._starting = True
        try:
            while self._free and self._waiting:
                function, trigger, msg = self._waiting.popleft()
                self._waiting_bytes -= len(msg.data)
                self._start(function, trigger, msg)
        finally:
            self._starting = False
        if not self._waiting:
            self._dropping = False
