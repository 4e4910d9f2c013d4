"""Durable triggers: a JetStream consumer per function and trigger, at-least-once, in batches.

Every gateway pulls from the same durable consumer, so the fleet shares a stream's messages. A batch (up to
`batch` messages, waiting up to `window_ms` to fill it) is one invocation with Lambda's {"Records": [...]}
shape; the function may answer {"batchItemFailures": [{"itemIdentifier": messageId}]} to fail only some of
them, as Lambda's ReportBatchItemFailures. Messages that succeed are acked; failed ones are nak'ed with a
doubling delay until `max_deliver` deliveries, then dead-lettered to fx.dlq.<function> and acked. The
consumer's max_ack_pending = batch * max_in_flight bounds the batches in flight across all gateways, so
max_in_flight 1 processes the stream in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
from fx.protocol import (
    DEAD_ATTEMPTS,
    DEAD_ERROR,
    DEAD_MESSAGE,
    DEAD_SEQUENCE,
    DEAD_STATUS,
    DEAD_STREAM,
    DEAD_SUBJECT,
    STREAM_DLQ,
    TriggerRoute,
    dead_letter_subject,
)
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from fx_gateway import internal
from fx_gateway.async_worker import describe, keep_in_progress, one_line
from fx_gateway.nats_triggers import INVOKE_HEAD, message_fields
from fx_gateway.stats import EventStats
from fx_gateway.tasks import spawn

if TYPE_CHECKING:
    from fx_gateway.app import Gateway

log = logging.getLogger("fx_gateway")

EVENT_SOURCE = "fx:jetstream"
KV_SOURCE = "fx:kv"
PULL_WAIT_S = 1.0
ERROR_WAIT_S = 1.0


def consumer_name(function: str, route: TriggerRoute) -> str:
    return f"fx-{function}-{zlib.crc32(f'{route.stream}/{route.subject}'.encode()):08x}"


def trigger_key(route: TriggerRoute) -> str:
    if route.kind == "kv":
        bucket = route.stream.removeprefix("KV_")
        return f"kv:{bucket}/{route.subject.removeprefix(f'$KV.{bucket}.')}"
    return f"{route.stream}/{route.subject or '>'}"


def record(msg: Msg) -> dict:
    meta = msg.metadata
    return {
        "messageId": str(meta.sequence.stream),
        **message_fields(msg),
        "sequence": meta.sequence.stream,
        "deliveries": meta.num_delivered,
        "timestamp": meta.timestamp.isoformat(),
    }


def kv_record(msg: Msg) -> dict:
    """A KV change: the key, PUT / DEL / PURGE, the value (empty for deletes) and the bucket's revision."""
    fields = message_fields(msg)
    headers = fields["headers"]
    return {
        "messageId": str(msg.metadata.sequence.stream),
        "key": msg.subject.split(".", 2)[2],  # $KV.<bucket>.<key>
        "operation": headers.pop("KV-Operation", "PUT"),
        "value": fields["data"],
        "isBase64Encoded": fields["isBase64Encoded"],
        "revision": msg.metadata.sequence.stream,
        "deliveries": msg.metadata.num_delivered,
        "timestamp": msg.metadata.timestamp.isoformat(),
    }


def failed_items(result: internal.Result, batch: list[Msg]) -> tuple[set[int], str, str]:
    """(indexes of the messages to retry, error code, message): all of them unless the function succeeded."""
    if result.status == 200 and result.function_error is None:
        try:
            answer = json.loads(result.body)
        except ValueError:
            answer = None
        failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
        if not failures:
            return set(), "", ""
        ids = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}
        failed = {i for i, m in enumerate(batch) if str(m.metadata.sequence.stream) in ids}
        return failed, "BatchItemFailure", "the function reported this record in batchItemFailures"
    code, message = describe(result)
    return set(range(len(batch))), code, message


