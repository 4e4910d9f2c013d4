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
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
from fx import async_streams
from fx.protocol import (
    ASYNC_CALL_ID,
    ASYNC_CALLBACK_SUBJECT,
    ASYNC_CALLBACK_URL,
    ASYNC_FUNCTION,
    ASYNC_METHOD,
    ASYNC_QUALIFIER,
    ASYNC_TARGET,
    CONSUMER_ASYNC,
    DEAD_ATTEMPTS,
    DEAD_ERROR,
    DEAD_MESSAGE,
    DEAD_STATUS,
    ERROR_DETAIL,
    REPLICA_INVOKE_PATH,
    STREAM_ASYNC,
    STREAM_DLQ,
    dead_letter_subject,
)
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from fx_gateway import callback, internal
from fx_gateway.callback_policy import CallbackRefused
from fx_gateway.config import Settings
from fx_gateway.stats import AsyncStats
from fx_gateway.tasks import spawn

if TYPE_CHECKING:
    from fx_gateway.app import Gateway

log = logging.getLogger("fx_gateway")

PULL_WAIT_S = 1.0
RECONNECT_WAIT_S = 0.5
MESSAGE_MAX = 1024  # characters of an error message kept in a dead letter's header
CALLBACK_DELAYS_S = (0.5, 2.0)  # retries of a failed callback


async def ensure_streams(js: JetStreamContext, ack_wait: float) -> None:
    """Check (on a NATS without auth: create) the async-call and dead-letter streams, then the shared consumer."""
    await async_streams.ensure(js)
    await js.add_consumer(
        STREAM_ASYNC,
        ConsumerConfig(
            durable_name=CONSUMER_ASYNC,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,  # the worker counts attempts itself and dead-letters
            max_ack_pending=-1,
        ),
    )


async def keep_in_progress(running: dict[int, Msg], ack_wait: float) -> None:
    """Tell JetStream the messages under way are still being worked on, so long calls are not redelivered."""
    while True:
        await asyncio.sleep(ack_wait / 3)
        for msg in list(running.values()):
            # Disconnected: the message will be redelivered, which at-least-once allows.
            with contextlib.suppress(nats.errors.Error):
                await msg.in_progress()


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


def describe(result: internal.Result) -> tuple[str, str]:
    """(error code, message) of a failed answer: Lambda's error shape, the gateway's, or the status."""
    try:
        body = json.loads(result.body)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errorType"), str):
        return body["errorType"], str(body.get("errorMessage", ""))
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code", "")), str(body["error"].get("message", ""))
    if result.function_error is not None:
        return "Unhandled", result.body.decode("utf-8", "replace")
    return f"HTTP{result.status}", result.body.decode("utf-8", "replace")


def one_line(text: str) -> str:
    return " ".join(text.split())[:MESSAGE_MAX]


