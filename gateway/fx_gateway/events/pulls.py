"""Pull requests kept open on a durable JetStream consumer, messages taken in a subscription callback: how the
durable triggers and the async worker pull.

nats-py's fetch() costs a round trip, a task and a timer per message, and from a consumer with few messages
unacked it gets the few the last acks freed; a pull request kept open for many messages costs one publish, and
JetStream sends each message as soon as the consumer may.

The messages are taken as nats-py reads them (Handoff), not from a subscription callback: its queue, its task's
wake-up and a coroutine per message cost 1.3 µs a message against 0.3 (a micro-benchmark, bench/README.md,
Events, round 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DEFAULT_PREFIX, ConsumerConfig, Header

from fx_gateway.events.publish import publish
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

PULL_EXPIRES_S = 5.0  # the life of a pull request on the server; an idle consumer's is renewed this often
PULL_GRACE_S = 1.0
ERROR_WAIT_S = 1.0
PENDING_MESSAGES = "Nats-Pending-Messages"  # of an expired pull request: how many it did not bring


class Handoff:
    """What subscribe(future=...) is given so that nats-py hands each message to `on_message` as it reads it: it
    sets a subscription's future's result with each message (its one-reply requests' way), and this "future" is
    never done. `on_message` runs inside nats-py's read loop, so what it raises is logged here: raised there, it
    would end the connection."""

    def __init__(self, on_message: Callable[[Msg], object], what: str) -> None:
        self.on_message = on_message
        self.what = what

    def cancelled(self) -> bool:
        return False

    def set_result(self, msg: Msg) -> None:
        try:
            self.on_message(msg)
        except Exception:
            log.exception("%s: a message could not be taken; JetStream delivers it again after its ack wait", self.what)


class OpenPull:
    """Keeps pull requests open on `stream`'s consumer `config` for `room()` messages (at most `size`) and hands
    each message to `on_message`; `what` names it in logs."""

    def __init__(
        self,
        nc: NATS,
        stream: str,
        config: ConsumerConfig,
        size: int,
        room: Callable[[], int],
        on_message: Callable[[Msg], object],
        what: str,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.stream = stream
        self.config = config
        self.size = size
        self.room = room  # messages this side may take now: `size`, or fewer while some are being worked on
        self.on_message = on_message
        self.what = what
        self.asked = 0  # messages the open pull requests may still bring
        self._open_until = 0.0  # when the last pull request sent expires on the server
        self._next = f"{DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{config.durable_name}"
        self._sub: Subscription | None = None
        self._keeper: asyncio.Task | None = None
        self._refused: asyncio.Task | None = None  # waiting to pull again after a refusal
        self._stream_gone = False  # said once, until the consumer can be made again

    async def start(self) -> None:
        """Create the consumer (a no-op if it is there) and open the first pull request. Raises nats.errors.Error;
        may be called again then."""
        await self.js.add_consumer(self.stream, self.config)
        if self._sub is None:
            handoff = Handoff(self._received, self.what)
            self._sub = await self.nc.subscribe(self.nc.new_inbox(), future=handoff)  # type: ignore[arg-type]
        self.pull_more()
        if self._keeper is None:
            self._keeper = spawn(self._keep_pulling())

    async def stop(self) -> None:
        for task in (self._keeper, self._refused):
            if task is not None:
                task.cancel()
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):  # the connection is going away: nothing to stop
                await self._sub.unsubscribe()

    def pull_more(self) -> None:
        """Keep pull requests open for more than half of `size`: one request per many messages (written at once,
        publish.py: a message's callback calls this)."""
        more = self.room() - self.asked
        if more * 2 <= self.size or self._sub is None:
            return
        request = b'{"batch":%d,"expires":%d}' % (more, int(PULL_EXPIRES_S * 1e9))
        publish(self.nc, self._next, request, reply=self._sub.subject)
        self.asked += more
        self._open_until = time.monotonic() + PULL_EXPIRES_S + PULL_GRACE_S

    async def _keep_pulling(self) -> None:
        """Pull requests can end without word: a restarted server forgets them, a status can be lost. After a
        reconnect, or once all sent have expired, count none open (asking too much is harmless: the room asked
        for is only an upper bound)."""
        reconnects = self.nc.stats["reconnects"]
        while True:
            await asyncio.sleep(PULL_GRACE_S)
            reconnected = self.nc.stats["reconnects"] != reconnects
            if reconnected:
                reconnects = self.nc.stats["reconnects"]
                await self._consumer_again()
            if reconnected or time.monotonic() > self._open_until:
                self.asked = 0
            try:
                self.pull_more()
            except nats.errors.Error as exc:
                log.warning("%s: pulling failed (%s); retrying", self.what, exc)

    async def _consumer_again(self) -> None:
        """After a reconnect, or a pull refused: the consumer again, in case nats-server came back without its
        store (a no-op if it is there). Its stream, if lost too, must be created again: pulling resumes then."""
        try:
            await self.js.add_consumer(self.stream, self.config)
            self._stream_gone = False
        except nats.js.errors.NotFoundError:
            if not self._stream_gone:
                log.error(
                    "%s: the stream %s is gone (NATS lost it?); pulling resumes once it is created again",
                    self.what,
                    self.stream,
                )
                self._stream_gone = True
        except nats.errors.Error as exc:
            log.warning("%s: cannot check the consumer on %s (%s)", self.what, self.stream, exc)

    def _received(self, msg: Msg) -> None:
        if not msg.reply:  # the server's status for a pull request that ended: 408 expired, 409 refused
            self._request_ended(msg.headers or {})
            return
        self.asked = max(self.asked - 1, 0)  # a request the keeper gave up on may still deliver
        self.on_message(msg)
        self._try_pull()

    def _request_ended(self, headers: dict[str, str]) -> None:
        unused = headers.get(PENDING_MESSAGES)
        if unused is not None:  # expired: the messages it did not bring are to ask for again
            self.asked = max(self.asked - int(unused), 0)
            self._try_pull()
        elif self._refused is None or self._refused.done():  # refused: none of it will come
            status = headers.get(Header.STATUS, "?"), headers.get(Header.DESCRIPTION, "")
            if not self._stream_gone:
                log.warning("%s: pull on %s refused: %s %s; retrying", self.what, self.stream, *status)
            self._refused = spawn(self._pull_again())

    async def _pull_again(self) -> None:
        """After a refusal (consumer deleted, too many waiting requests, ...): the consumer again, then a pull."""
        await asyncio.sleep(ERROR_WAIT_S)
        await self._consumer_again()
        self.asked = 0
        self._try_pull()

    def _try_pull(self) -> None:
        try:
            self.pull_more()
        except nats.errors.Error as exc:  # closed, or away with a full buffer
            log.warning("%s: pulling failed (%s); the keeper retries", self.what, exc)
