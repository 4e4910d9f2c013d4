"""The gateway's HTTP/1.1 server side: one asyncio Protocol per caller connection, parsed by httptools.

Requests on one connection are answered in order: a pipelined request waits until the previous answer is out.
What to do with a request is decided once its headers are in (`Router.open` returns a call object); the call
receives the body as it arrives and starts when the request is complete.

What a caller may cost is bounded here: the request target, the header bytes and lines (checked as httptools
reports them, and the unparsed head by the bytes read), the number of connections, and the time a head, a
body or a keep-alive wait may take. A connection records its phase and when it entered it (a few attribute
writes per request); `Connections.sweep` closes the overdue ones about once a second, so no timer is armed per
request. A refused request is answered at once, our side of the connection is shut (the caller sees the end)
and it is closed after a short linger: its body is never read, so nothing after it could be framed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

import httptools

from fx_gateway.http import responses

if TYPE_CHECKING:
    from fx_gateway.http.connections import Connections

_now = time.monotonic

# A connection's phase, for the sweep: what the caller owes us, and since when.
IDLE = 0  # between requests (keep-alive): --idle-timeout
HEAD = 1  # a request's head is due: --header-timeout
BODY = 2  # a request's body is due: --body-timeout since the last byte
BUSY = 3  # the request is in; the answer is ours to give (the function timeout's backstop bounds it)
LINGER = 4  # refused: the answer is out, the rest is read and dropped until the close
LINGER_S = 2.0  # closing at once with unread input would reset the connection, and the answer with it
# A streaming call answers as its upstream does, so a request pipelined behind one cannot wait its turn.
PIPELINED_STREAMING = "pipelined requests to /system or to an API upstream route are not supported"


class Refused(Exception):
    """Raised from an httptools callback to stop parsing a request that was refused (the answer is out)."""


class Call(Protocol):
    """One request's handler. `streaming` calls start at once (the /system proxy), the others at `begin`."""

    streaming: bool
    keep_alive: bool

    def feed(self, chunk: bytes) -> None: ...
    def begin(self) -> None: ...
    def client_gone(self) -> None: ...


