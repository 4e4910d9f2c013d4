"""Running stored async calls: pull from the shared consumer, invoke, retry with backoff, dead-letter, call back.

Every gateway pulls from the one durable consumer, so the fleet shares the calls and each is taken by one
gateway at a time. A call is acked only once it has an outcome (a result, or its dead letter is stored), so a
gateway that dies mid-call loses nothing: JetStream hands the call to another gateway after `ack_wait`.

A call costs no task of its own: pull requests are kept open for the free slots (events/pulls.py), each call is
sent from the subscription's callback, and one task settles the answers. A raw invoke (the Invoke API's Event
type, a schedule's tick) that names no version, trace or client context goes through the Batcher
(events/batches.py): calls that wait for a replica reach it several per request, each still its own invocation
with its call id as its request id. A call its batch did not reach (an earlier one timed out, the replica was
lost) is sent again alone at once, so a call's attempts are its own invocations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable
from functools import partial

import nats.errors
from fx.protocol import (
    ASYNC_CALL_ID,
    ASYNC_CALLBACK_SUBJECT,
    ASYNC_CALLBACK_URL,
    ASYNC_FUNCTION,
    ASYNC_METHOD,
    ASYNC_QUALIFIER,
    ASYNC_TARGET,
    CALL_ID,
    ERROR_DETAIL,
    REPLICA_INVOKE_PATH,
    REQUEST_ID,
    STREAM_ASYNC,
)
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from fx_gateway.config import Settings
from fx_gateway.events import jetstream, publish
from fx_gateway.events.batches import Batcher, unfinished
from fx_gateway.events.callback_delivery import Callbacks
from fx_gateway.events.pulls import OpenPull
from fx_gateway.proxy import internal
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.routes import FunctionRoutes
from fx_gateway.proxy.stats import AsyncStats
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

RECONNECT_WAIT_S = 0.5
# The caller's headers a raw invoke reads (fx_runtime/server.py), by lower-case name: a call with one is sent alone.
OWN_REQUEST = frozenset({"x-amzn-trace-id", "x-amz-client-context"})
# A gateway stores each call with str(uuid4()) (a schedule's tick: uuid5) as its id; the id goes into the
# replica's request head and a batch's comma-separated id list, so anything else stored there is refused.
CALL_ID_SHAPE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def unrunnable(
    age: float, max_age: float, routes: FunctionRoutes | None, function: str, call_id: str
) -> tuple[str, str, str, int] | None:
    """Why a stored call cannot run, as (dead-letter reason, error code, message, status); None if it can."""
    if age > max_age:
        message = f"the call waited {age:.0f} s, longer than the maximum event age of {max_age:g} s"
        return "max_age", "EventAgeExceeded", message, 0
    if routes is None:
        message = f"function {function!r} does not exist (deleted after the call was accepted?)"
        return "not_found", "FunctionNotFound", message, 404
    if CALL_ID_SHAPE.fullmatch(call_id) is None:
        message = f"its {ASYNC_CALL_ID} {call_id[:80]!r} is not the UUID a gateway stores a call with"
        return "invalid_call_id", "InvalidCallId", message, 400
    return None


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


def batchable(headers: dict[str, str]) -> bool:
    """A raw invoke of the version traffic picks, with nothing of its own for the replica but its event."""
    return (
        headers.get(ASYNC_TARGET, REPLICA_INVOKE_PATH) == REPLICA_INVOKE_PATH
        and not headers.get(ASYNC_QUALIFIER)
        and not any(name.lower() in OWN_REQUEST for name in headers)
    )


class AsyncWorker:
    def __init__(
        self,
        book: RouteBook,
        nc: NATS,
        settings: Settings,
        stats: AsyncStats,
        callbacks: Callbacks,
        batcher: Batcher,
    ) -> None:
        self.book = book
        self.nc = nc
        self.js = nc.jetstream()
        self.settings = settings
        self.stats = stats
        self.callbacks = callbacks
        self.batcher = batcher
        self.running: dict[int, Msg] = {}  # by id(): Msg is an unhashable dataclass
        self._answers: list[tuple[Msg, internal.Result]] = []  # answered, not yet settled
        self._answer = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        # Set by close(): the start loop ends even if NATS never comes back.
        self._closed = False
        config = jetstream.consumer_config(settings.async_ack_wait)
        self.pull = OpenPull(
            nc, STREAM_ASYNC, config, settings.async_concurrency, self._room, self._take, "async calls"
        )

    async def run(self) -> None:
        """Pull from now on; until the consumer can be bound (NATS away, or back without it), try again."""
        self._tasks = [
            spawn(jetstream.keep_in_progress(lambda: list(self.running.values()), self.settings.async_ack_wait)),
            spawn(self._settle_answers()),
        ]
        warned = False
        while not self._closed:
            try:
                await self.pull.start()
                return
            except nats.errors.Error as exc:
                if not warned:
                    log.warning("async calls: cannot pull (%s); retrying until NATS is back with the stream", exc)
                    warned = True
            await asyncio.sleep(RECONNECT_WAIT_S)

    async def close(self, timeout: float) -> None:
        """Stop pulling, and give the calls under way `timeout` s to finish (the rest are redelivered later).

        Unsubscribing first also matters to the connection's drain: an expired pull's late status message
        would make it wait in vain."""
        self._closed = True
        await self.pull.stop()
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()

    def _room(self) -> int:
        """Calls this gateway may take now: --async-concurrency less those under way."""
        return self.settings.async_concurrency - len(self.running)

    def _take(self, msg: Msg) -> None:
        self.running[id(msg)] = msg
        self.stats.in_flight = len(self.running)
        self._send(msg, batch=True)

    def _send(self, msg: Msg, batch: bool) -> None:
        """Invoke the call (`batch`: through the Batcher if it can be); its answer goes to _answered."""
        try:
            headers = msg.headers or {}
            _, attempt, stored_ns = jetstream.ack_tokens(msg)
            function = headers.get(ASYNC_FUNCTION) or msg.subject.rpartition(".")[2]
            routes = self.book.get(function)
            call_id = headers.get(ASYNC_CALL_ID, "")
            why = unrunnable(time.time() - stored_ns / 1e9, self.settings.async_max_age, routes, function, call_id)
            if why is not None:  # dead-lettered at once: no attempt could succeed
                spawn(self._settle(msg, self._dead(msg, function, *why, attempt - 1)))
                return
            assert routes is not None  # (unrunnable says so otherwise)
            on_result = partial(self._answered, msg, batch)
            if batch and batchable(headers):
                self.batcher.send(routes, msg.data or b"{}", on_result, call_id.encode("latin-1"))
                return
            target = headers.get(ASYNC_TARGET, REPLICA_INVOKE_PATH)
            head = [f"{headers.get(ASYNC_METHOD, 'POST')} {target} HTTP/1.1\r\n"]
            head += [f"{k}: {v}\r\n" for k, v in headers.items() if not k.startswith("Fx-Async-")]
            head.append(f"{CALL_ID}: {call_id}\r\n")
            head.append(f"{REQUEST_ID}: {call_id}\r\n")  # the id the caller got with its 202, as on Lambda
            if target != REPLICA_INVOKE_PATH:
                head.append(f"{ERROR_DETAIL}: 1\r\n")  # the function's errorType and message, not an opaque 502
            qualifier = headers.get(ASYNC_QUALIFIER, "")
            internal.send(routes, qualifier, "".join(head).encode("latin-1"), msg.data, on_result)
        except Exception:
            log.exception("async call on %s: unexpected failure; it will be redelivered", msg.subject)
            self._finished(msg)

    def _answered(self, msg: Msg, batch: bool, result: internal.Result) -> None:
        if batch and unfinished(result):  # it may not have run: its attempt is an invocation of its own
            self._send(msg, batch=False)
            return
        self._answers.append((msg, result))
        self._answer.set()

    async def _settle_answers(self) -> None:
        """One task settles every answer: a success with no callback is acked here, anything else in a task of
        its own (a callback, a nak, a dead letter waiting for JetStream are not in the way of the other acks)."""
        while True:
            await self._answer.wait()
            self._answer.clear()
            answers, self._answers = self._answers, []
            for msg, result in answers:
                headers = msg.headers or {}
                function = headers.get(ASYNC_FUNCTION) or msg.subject.rpartition(".")[2]
                outcome = judge(headers.get(ASYNC_TARGET, REPLICA_INVOKE_PATH), result)
                self.stats.count(self.stats.attempts, (function, "ok" if outcome == Outcome.OK else "error"))
                if outcome != Outcome.OK or ASYNC_CALLBACK_URL in headers or ASYNC_CALLBACK_SUBJECT in headers:
                    spawn(self._settle(msg, self._conclude(msg, function, outcome, result)))
                    continue
                try:
                    publish.ack(self.nc, msg.reply)  # written now, flushed with the other answers' acks
                except nats.errors.Error as exc:
                    log.warning("async call to %s: ack failed (%s); it will be redelivered", function, exc)
                self._finished(msg)
            self._pull_more()

    async def _settle(self, msg: Msg, work: Awaitable[None]) -> None:
        """`work` (an outcome other than a plain success), then the call is no longer this gateway's."""
        try:
            await work
        except Exception:
            log.exception("async call on %s: unexpected failure; it will be redelivered", msg.subject)
        finally:
            self._finished(msg)
            self._pull_more()

    async def _conclude(self, msg: Msg, function: str, outcome: str, result: internal.Result) -> None:
        headers = msg.headers or {}
        _, attempt, stored_ns = jetstream.ack_tokens(msg)
        if outcome == Outcome.OK:
            await self.callbacks.deliver(headers, function, result, attempt, None)
            await msg.ack()
            return
        settings = self.settings
        code, message = jetstream.describe(result)
        delay = settings.async_backoff * 2 ** (attempt - 1)
        if outcome == Outcome.FAIL:
            await self._dead(msg, function, "refused", code, message, result.status, attempt, result)
        elif attempt > settings.async_retries:
            await self._dead(msg, function, "retries_exhausted", code, message, result.status, attempt, result)
        elif time.time() - stored_ns / 1e9 + delay > settings.async_max_age:
            await self._dead(msg, function, "max_age", code, message, result.status, attempt, result)
        else:
            log.info("async call to %s failed (attempt %d: %s); retrying in %g s", function, attempt, code, delay)
            self.stats.count(self.stats.retries, function)
            await msg.nak(delay=delay)

    def _finished(self, msg: Msg) -> None:
        self.running.pop(id(msg), None)
        self.stats.in_flight = len(self.running)

    def _pull_more(self) -> None:
        if self._closed:
            return
        try:
            self.pull.pull_more()
        except nats.errors.Error as exc:  # the keeper asks again
            log.warning("async calls: pulling failed (%s); retrying", exc)

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