class AsyncWorker:
    def __init__(self, gateway: Gateway, nc: NATS, settings: Settings, stats: AsyncStats) -> None:
        self.gateway = gateway
        self.nc = nc
        self.js = nc.jetstream()
        self.settings = settings
        self.stats = stats
        self.running: dict[int, Msg] = {}  # by id(): Msg is an unhashable dataclass
        self._slot = asyncio.Event()
        self._sub: JetStreamContext.PullSubscription | None = None

    async def run(self) -> None:
        keep_alive = spawn(keep_in_progress(self.running, self.settings.async_ack_wait))
        try:
            await self._pull_forever()
        finally:
            keep_alive.cancel()

    async def _pull_forever(self) -> None:
        while True:
            try:
                await self._pull()
            except Exception:
                log.exception("async calls: the pull loop failed; restarting it")
                await asyncio.sleep(RECONNECT_WAIT_S)

    async def _pull(self) -> None:
        sub = self._sub = await self.js.pull_subscribe_bind(durable=CONSUMER_ASYNC, stream=STREAM_ASYNC)
        limit = self.settings.async_concurrency
        # A fetch is a round trip to the server: under load, wait until half the slots are free and take a
        # batch, rather than paying a fetch for every call that finishes.
        batch = max(1, limit // 2)
        while True:
            free = limit - len(self.running)
            if free < batch and self.running:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                messages = await sub.fetch(free, timeout=PULL_WAIT_S)
            except TimeoutError:
                continue
            except nats.errors.Error as exc:
                log.warning("async calls: pull failed (%s); retrying", exc)
                await asyncio.sleep(RECONNECT_WAIT_S)
                continue
            for msg in messages:
                self.running[id(msg)] = msg
                self.stats.in_flight = len(self.running)
                spawn(self._handle(msg))

    async def close(self, timeout: float) -> None:
        """Stop pulling, and give the calls under way `timeout` s to finish (the rest are redelivered later).

        Unsubscribing first also matters to the connection's drain: an expired pull's late status message
        would make it wait in vain."""
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
        routes = self.gateway.functions.get(function)
        if routes is None:
            message = f"function {function!r} does not exist (deleted after the call was accepted?)"
            await self._dead(msg, function, "not_found", "FunctionNotFound", message, 404, attempt - 1)
            return
        target = headers.get(ASYNC_TARGET, REPLICA_INVOKE_PATH)
        head = [f"{headers.get(ASYNC_METHOD, 'POST')} {target} HTTP/1.1\r\n"]
        head += [f"{k}: {v}\r\n" for k, v in headers.items() if not k.startswith("Fx-Async-")]
        head.append(f"X-Fx-Call-Id: {headers.get(ASYNC_CALL_ID, '')}\r\n")
        if target != REPLICA_INVOKE_PATH:
            head.append(f"{ERROR_DETAIL}: 1\r\n")  # the function's errorType and message, not an opaque 502
        result = await internal.call(
            routes, headers.get(ASYNC_QUALIFIER, ""), "".join(head).encode("latin-1"), msg.data
        )
        outcome = judge(target, result)
        self.stats.count(self.stats.attempts, (function, "ok" if outcome == Outcome.OK else "error"))
        if outcome == Outcome.OK:
            await self._call_back(headers, function, result, attempt, None)
            await msg.ack()
            return
        code, message = describe(result)
        delay = settings.async_backoff * 2 ** (attempt - 1)
        if outcome == Outcome.FAIL:
            await self._dead(msg, function, "refused", code, message, result.status, attempt, result)
        elif attempt > settings.async_retries:
            await self._dead(msg, function, "retries_exhausted", code, message, result.status, attempt, result)
        elif age + delay > settings.async_max_age:
            await self._dead(msg, function, "max_age", code, message, result.status, attempt, result)
        else:
            log.info("async call to %s failed (attempt %d: %s); retrying in %g s", function, attempt, code, delay)
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
        headers = dict(msg.headers or {})
        headers.update(
            {
                DEAD_ERROR: code or "Unknown",
                DEAD_MESSAGE: one_line(message),
                DEAD_STATUS: str(status),
                DEAD_ATTEMPTS: str(attempts),
            }
        )
        await self.js.publish(dead_letter_subject(function), msg.data, stream=STREAM_DLQ, headers=headers)
        self.stats.count(self.stats.dead, (function, reason))
        log.warning("async call to %s dead-lettered after %d attempts: %s %s", function, attempts, code, message)
        failure = result or internal.Result(status, json.dumps({"errorType": code, "errorMessage": message}).encode())
        await self._call_back(msg.headers or {}, function, failure, attempts, code)
        await msg.ack()

    async def _call_back(
        self, headers: dict[str, str], function: str, result: internal.Result, attempts: int, error: str | None
    ) -> None:
        url, subject = headers.get(ASYNC_CALLBACK_URL), headers.get(ASYNC_CALLBACK_SUBJECT)
        if not url and not subject:
            return
        out = {
            "X-Fx-Call-Id": headers.get(ASYNC_CALL_ID, ""),
            "X-Fx-Function": function,
            "X-Fx-Function-Status": str(result.status),
            "X-Fx-Outcome": "failure" if error else "success",
            "X-Fx-Attempts": str(attempts),
            "Content-Type": result.headers.get(b"content-type", b"application/json").decode("latin-1"),
        }
        if result.version:
            out["X-Fx-Version"] = result.version
        if error:
            out["X-Fx-Error"] = error
        policy = self.gateway.callbacks
        if subject:
            try:
                policy.check_subject(subject)  # again: the call may predate the policy, or not come from a gateway
                await self.nc.publish(subject, result.body, headers=out)
                self.stats.count(self.stats.callbacks, "ok")
            except (nats.errors.Error, CallbackRefused) as exc:
                log.warning("callback subject %s for %s: %s", subject, function, exc)
                self.stats.count(self.stats.callbacks, "failed")
        if url:
            await self._post(url, result.body, out, function)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], function: str) -> None:
        for delay in (*CALLBACK_DELAYS_S, None):
            try:
                address = await self.gateway.callbacks.address(url)
            except CallbackRefused as exc:
                log.warning("async call to %s: its callback is refused: %s", function, exc)
                self.stats.count(self.stats.callbacks, "failed")
                return
            try:
                status = await callback.post(url, address, body, headers)
            except callback.CallbackError as exc:
                problem = str(exc)
            else:
                if status < 500:
                    self.stats.count(self.stats.callbacks, "ok" if status < 400 else "failed")
                    return
                problem = f"callback to {url} answered {status}"
            if delay is None:
                log.warning("async call to %s: giving up on its callback: %s", function, problem)
                self.stats.count(self.stats.callbacks, "failed")
                return
            await asyncio.sleep(delay)
