"""Pull requests kept open on a durable JetStream consumer, messages taken in a subscription callback: how the
durable triggers and the async worker pull.

nats-py's fetch() costs a round trip, a task and a timer per message, and from a consumer with few messages
unacked it gets the few the last acks freed; a pull request kept open for many messages costs one publish, and
JetStream sends each message as soon as the consumer may.
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
        self._stream_gone = False  # said once, until the consumer can be made again

    async def start(self) -> None:
        """Create the consumer (a no-op if it is there) and open the first pull request. Raises nats.errors.Error;
        may be called again then."""
        await self.js.add_consumer(self.stream, self.config)
        if self._sub is None:
            self._sub = await self.nc.subscribe(self.nc.new_inbox(), cb=self._received)
        self.pull_more()
        if self._keeper is None:
            self._keeper = spawn(self._keep_pulling())

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
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

    async def _received(self, msg: Msg) -> None:
        if not msg.reply:  # the server's status for a pull request that ended: 408 expired, 409 refused
            await self._request_ended(msg.headers or {})
            return
        self.asked = max(self.asked - 1, 0)  # a request the keeper gave up on may still deliver
        self.on_message(msg)
        self.pull_more()

    async def _request_ended(self, headers: dict[str, str]) -> None:
        unused = headers.get(PENDING_MESSAGES)
        if unused is None:  # refused (consumer deleted, too many waiting requests, ...): none of it will come
            status = headers.get(Header.STATUS, "?"), headers.get(Header.DESCRIPTION, "")
            if not self._stream_gone:
                log.warning("%s: pull on %s refused: %s %s; retrying", self.what, self.stream, *status)
            await asyncio.sleep(ERROR_WAIT_S)  # holds this subscription's callbacks: nothing else to take
            await self._consumer_again()
            self.asked = 0
        else:
            self.asked = max(self.asked - int(unused), 0)
        self.pull_more()
