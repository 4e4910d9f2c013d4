"""Durable triggers: a JetStream consumer per function and trigger, at-least-once, in batches.

Every gateway pulls from the same durable consumer, so the fleet shares a stream's messages. A batch (up to
`batch` messages, waiting up to `window_ms` to fill it, and FILL_WAIT_S more while JetStream is still sending
a backlog) is one invocation with Lambda's {"Records": [...]} shape; the function may answer
{"batchItemFailures": [{"itemIdentifier": messageId}]} to fail only some of them, as Lambda's
ReportBatchItemFailures. Messages that succeed are acked; failed ones are nak'ed with a doubling delay until
`max_deliver` deliveries, then dead-lettered to fx.dlq.<function> and acked. The consumer's max_ack_pending =
batch * max_in_flight bounds the batches in flight across all gateways, so max_in_flight 1 processes the stream
in order.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import zlib
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial

import nats.errors
import nats.js.errors
from fx.protocol import DEAD_SEQUENCE, DEAD_STREAM, DEAD_SUBJECT, TriggerRoute, kv_bucket, kv_key
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from fx_gateway.events import jetstream, publish
from fx_gateway.events.batches import Batcher
from fx_gateway.events.messages import encode, message_fields, message_json
from fx_gateway.events.pulls import OpenPull
from fx_gateway.proxy import internal
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.stats import EventStats
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

EVENT_SOURCE = "fx:jetstream"
KV_SOURCE = "fx:kv"
FILL_WAIT_S = 0.005  # beyond window_ms, for messages already on their way
FIRST_DELIVERY = b'"deliveries": 1, "timestamp"'  # in a record's JSON, and a KV change's


def consumer_name(function: str, route: TriggerRoute) -> str:
    return f"fx-{function}-{zlib.crc32(f'{route.stream}/{route.subject}'.encode()):08x}"


def trigger_key(route: TriggerRoute) -> str:
    if route.kind == "kv":
        bucket = kv_bucket(route.stream) or ""
        return f"kv:{bucket}/{kv_key(route.subject)}"
    return f"{route.stream}/{route.subject or '>'}"


def delivery(msg: Msg) -> tuple[int, int, str]:
    """(stream sequence, deliveries, ISO time stored) from the message's ack subject."""
    sequence, count, stored = jetstream.ack_texts(msg)
    return int(sequence), int(count), iso_time(stored)


@functools.lru_cache(maxsize=4)
def _iso_second(second: str) -> str:
    return datetime.fromtimestamp(int(second), UTC).strftime("%Y-%m-%dT%H:%M:%S")


def iso_time(ns: str) -> str:
    """datetime.isoformat() of a UTC time given as the digits of its ns since the epoch (an ack subject's), cut
    as text and the second's text computed once for a backlog's messages: a third of the cost of int() and
    divmod (a record's second costliest part, after reading its ack subject)."""
    if len(ns) < 10:
        ns = ns.rjust(10, "0")
    micro = ns[-9:-3]
    return f"{_iso_second(ns[:-9])}+00:00" if micro == "000000" else f"{_iso_second(ns[:-9])}.{micro}+00:00"


def record(msg: Msg) -> str:
    """A message's record, as JSON. The numbers are the ack subject's own digits, not parsed and printed again
    (a batch of 100 makes 100 records: with its acks, the gateway's main cost per event of a big batch)."""
    sequence, count, stored = jetstream.ack_texts(msg)
    return (
        f'{{"messageId": "{sequence}", {message_json(msg)}, "sequence": {sequence}, "deliveries": {count},'
        f' "timestamp": "{iso_time(stored)}"}}'
    )


def kv_record(msg: Msg) -> str:
    """A KV change: the key, PUT / DEL / PURGE, the value (empty for deletes) and the bucket's revision."""
    fields = message_fields(msg)
    headers = fields["headers"]
    sequence, deliveries, stored = delivery(msg)
    return encode(
        {
            "messageId": str(sequence),
            "key": kv_key(msg.subject),
            "operation": headers.pop("KV-Operation", "PUT"),
            "value": fields["data"],
            "isBase64Encoded": fields["isBase64Encoded"],
            "revision": sequence,
            "deliveries": deliveries,
            "timestamp": stored,
        }
    )


def cut(envelope: dict, records: Iterable[str], limit: int) -> tuple[bytes, int]:
    """(encode({**envelope, "Records": [...]}) of as many of `records` (JSON) as fit in `limit` bytes, how many),
    none after the first that does not fit; with none fitting, the event of the first."""
    head = encode(envelope).encode()[:-1] + b', "Records": ['
    room = limit - len(head) - 2  # the closing ]}
    parts: list[bytes] = []
    for item in records:
        part = item.encode()
        room -= len(part) + (2 if parts else 0)  # ", " between records
        if room < 0:
            return head + (b", ".join(parts) if parts else part) + b"]}", len(parts)
        parts.append(part)
    return head + b", ".join(parts) + b"]}", len(parts)


