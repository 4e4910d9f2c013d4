"""Connections to replicas: one keep-alive HTTP/1.1 connection per in-flight request, pooled per endpoint.

The connection itself knows only an endpoint (`Endpoint`: where it is pooled) and what it carries (`Sent`): a
function call's Exchange to a Replica here, or an API route's call to an HTTP upstream
(fx_gateway.api.http_upstream), so both ride the same data plane.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

import httptools

if TYPE_CHECKING:
    from fx_gateway.proxy.dispatch import VersionDispatcher
    from fx_gateway.proxy.exchange import Exchange

log = logging.getLogger("fx_gateway")

# Idle connections kept per endpoint: at least --trigger-concurrency (256), or a trigger burst that fills it opens
# and closes a connection per event beyond the pool (1,319 per 20k events at 64, >10k sockets in TIME-WAIT).
MAX_IDLE = 256
UNIX_PREFIX = "unix:"  # an endpoint "unix:/abs/path" is a Unix socket, any other "host:port"
DOWN_S = 1.0  # after a refused connection, skip the endpoint this long (the route table will catch up)


class Sent(Protocol):
    """A request on a connection: its head (and body, if whole), told of its answer's bytes as they arrive."""

    raw: bytes
    is_head: bool
    conn: UpstreamConnection | None

    def relay(self, data: bytes) -> None: ...
    def answered(self, status: int, keep_alive: bool) -> None: ...


class Endpoint(Protocol):
    """Where a connection is pooled: told when its answer is in (`release`; `said_close` first if the answer
    said `Connection: close`) or it broke before (`lost`)."""

    idle: list[UpstreamConnection]

    def release(self, conn: UpstreamConnection, reusable: bool) -> None: ...
    def lost(self, conn: UpstreamConnection, sent: Sent, exc: Exception | None) -> None: ...
    def said_close(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """Sends one request at a time and relays the answer's bytes to the exchange as they arrive. A request whose
    body streams (`Sent` with `pause_caller`/`resume_caller`) is told when this side's write buffer is full."""

    __slots__ = ("complete", "exchange", "keep_alive", "parser", "replica", "status", "transport")

    def __init__(self, replica: Endpoint) -> None:
        self.replica = replica
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.exchange: Sent | None = None
        self.complete = False
        self.keep_alive = True
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, exchange: Sent) -> None:
        self.exchange = exchange
        exchange.conn = self
        if exchange.is_head:  # its answer ends with its head: a parser that says so (none is the usual one's cost)
            self.parser = httptools.HttpResponseParser(_HeadAnswer(self))
        self.transport.write(exchange.raw)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # nothing asked: a confused replica; never reuse this connection
            self.transport.close()  # type: ignore[union-attr]
            return
        exchange.relay(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.complete:
            self.complete = False
            self.exchange = None
            if exchange.is_head:  # the parser expects the body a HEAD answer never has
                self.parser = httptools.HttpResponseParser(self)
            keep_alive = self.keep_alive
            exchange.answered(self.status, keep_alive)
            if not keep_alive:
                self.replica.said_close()
            self.replica.release(self, keep_alive)

    def on_message_complete(self) -> None:
        """The parser has a whole answer: the final one unless it is interim (100 Continue, 103 Early Hints; an
        HTTP upstream may send them), after which the final one follows."""
        parser = self.parser
        status = parser.get_status_code()
        if status >= 200 or status == 101:
            self.status = status
            self.keep_alive = parser.should_keep_alive()  # only valid inside the callback
            self.complete = True

    def abandon(self) -> None:
        """Stop waiting for this answer (backstop timeout): the connection is in an unknown state."""
        self.exchange = None
        self.transport.close()  # type: ignore[union-attr]
        self.replica.release(self, False)

    def pause_writing(self) -> None:
        pause = getattr(self.exchange, "pause_caller", None)
        if pause is not None:
            pause()

    def resume_writing(self) -> None:
        resume = getattr(self.exchange, "resume_caller", None)
        if resume is not None:
            resume()

    def connection_lost(self, exc: Exception | None) -> None:
        replica = self.replica
        if self in replica.idle:
            replica.idle.remove(self)
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            replica.lost(self, exchange, exc)


class _HeadAnswer:
    """The parser callbacks of a connection awaiting the answer to a HEAD request, whose head ends it."""

    __slots__ = ("conn",)

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn

    def on_headers_complete(self) -> None:
        self.conn.on_message_complete()


class Replica:
    """One endpoint of a version: its outstanding requests and its idle connections."""

    __slots__ = ("dispatcher", "down_until", "endpoint", "host", "idle", "outstanding", "path", "port", "removed")

    def __init__(self, endpoint: str, dispatcher: VersionDispatcher) -> None:
        self.endpoint = endpoint
        self.path = endpoint[len(UNIX_PREFIX) :] if endpoint.startswith(UNIX_PREFIX) else ""
        host, _, port = ("", "", "0") if self.path else endpoint.rpartition(":")
        self.host, self.port = host, int(port)
        self.dispatcher = dispatcher
        self.outstanding = 0
        self.idle: list[UpstreamConnection] = []
        self.removed = False
        self.down_until = 0.0  # skipped until then: a connection to it was refused, or broke mid-request

    async def connect(self, exchange: Exchange) -> None:
        """Open a connection for `exchange` (no idle one was left) and send it there, else route it again."""
        loop = asyncio.get_running_loop()
        try:
            if self.path:
                _, conn = await loop.create_unix_connection(lambda: UpstreamConnection(self), self.path)
            else:
                _, conn = await loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port)
        except OSError as exc:
            # Nothing was sent, so another replica may take the request.
            now = time.monotonic()
            if self.down_until < now:  # one line per outage, not per request
                log.warning("replica %s refused a connection (%s); skipping it for %g s", self.endpoint, exc, DOWN_S)
            self.down_until = now + DOWN_S
            self.dispatcher.retry(self, exchange)
            return
        conn.send(exchange)

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        self.dispatcher.release(self, conn, reusable)

    def said_close(self) -> None:
        """A replica going away (draining, timed out): send nothing more on its pool."""
        self.close_idle()

    def lost(self, conn: UpstreamConnection, sent: Sent, exc: Exception | None) -> None:
        self.dispatcher.lost(self, conn, sent, exc)  # type: ignore[arg-type]  # a replica carries Exchanges only

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().transport.close()  # type: ignore[union-attr]
