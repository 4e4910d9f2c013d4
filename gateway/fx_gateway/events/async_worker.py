"""Running stored async calls: pull from the shared consumer, invoke, retry with backoff, dead-letter, call back.

Every gateway pulls from the one durable consumer, so the fleet shares the calls and each is taken by one
gateway at a time. A call is acked only once it has an outcome (a result, or its dead letter is stored), so a
gateway that dies mid-call loses nothing: JetStream hands the call to another gateway after `ack_wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import nats.errors
from fx.protocol import (
    ASYNC_CALL_ID,
    ASYNC_FUNCTION,
    ASYNC_METHOD,
    ASYNC_QUALIFIER,
    ASYNC_TARGET,
    CALL_ID,
    CONSUMER_ASYNC,
    ERROR_DETAIL,
    REPLICA_INVOKE_PATH,
    REQUEST_ID,
    STREAM_ASYNC,
)
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from fx_gateway.config import Settings
from fx_gateway.events import jetstream
from fx_gateway.events.callback_delivery import Callbacks
from fx_gateway.proxy import internal
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.stats import AsyncStats
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

PULL_WAIT_S = 1.0
RECONNECT_WAIT_S = 0.5


class Outcome:
    OK, RETRY, FAIL = "ok", "retry", "fail"


def judge(target: str, result: internal.Result) -> str:
    """Retry when the function failed or the platform could not run it; give up at once on a refused event."""
    status = result.status
    if status == 0 or status >= 500 or status == 429 or result.function_error is not None:
        return Outcome.RETRY
    if status >= 400 and (result.by_gateway or target == REPLICA_INVOKE_PATH):
        return Outcome.FAIL  # no such function or version, or the runtime refused the event
    return Outcome.OK  # on the HTTP trigger a 4xx is the function's own answer


class AsyncWorker:
    def __init__(
        self, book: RouteBook, js: JetStreamContext, settings: Settings, stats: AsyncStats, callbacks: Callbacks
    ) -> None:
        self.book = book
        self.js = js
        self.settings = settings
        self.stats = stats
        self.callbacks = callbacks
        self.running: dict[int, Msg] = {}  # by id(): Msg is an unhashable dataclass
        self._slot = asyncio.Event()
        self._sub: JetStreamContext.PullSubscription | None = None
        # Set by close(): the loops end even if a cancellation is lost in a fetch on a closed connection (nats-py),
        # which left a gateway stopping with NATS gone spinning here forever, its process never exiting.
        self._closed = False

    async def run(self) -> None:
        keep_alive = spawn(jetstream.keep_in_progress(self.running, self.settings.async_ack_wait))
        try:
            await self._pull_forever()
        finally:
            keep_alive.cancel()

    async def _pull_forever(self) -> None:
        """Bind to the consumer and pull; on a failure (NATS away, or back without the consumer) create the
        consumer again and bind again, until it works."""
        warned = False
        while not self._closed:
            try:
                await jetstream.ensure_consumer(self.js, self.settings.async_ack_wait)
                warned = False
                await self._pull()
            except nats.errors.Error as exc:
                if not warned:
                    log.warning("async calls: cannot pull (%s); retrying until NATS is back with the stream", exc)
                    warned = True
                await asyncio.sleep(RECONNECT_WAIT_S)
            except Exception:
                log.exception("async calls: the pull loop failed; restarting it")
                await asyncio.sleep(RECONNECT_WAIT_S)

    async def _pull(self) -> None:
        sub = self._sub = await self.js.pull_subscribe_bind(durable=CONSUMER_ASYNC, stream=STREAM_ASYNC)
        limit = self.settings.async_concurrency
        # A fetch is a round trip to the server: under load, wait until half the slots are free and take a
        # batch, rather than paying a fetch for every call that finishes.
        batch = max(1, limit // 2)
        try:
            while not self._closed:
                free = limit - len(self.running)
                if free < batch and self.running:
                    self._slot.clear()
                    await self._slot.wait()
                    continue
                try:
                    messages = await sub.fetch(free, timeout=PULL_WAIT_S)
                except TimeoutError:
                    continue
                for msg in messages:
                    self.running[id(msg)] = msg
                    self.stats.in_flight = len(self.running)
                    spawn(self._handle(msg))
        finally:  # a new bind follows: this one's interest must not linger
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def close(self, timeout: float) -> None:
        """Stop pulling, and give the calls under way `timeout` s to finish (the rest are redelivered later).

        Unsubscribing first also matters to the connection's drain: an expired pull's late status message
        would make it wait in vain."""
        self._closed = True
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _handle(self, msg: Msg) -> None:
        try:
            await self._run(msg)
        except Exception:
            log.exception("async call on %s: unexpected failure; it will be redelivered", msg.subject)
        finally:
            del self.running[id(msg)]
            self.stats.in_flight = len(self.running)
            self._slot.set()

    async def _run(self, msg: Msg) -> None:
        headers = msg.headers or {}
        meta = msg.metadata
        attempt = meta.num_delivered
        age = time.time() - meta.timestamp.timestamp()
        function = headers.get(ASYNC_FUNCTION) or msg.subject.rpartition(".")[2]
        settings = self.settings
        if age > settings.async_max_age:
            message = f"the call waited {age:.0f} s, longer than the maximum event age of {settings.async_max_age:g} s"
            await self._dead(msg, function, "max_age", "EventAgeExceeded", message, 0, attempt - 1)
            return
        routes = self.book.get(function)
        if routes is None:
            message = f"function {function!r} does not exist (deleted after the call was accepted?)"
            await self._dead(msg, function, "not_found", "FunctionNotFound", message, 404, attempt - 1)
            return
        target = headers.get(ASYNC_TARGET, REPLICA_INVOKE_PATH)
        head = [f"{headers.get(ASYNC_METHOD, 'POST')} {target} HTTP/1.1\r\n"]
        head += [f"{k}: {v}\r\n" for k, v in headers.items() if not k.startswith("Fx-Async-")]
        call_id = headers.get(ASYNC_CALL_ID, "")
        head.append(f"{CALL_ID}: {call_id}\r\n")
        head.append(f"{REQUEST_ID}: {call_id}\r\n")  # the id the caller got with its 202, as on Lambda
        if target != REPLICA_INVOKE_PATH:
            head.append(f"{ERROR_DETAIL}: 1\r\n")  # the function's errorType and message, not an opaque 502
        result = await internal.call(
            routes, headers.get(ASYNC_QUALIFIER, ""), "".join(head).encode("latin-1"), msg.data
        )
        outcome = judge(target, result)
        self.stats.count(self.stats.attempts, (function, "ok" if outcome == Outcome.OK else "error"))
        if outcome == Outcome.OK:
            await self.callbacks.deliver(headers, function, result, attempt, None)
            await msg.ack()
            return
        code, message = jetstream.describe(result)
        delay = settings.async_backoff * 2 ** (attempt - 1)
        if outcome == Outcome.FAIL:
            await self._dead(msg, function, "refused", code, message, result.status, attempt, result)
        elif attempt > settings.async_retries:
            await self._dead(msg, function, "retries_exhausted", code, message, result.status, attempt, result)
        elif age + delay > settings.async_max_age:
            await self._dead(msg, function, "max_age", code, message, result.status, attempt, result)
        else:
            log.info("async call to %s failed (attempt %d: %s); retrying in %g s", function, attempt, code, delay)
            self.stats.count(self.stats.retries, function)
            await msg.nak(delay=delay)

    async def _dead(
        self,
        msg: Msg,
        function: str,
        reason: str,
        code: str,
        message: str,
        status: int,
        attempts: int,
        result: internal.Result | None = None,
    ) -> None:
        """Store the dead letter first, then ack the call: between the two a crash only duplicates the letter."""
        await jetstream.dead_letter(self.js, function, msg, code, message, status, attempts)
        self.stats.count(self.stats.dead, (function, reason))
        log.warning("async call to %s dead-lettered after %d attempts: %s %s", function, attempts, code, message)
        failure = result or internal.Result(status, json.dumps({"errorType": code, "errorMessage": message}).encode())
        await self.callbacks.deliver(msg.headers or {}, function, failure, attempts, code)
        await msg.ack()