class DurableTrigger:
    """One function's trigger on this gateway: the pull loop of its consumer."""

    def __init__(
        self, gateway: Gateway, js: JetStreamContext, function: str, route: TriggerRoute, stats: EventStats
    ) -> None:
        self.gateway = gateway
        self.js = js
        self.function = function
        self.route = route
        self.stats = stats
        self.key = trigger_key(route)
        self.running: dict[int, Msg] = {}
        self.in_flight = 0  # batches being invoked
        self._slot = asyncio.Event()  # set when a batch finishes
        self._sub: JetStreamContext.PullSubscription | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        route, ack_wait = self.route, self.gateway.settings.async_ack_wait
        name = consumer_name(self.function, route)
        config = ConsumerConfig(
            durable_name=name,
            filter_subject=route.subject or None,
            # A stream's backlog is work to do; a bucket's history is not news: only changes from now on.
            deliver_policy=DeliverPolicy.NEW if route.kind == "kv" else DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,  # counted here, so the last failure can be dead-lettered
            max_ack_pending=route.batch * route.max_in_flight,
        )
        await self.js.add_consumer(route.stream, config)
        self._sub = await self.js.pull_subscribe_bind(durable=name, stream=route.stream)
        self._tasks = [spawn(self._pull()), spawn(keep_in_progress(self.running, ack_wait))]
        log.info("function %s: durable trigger on %s (consumer %s)", self.function, self.key, name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):  # the connection is going away: nothing to stop
                await self._sub.unsubscribe()

    async def _pull(self) -> None:
        size = self.route.batch
        while True:
            free = self.route.max_in_flight - self.in_flight
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                messages = await self._collect(size * free)
            except nats.errors.Error as exc:
                log.warning("function %s: pulling %s failed (%s); retrying", self.function, self.key, exc)
                await asyncio.sleep(ERROR_WAIT_S)
                continue
            # One fetch for every free slot: a round trip per message would cap single-message batches.
            for start in range(0, len(messages), size):
                batch = messages[start : start + size]
                for msg in batch:
                    self.running[id(msg)] = msg
                self.in_flight += 1
                spawn(self._run(batch))

    async def _collect(self, most: int) -> list[Msg]:
        """Up to `most` messages; once one is in, wait at most `window_ms` for a full batch."""
        size, window = self.route.batch, self.route.window_ms / 1000
        sub = self._sub
        try:
            messages = await sub.fetch(most, timeout=PULL_WAIT_S)  # type: ignore[union-attr]
        except TimeoutError:
            return []
        deadline = time.monotonic() + window
        while len(messages) < size and (left := deadline - time.monotonic()) > 0.001:
            try:
                messages += await sub.fetch(size - len(messages), timeout=left)  # type: ignore[union-attr]
            except TimeoutError:
                break
        return messages

    async def _run(self, batch: list[Msg]) -> None:
        try:
            routes = self.gateway.functions.get(self.function)
            if routes is None:  # removed: leave the messages to the consumer, they are not lost
                return
            if self.route.kind == "kv":
                bucket = self.route.stream.removeprefix("KV_")
                event = {"eventSource": KV_SOURCE, "trigger": self.key, "bucket": bucket}
                event["Records"] = [kv_record(m) for m in batch]
            else:
                event = {"eventSource": EVENT_SOURCE, "trigger": self.key, "stream": self.route.stream}
                event["Records"] = [record(m) for m in batch]
            result = await internal.call(routes, "", INVOKE_HEAD, json.dumps(event, ensure_ascii=False).encode())
            failed, code, message = failed_items(result, batch)
            self.stats.count(self.function, self.key, "error" if failed else "ok")
            for i, msg in enumerate(batch):
                if i in failed:
                    await self._failed(msg, code, message, result.status)
                else:
                    await msg.ack()
        except nats.errors.Error as exc:
            log.warning(
                "function %s: acking a batch of %s failed (%s); it will be redelivered", self.function, self.key, exc
            )
        finally:
            for msg in batch:
                self.running.pop(id(msg), None)
            self.in_flight -= 1
            self._slot.set()

    async def _failed(self, msg: Msg, code: str, message: str, status: int) -> None:
        deliveries = msg.metadata.num_delivered
        if deliveries < self.route.max_deliver:
            await msg.nak(delay=self.route.backoff * 2 ** (deliveries - 1))
            return
        headers = dict(msg.headers or {})
        headers.update(
            {
                DEAD_ERROR: code or "Unknown",
                DEAD_MESSAGE: one_line(message),
                DEAD_STATUS: str(status),
                DEAD_ATTEMPTS: str(deliveries),
                DEAD_SUBJECT: msg.subject,
                DEAD_STREAM: self.route.stream,
                DEAD_SEQUENCE: str(msg.metadata.sequence.stream),
            }
        )
        await self.js.publish(dead_letter_subject(self.function), msg.data, stream=STREAM_DLQ, headers=headers)
        log.warning(
            "function %s: message %s of %s dead-lettered: %s", self.function, headers[DEAD_SEQUENCE], self.key, code
        )
        await msg.ack()


class DurableTriggers:
    """The durable triggers this gateway runs, kept equal to the route tables'."""

    def __init__(self, gateway: Gateway, js: JetStreamContext, stats: EventStats) -> None:
        self.gateway = gateway
        self.js = js
        self.stats = stats
        self.running: dict[tuple[str, str], DurableTrigger] = {}

    async def sync(self, function: str) -> None:
        routes = self.gateway.functions.get(function)
        want = {}
        if routes is not None:
            want = {trigger_key(t): t for t in routes.table.triggers if t.kind in ("jetstream", "kv")}
        for (name, key), trigger in list(self.running.items()):
            if name == function and want.get(key) != trigger.route:  # gone, or its settings changed
                await self.running.pop((name, key)).stop()
        for key, route in want.items():
            if (function, key) not in self.running:
                trigger = DurableTrigger(self.gateway, self.js, function, route, self.stats)
                try:
                    await trigger.start()
                except nats.js.errors.NotFoundError:
                    log.error("function %s: durable trigger on %s: the stream does not exist", function, key)
                    continue
                self.running[(function, key)] = trigger

    async def close(self) -> None:
        for trigger in self.running.values():
            await trigger.stop()
        self.running.clear()
