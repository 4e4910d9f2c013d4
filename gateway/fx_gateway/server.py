"""The gateway's HTTP/1.1 server side: one asyncio Protocol per caller connection, parsed by httptools.

Requests on one connection are answered in order: a pipelined request waits until the previous answer is out.
What to do with a request is decided once its headers are in (`Gateway.open` returns a call object); the call
receives the body as it arrives and starts when the request is complete.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Protocol

import httptools

from fx_gateway import responses

if TYPE_CHECKING:
    from fx_gateway.app import Gateway


class Call(Protocol):
    """One request's handler. `streaming` calls start at once (the /system proxy), the others at `begin`."""

    streaming: bool
    keep_alive: bool

    def feed(self, chunk: bytes) -> None: ...
    def begin(self) -> None: ...
    def client_gone(self) -> None: ...


class ClientConnection(asyncio.Protocol):
    __slots__ = ("active", "call", "closed", "gateway", "headers", "parser", "peer", "pending", "transport", "url")

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.call: Call | None = None  # being received
        self.active: Call | None = None  # being answered
        self.pending: deque[Call] = deque()  # pipelined, waiting their turn
        self.closed = False

    # --- asyncio ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0].encode() if peer else b""
        self.gateway.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(responses.bad_request("protocol upgrades (WebSocket) are not supported", close=True))
        except httptools.HttpParserError as exc:
            self._refuse(responses.bad_request(f"malformed HTTP request: {exc}", close=True))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.connections.discard(self)
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

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        call = self.gateway.open(self, self.parser.get_method(), self.url, self.headers)
        self.call = call
        if call.streaming:
            if self.active is not None:
                call.client_gone()
                self._refuse(responses.bad_request("pipelined /system requests are not supported", close=True))
                return
            self.active = call

    def on_body(self, body: bytes) -> None:
        self.call.feed(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        call, self.call = self.call, None
        if call is None:
            return
        call.keep_alive = self.parser.should_keep_alive()
        if self.active is None or self.active is call:
            self.active = call
            call.begin()
        else:
            self.pending.append(call)

    # --- for calls ---

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]

    def done(self, keep_alive: bool) -> None:
        """The active call's answer is out."""
        self.active = None
        if not keep_alive or self.gateway.draining:
            self.close()
        elif self.pending:
            self.active = self.pending.popleft()
            self.active.begin()

    def close(self) -> None:
        if not self.closed:
            self.transport.close()  # type: ignore[union-attr]

    def abort(self) -> None:
        if not self.closed:
            self.transport.abort()  # type: ignore[union-attr]

    def pause_reading(self) -> None:
        if not self.closed:
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if not self.closed:
            self.transport.resume_reading()  # type: ignore[union-attr]

    def idle(self) -> bool:
        return self.active is None and self.call is None and not self.pending

    def _refuse(self, answer: bytes) -> None:
        """A request the parser cannot go on from: answer, then close (nothing after it can be framed)."""
        if self.active is None:
            self.write(answer)
        self.close()
