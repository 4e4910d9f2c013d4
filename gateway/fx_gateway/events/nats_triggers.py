"""NATS core triggers: a queue-group subscription per function and subject; each message invokes the function.

Every gateway subscribes in the same queue group, so N gateways share a subject's messages and each message is
handled once. Core NATS is at-most-once: a message that arrives while no gateway listens, or whose invocation
fails, is not retried (durable triggers are for that). A message with a reply subject gets the result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from functools import partial

import nats.errors
from fx.protocol import REPLY_FUNCTION_ERROR, REPLY_STATUS
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from fx_gateway.events.messages import INVOKE_HEAD, message_fields
from fx_gateway.proxy import internal
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.stats import EventStats
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

# A publisher picks a message's reply subject, and the gateway publishes the function's result there: one
# under fx's or NATS's own subjects ($JS.API..., $KV...) would make the gateway a caller's deputy.
NOT_A_REPLY = ("$", "fx.")

EVENT_SOURCE = "fx:nats"


def queue_group(function: str, subject: str) -> str:
    """One group per function and trigger: two functions on a subject each get every message."""
    return f"fx.{function}.{zlib.crc32(subject.encode()):08x}"


def event(trigger: str, msg: Msg) -> dict:
    """The event a NATS-triggered handler receives (documented in README.md, "NATS triggers")."""
    return {"eventSource": EVENT_SOURCE, "trigger": trigger, **message_fields(msg), "reply": msg.reply or None}


class NatsTriggers:
    def __init__(self, book: RouteBook, nc: NATS, concurrency: int, stats: EventStats) -> None:
        self.book = book
        self.nc = nc
        self.stats = stats
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self._slots = asyncio.Semaphore(concurrency)

    async def sync(self, function: str) -> None:
        """Subscribe to the function's current trigger subjects, unsubscribe from the others."""
        routes = self.book.get(function)
        want = {t.subject for t in routes.table.triggers if t.kind == "nats"} if routes is not None else set()
        have = {subject for name, subject in self.subscriptions if name == function}
        for subject in have - want:
            await self.subscriptions.pop((function, subject)).unsubscribe()
            log.info("function %s: trigger %s removed", function, subject)
        for subject in want - have:
            self.subscriptions[(function, subject)] = await self.nc.subscribe(
                subject, queue=queue_group(function, subject), cb=partial(self._received, function, subject)
            )
            log.info("function %s: triggered by NATS subject %s", function, subject)
        if want - have:
            await self.nc.flush()  # the server has the subscriptions: a message published from now on is seen

    async def _received(self, function: str, trigger: str, msg: Msg) -> None:
        # Waiting here when every slot is busy leaves further messages in the client's pending buffer.
        await self._slots.acquire()
        spawn(self._run(function, trigger, msg))

    async def _run(self, function: str, trigger: str, msg: Msg) -> None:
        try:
            result = await self._invoke(function, trigger, msg)
            failed = result.status != 200 or result.function_error is not None
            self.stats.count(function, trigger, "error" if failed else "ok")
            if msg.reply and msg.reply.startswith(NOT_A_REPLY):
                log.warning("function %s: no reply to %s: %r is not a reply subject", function, msg.subject, msg.reply)
            elif msg.reply:
                headers = {REPLY_STATUS: str(result.status)}
                if failed:
                    headers[REPLY_FUNCTION_ERROR] = (result.function_error or b"Platform").decode("latin-1")
                try:
                    await self.nc.publish(msg.reply, result.body, headers=headers)
                except nats.errors.Error as exc:
                    log.warning("function %s: reply to %s failed: %s", function, msg.subject, exc)
        finally:
            self._slots.release()

    async def _invoke(self, function: str, trigger: str, msg: Msg) -> internal.Result:
        routes = self.book.get(function)
        if routes is None:
            return _error(404, "FunctionNotFound", f"function {function!r} was removed")
        body = json.dumps(event(trigger, msg), ensure_ascii=False).encode()
        limit = min(routes.max_request_bytes, self.book.settings.max_request_bytes)
        if len(body) > limit:
            message = f"the event from {msg.subject} is {len(body)} bytes; function {function!r} takes {limit}"
            return _error(413, "RequestTooLarge", message)
        return await internal.call(routes, "", INVOKE_HEAD, body)


def _error(status: int, code: str, message: str) -> internal.Result:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return internal.Result(status, body, by_gateway=True)