def failed_items(result: internal.Result, batch: list[Msg]) -> tuple[set[int], str, str]:
    """(indexes of the messages to retry, error code, message): all of them unless the function succeeded."""
    if result.status == 200 and result.function_error is None:
        if b"batchItemFailures" not in result.body:  # the usual answer, not worth parsing
            return set(), "", ""
        try:
            answer = json.loads(result.body)
        except ValueError:
            answer = None
        failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
        if not failures:
            return set(), "", ""
        ids = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}
        failed = {i for i, m in enumerate(batch) if str(delivery(m)[0]) in ids}
        return failed, "BatchItemFailure", "the function reported this record in batchItemFailures"
    code, message = jetstream.describe(result)
    return set(range(len(batch))), code, message


class DurableTrigger:
    """One function's trigger on this gateway: pull requests kept open on its consumer for its whole
    max_ack_pending (JetStream itself bounds what it delivers), batches formed as messages arrive."""

    def __init__(
        self,
        book: RouteBook,
        nc: NATS,
        function: str,
        route: TriggerRoute,
        stats: EventStats,
        ack_wait: float,
        batcher: Batcher,
    ) -> None:
        self.book = book
        self.batcher = batcher  # a batch of records is one invocation; batches waiting for a replica go together
        self.nc = nc
        self.js = nc.jetstream()
        self.function = function
        self.route = route
        self.stats = stats
        self.key = trigger_key(route)
        self.capacity = route.batch * route.max_in_flight  # the consumer's max_ack_pending
        if route.kind == "kv":
            self._envelope = {"eventSource": KV_SOURCE, "trigger": self.key, "bucket": kv_bucket(route.stream)}
        else:
            self._envelope = {"eventSource": EVENT_SOURCE, "trigger": self.key, "stream": route.stream}
        self._head = encode(self._envelope)[:-1]  # every batch's event begins so
        self.buffer: deque[Msg] = deque()  # delivered, not yet in a batch
        self.batches: dict[int, list[Msg]] = {}  # being invoked, by id(): counted per batch, not per message
        self.stopped = False
        self._window_end = 0.0  # a partial batch waits for more messages until then
        self._timer: asyncio.TimerHandle | None = None
        self._dispatching = False  # a _dispatch is due
        self._acks: list[str] = []  # the reply subjects of messages answered, to ack in _dispatch
        self._tasks: list[asyncio.Task] = []
        config = ConsumerConfig(
            durable_name=consumer_name(function, route),
            filter_subject=route.subject or None,
            # A stream's backlog is work to do; a bucket's history is not news: only changes from now on.
            deliver_policy=DeliverPolicy.NEW if route.kind == "kv" else DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,  # counted here, so the last failure can be dead-lettered
            max_ack_pending=self.capacity,
        )
        what = f"function {function}: durable trigger on {self.key}"
        capacity = self.capacity
        self.pull = OpenPull(nc, route.stream, config, capacity, lambda: capacity, self._received, what)
        self.ack_wait = ack_wait

    async def start(self) -> None:
        await self.pull.start()
        self._tasks = [spawn(jetstream.keep_in_progress(self._held_messages, self.ack_wait))]
        log.info("%s (consumer %s)", self.pull.what, self.pull.config.durable_name)

    async def stop(self) -> None:
        """Take no more messages; the batches under way are still acked (the buffered ones come back later)."""
        self.stopped = True
        for task in self._tasks:
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        await self.pull.stop()

    def _held_messages(self) -> list[Msg]:
        return [*self.buffer, *(msg for batch in self.batches.values() for msg in batch)]

    def _received(self, msg: Msg) -> None:
        if not self.buffer:
            self._window_end = time.monotonic() + self.route.window_ms / 1000
        self.buffer.append(msg)
        if not self._dispatching:  # once the messages read together are all in: they may make one batch
            self._dispatching = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    # --- batches ---

    def _dispatch(self) -> None:
        """Ack what was answered; start batches while slots are free: full ones at once, a partial one once its
        window has passed."""
        self._dispatching = False
        if self._acks:
            acks, self._acks = self._acks, []
            try:
                publish.acks(self.nc, acks)
            except nats.errors.Error as exc:
                self._ack_failed(exc)
        buffer, size = self.buffer, self.route.batch
        batches, slots = self.batches, self.route.max_in_flight
        while buffer and len(batches) < slots and not self.stopped:
            if len(buffer) < size:
                wait = self._window_end - time.monotonic()
                if self._more_coming():
                    wait += FILL_WAIT_S
                if wait > 0.001:
                    if self._timer is None:
                        self._timer = asyncio.get_running_loop().call_later(wait, self._window_passed)
                    return
            batch = [buffer.popleft() for _ in range(min(size, len(buffer)))]
            self._window_end = time.monotonic() + self.route.window_ms / 1000  # for what is left
            self._start(batch)  # in self.batches once it returns, unless its function was removed

    def _more_coming(self) -> bool:
        """The stream has more for this consumer and max_ack_pending lets JetStream send it now: a partial
        batch is worth a moment's wait (from a backlog, each ack frees room for one message, sent at once)."""
        held = len(self.buffer) + sum(map(len, self.batches.values()))  # at most max_in_flight batches
        return self.buffer[-1].metadata.num_pending > 0 and held < self.capacity

    def _window_passed(self) -> None:
        self._timer = None
        self._dispatch()

    def _start(self, batch: list[Msg]) -> None:
        routes = self.book.get(self.function)
        if routes is None:  # removed: leave the messages to the consumer, they are not lost
            self._finished(batch)
            return
        to_record = kv_record if self.route.kind == "kv" else record
        limit = min(routes.max_request_bytes, self.book.settings.max_request_bytes)
        body = b""
        if sum(len(m.data) for m in batch) <= limit:  # no record's JSON is shorter than its data: it may fit whole
            body = f'{self._head}, "Records": [{", ".join(map(to_record, batch))}]}}'.encode()
        if not body or len(body) > limit:  # the replica would refuse it whole, and every retry the same
            body, fits = cut(self._envelope, map(to_record, batch), limit)
            if fits < len(batch):  # the rest back in front of the buffer
                self.buffer.extendleft(reversed(batch[max(fits, 1) :]))
                batch = batch[: max(fits, 1)]
                if not fits:  # the first record alone is over the limit: no delivery can succeed
                    self.batches[id(batch)] = batch
                    spawn(self._too_large(batch, len(body), limit))
                    return
        # A record's JSON writes `"deliveries": N, "timestamp"` with these quotes only there (its strings are
        # escaped), so counting first deliveries in the body costs no second reading of each ack subject.
        redelivered = len(batch) - body.count(FIRST_DELIVERY)
        self.stats.batch(self.function, self.key, len(batch), redelivered)
        self.batches[id(batch)] = batch
        self.batcher.send(routes, body, partial(self._answered, batch))

    def _answered(self, batch: list[Msg], result: internal.Result) -> None:
        """A batch's answer: its messages acked with the other batches answered in this loop iteration (one
        buffered command, publish.py), and the batches to start then started once; naks and dead letters, which
        wait for JetStream, in a task."""
        failed, code, message = failed_items(result, batch)
        self.stats.count(self.function, self.key, "error" if failed else "ok")
        if failed:
            spawn(self._settle(batch, failed, code, message, result.status))
            return
        self._acks.extend([msg.reply for msg in batch])
        self._finished(batch)

    async def _settle(
        self, batch: list[Msg], failed: set[int], code: str, message: str, status: int, at_once: bool = False
    ) -> None:
        try:
            for i, msg in enumerate(batch):
                if i in failed:
                    await self._failed(msg, code, message, status, at_once)
                else:
                    publish.ack(self.nc, msg.reply)
        except nats.errors.Error as exc:
            self._ack_failed(exc)
        finally:
            self._finished(batch)

    def _ack_failed(self, exc: nats.errors.Error) -> None:
        log.warning(
            "function %s: acking a batch of %s failed (%s); it will be redelivered", self.function, self.key, exc
        )

    def _finished(self, batch: list[Msg]) -> None:
        self.batches.pop(id(batch), None)
        if not self._dispatching:  # once the answers read together are all in
            self._dispatching = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    async def _too_large(self, batch: list[Msg], size: int, limit: int) -> None:
        self.stats.count(self.function, self.key, "error")
        message = f"the record's event is {size} bytes, over the function's request limit of {limit} bytes"
        await self._settle(batch, {0}, "RequestEntityTooLargeException", message, 413, at_once=True)

    async def _failed(self, msg: Msg, code: str, message: str, status: int, at_once: bool = False) -> None:
        sequence, deliveries, _ = delivery(msg)
        if deliveries < self.route.max_deliver and not at_once:
            await msg.nak(delay=self.route.backoff * 2 ** (deliveries - 1))
            return
        where = {DEAD_SUBJECT: msg.subject, DEAD_STREAM: self.route.stream, DEAD_SEQUENCE: str(sequence)}
        await jetstream.dead_letter(self.js, self.function, msg, code, message, status, deliveries, where)
        log.warning("function %s: message %d of %s dead-lettered: %s", self.function, sequence, self.key, code)
        await msg.ack()


class DurableTriggers:
    """The durable triggers this gateway runs, kept equal to the route tables'."""

    def __init__(self, book: RouteBook, nc: NATS, stats: EventStats, ack_wait: float, batcher: Batcher) -> None:
        self.book = book
        self.batcher = batcher
        self.nc = nc
        self.stats = stats
        self.ack_wait = ack_wait  # the consumers'; --async-ack-wait
        self.running: dict[tuple[str, str], DurableTrigger] = {}

    async def sync(self, function: str) -> None:
        routes = self.book.get(function)
        want = {}
        if routes is not None:
            want = {trigger_key(t): t for t in routes.table.triggers if t.kind in ("jetstream", "kv")}
        for (name, key), trigger in list(self.running.items()):
            if name == function and want.get(key) != trigger.route:  # gone, or its settings changed
                await self.running.pop((name, key)).stop()
        for key, route in want.items():
            if (function, key) not in self.running:
                trigger = DurableTrigger(self.book, self.nc, function, route, self.stats, self.ack_wait, self.batcher)
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