class Router(Protocol):
    """Decides what answers a request, from its head: a call, or None when it refused the request (`refuse`)."""

    def open(
        self, client: ClientConnection, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]
    ) -> Call | None: ...


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "active",
        "begun",
        "call",
        "closed",
        "connections",
        "final",
        "head_bytes",
        "headers",
        "max_header_bytes",
        "max_headers",
        "max_url_bytes",
        "parser",
        "paused",
        "peer",
        "pending",
        "phase",
        "read_at",
        "read_bytes",
        "router",
        "scanned",
        "since",
        "transport",
        "url",
    )

    def __init__(self, router: Router, connections: Connections) -> None:
        self.router = router
        self.connections = connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.call: Call | None = None  # being received
        self.active: Call | None = None  # being answered
        self.pending: deque[Call] = deque()  # pipelined, waiting their turn
        self.closed = False
        settings = connections.settings
        self.max_url_bytes = settings.max_url_bytes
        self.max_header_bytes = settings.max_header_bytes
        self.max_headers = settings.max_headers
        self.head_bytes = 0  # bytes read before the last read while a head is incomplete
        self.read_bytes = 0  # bytes of the last read
        self.read_at = 0.0  # when: one clock read per read, not one per parser callback
        self.begun = 0  # requests begun on this connection
        self.phase = HEAD  # a caller that connects owes its first request's head
        self.since = _now()
        self.paused = False  # reading paused by us: the caller owes nothing meanwhile
        self.final: bytes | None = None  # a refusal to send once the answer being written is out
        self.scanned: tuple | None = None  # the router's memo of the last headers it scanned (router.scan_repeated)

    # --- asyncio ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        connections = self.connections
        if len(connections) >= connections.settings.max_connections:
            self.closed = True
            transport.write(responses.too_many_connections(connections.settings.max_connections))  # type: ignore[attr-defined]
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        self.peer = peer[0].encode() if peer else b""
        connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.phase == LINGER or self.closed:
            return
        begun = self.begun
        head_before = self.phase == HEAD
        self.read_bytes, self.read_at = len(data), _now()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data, exc.args[0])
            return
        except httptools.HttpParserError as exc:
            if self.phase != LINGER:  # else a callback refused the request and answered
                self.refuse(responses.bad_request(f"malformed HTTP request: {exc}", close=True))
            return
        if self.phase == HEAD:  # a head still incomplete: bound what httptools buffers of it
            if head_before and begun == self.begun:
                self.head_bytes += len(data)
            else:
                self.head_bytes = 0  # the read began it: at most one read (256 KiB) more is ever buffered
            if self.head_bytes > self.max_url_bytes + self.max_header_bytes or self._head_too_large():
                self.refuse(responses.header_fields_too_large(self.max_header_bytes, self.max_headers))

    def _upgrade(self, data: bytes, offset: int) -> None:
        """A request with `Upgrade` (or CONNECT) is complete: RFC 9110 §7.8 lets a server ignore the header and
        keep speaking HTTP/1.1, which it has answered or will; what follows is the next request."""
        if self.phase != LINGER and offset < len(data):
            self.data_received(data[offset:])

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        for call in {self.call, self.active, *self.pending}:
            if call is not None:
                call.client_gone()
        self.pending.clear()

    def pause_writing(self) -> None:
        pause = getattr(self.active, "pause_upstream", None)
        if pause is not None:
            pause()

    def resume_writing(self) -> None:
        resume = getattr(self.active, "resume_upstream", None)
        if resume is not None:
            resume()

    # --- httptools ---

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.begun += 1
        self.phase, self.since = HEAD, self.read_at  # the whole head is due within --header-timeout of its first byte

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_url_bytes:
            self.refuse(responses.uri_too_long(self.max_url_bytes))
            raise Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))  # counted once the head is in (or a read ends inside it): cheaper

    def _head_too_large(self) -> bool:
        """Whether the headers so far are over the limits. Their bytes are only added up when the reads that
        brought them could hold more than the limit, which a usual head in one small read cannot."""
        headers = self.headers
        if len(headers) > self.max_headers:
            return True
        if self.head_bytes + self.read_bytes <= self.max_header_bytes:
            return False
        return sum(len(name) + len(value) for name, value in headers) > self.max_header_bytes

    def on_headers_complete(self) -> None:
        over = len(self.headers) > self.max_headers or self.head_bytes + self.read_bytes > self.max_header_bytes
        if over and self._head_too_large():  # the usual head is well within both: no call to count its bytes
            self.refuse(responses.header_fields_too_large(self.max_header_bytes, self.max_headers))
            raise Refused
        parser = self.parser
        method = parser.get_method()
        if parser.should_upgrade() and not self._upgrade_ignorable(method):
            raise Refused
        self.phase, self.since, self.head_bytes = BODY, self.read_at, 0
        call = self.router.open(self, method, self.url, self.headers)
        if self.phase == LINGER:  # refused by `open` (a Content-Length over the limit)
            raise Refused
        self.call = call
        if call.streaming:
            if self.active is not None:
                self.refuse(responses.bad_request(PIPELINED_STREAMING, close=True))
                raise Refused
            self.active = call

    def on_body(self, body: bytes) -> None:
        self.since = self.read_at
        self.call.feed(body)  # type: ignore[union-attr]
        if self.phase == LINGER:  # the call refused a body over its limit
            raise Refused

    def on_message_complete(self) -> None:
        call, self.call = self.call, None
        if call is None:
            return
        self.phase = BUSY
        call.keep_alive = self.parser.should_keep_alive()
        if self.active is None or self.active is call:
            self.active = call
            call.begin()
        else:
            self.pending.append(call)

    def _upgrade_ignorable(self, method: bytes) -> bool:
        """Whether a request asking to switch protocols can be served as plain HTTP/1.1 (refused if not).

        The Upgrade header may be ignored (RFC 9110 §7.8), but httptools stops at the head of such a request,
        so one with a body cannot be read; CONNECT asks for a tunnel this server does not make."""
        if method == b"CONNECT":
            self.refuse(
                responses.error(405, "MethodNotAllowed", "CONNECT is not supported: fx is not a proxy", close=True)
            )
            return False
        for name, value in self.headers:
            lower = name.lower()
            if (lower == b"content-length" and value.strip() != b"0") or lower == b"transfer-encoding":
                message = "a request with both Upgrade and a body is not supported; send it without Upgrade"
                self.refuse(responses.bad_request(message, close=True))
                return False
        return True

    # --- for calls ---

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def done(self, keep_alive: bool) -> None:
        """The active call's answer is out."""
        self.active = None
        if self.final is not None:  # a pipelined request behind it was refused
            self._last(self.final)
            self.final = None
            self.since = _now()
        elif not keep_alive or self.connections.draining:
            self.close()
        elif self.pending:
            self.active = self.pending.popleft()
            self.active.begin()
        elif self.phase == BUSY:
            self.phase, self.since = IDLE, _now()

    def refuse(self, answer: bytes) -> None:
        """Answer a request that will not be read to its end (the answer says `Connection: close`), stop reading,
        and close after a short linger; an answer being written goes first."""
        if self.phase == LINGER or self.closed:
            return
        call, self.call = self.call, None
        if call is not None:
            if call is self.active:  # a streaming call cut short before its answer began
                self.active = None
            call.client_gone()
        self.phase, self.since = LINGER, _now()
        if self.paused:  # what the caller still sends is read and dropped: the linger's close must not reset
            self.resume_reading()
        if self.active is None:
            self._last(answer)
        else:
            self.final = answer

    def _last(self, answer: bytes) -> None:
        """Write the connection's last answer and end our side of it; the caller's is read until the close."""
        transport = self.transport
        if not self.closed and not transport.is_closing():  # type: ignore[union-attr]
            transport.write(answer)  # type: ignore[union-attr]
            if transport.can_write_eof():  # type: ignore[union-attr]
                transport.write_eof()  # type: ignore[union-attr]

    def end(self) -> None:
        """Close after an answer relayed as is (/system): at once if the request was read to its end, else after
        the linger, reading and dropping the rest, since closing with unread input would reset the connection
        and lose the answer with it (the controller refuses a body it will not read, e.g. without a token)."""
        if self.call is None:
            self.close()
        else:
            self.refuse(b"")

    def close(self) -> None:
        if not self.closed:
            self.transport.close()  # type: ignore[union-attr]

    def abort(self) -> None:
        if not self.closed:
            self.transport.abort()  # type: ignore[union-attr]

    def pause_reading(self) -> None:
        if not self.closed:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if not self.closed:
            self.paused = False
            self.since = _now()
            self.transport.resume_reading()  # type: ignore[union-attr]

    def idle(self) -> bool:
        return self.active is None and self.call is None and not self.pending

    def overdue(self, now: float) -> None:
        """Called by the sweep: end this connection if the caller is late with what it owes, else nothing."""
        phase = self.phase
        if phase == BUSY or self.paused or self.active is not None:
            return
        settings, waited = self.connections.settings, now - self.since
        if phase == IDLE:
            if waited > settings.idle_timeout:
                self.close()
        elif phase == HEAD:
            if waited > settings.header_timeout:
                self.refuse(responses.request_timeout("its head", settings.header_timeout))
        elif phase == BODY:
            if waited > settings.body_timeout:
                self.refuse(responses.request_timeout("a byte of its body", settings.body_timeout))
        elif waited > LINGER_S:
            self.close()
