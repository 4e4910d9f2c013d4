"""/system/* goes to the controller unchanged, streamed both ways with back-pressure.

Not a hot path: each call opens its own connection to the controller (`Connection: close`), the answer's bytes
are relayed verbatim (chunked log streams included) and the caller's connection closes after it, so no framing
has to be rewritten on the way back.

A body goes to the controller only after it said `100 Continue` (the gateway asks with `Expect: 100-continue`):
a request it refuses from its head (no token, too large) is answered without reading the body, and if the body
were already on its way, the controller's close with unread input would reset the connection, and the
refusal with it, before the gateway read it.
"""

from __future__ import annotations

import asyncio
import logging

from fx_gateway.http import responses
from fx_gateway.http.server import ClientConnection
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
CONNECT_ATTEMPT_S = 2.0  # one attempt to open the controller connection (a local one answers in milliseconds)
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"trailer"})


class SystemProxy(asyncio.Protocol):
    """Both the call the client connection feeds and the protocol of the connection to the controller."""

    streaming = True

    def __init__(
        self,
        client: ClientConnection,
        host: str,
        port: int,
        connect_timeout: float,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        limit: int,
    ) -> None:
        self.client = client
        self.limit = limit  # body bytes forwarded at most (a Content-Length over it was refused before)
        self.size = 0
        self.relayed = False
        self.keep_alive = False
        self.upstream: asyncio.Transport | None = None
        self.closed = False
        self.chunked = False
        self.expecting = False  # the caller asked for 100 Continue itself: the controller's goes to it
        has_body = False
        lines = [b"%s %s HTTP/1.1\r\n" % (method, url)]
        for name, value in headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == b"transfer-encoding":
                self.chunked = has_body = b"chunked" in value.lower()
            elif lower == b"content-length":
                has_body = value.strip() != b"0"
            elif lower == b"expect":
                self.expecting = value.lower() == b"100-continue"
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        self.waiting = has_body  # for the controller's 100 Continue before the body is sent
        if has_body:
            lines.append(b"Expect: 100-continue\r\n")
        lines.append(b"X-Forwarded-For: %s\r\nConnection: close\r\n\r\n" % client.peer)
        self.head = b"".join(lines)
        self.buffer: list[bytes] = []  # body received before the controller asked for it
        self.early = b""  # the start of the controller's answer, while it could still be a 100 Continue
        self.controller = f"{host}:{port}"
        client.pause_reading()  # until the controller connection is open, so an upload is not buffered here
        spawn(self._connect(host, port, connect_timeout))

    async def _connect(self, host: str, port: int, budget: float) -> None:
        # A connect that hangs is sent again: after a failover the controller Service may still name the address
        # of the pod that was deleted for a moment, and a SYN to it is never answered. Nothing was sent yet.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        while True:
            try:
                attempt = min(CONNECT_ATTEMPT_S, max(deadline - loop.time(), 0.001))
                await asyncio.wait_for(loop.create_connection(lambda: self, host, port), attempt)
                return
            except (OSError, TimeoutError) as exc:
                if self.closed or loop.time() >= deadline:
                    log.warning("controller at %s unreachable: %r", self.controller, exc)
                    self._unavailable(f"the controller at {self.controller} is unreachable")
                    return
                await asyncio.sleep(0.1)

    def _unavailable(self, message: str) -> None:
        self.client.write(responses.error(502, "ControllerUnavailable", message, close=True))
        self.client.end()

    # --- the controller side ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.upstream = transport  # type: ignore[assignment]
        if self.closed:
            transport.close()
            return
        transport.write(self.head)  # type: ignore[attr-defined]
        if not self.waiting:
            self.client.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.waiting:
            data = self.early + data
            if len(data) < len(CONTINUE) and CONTINUE.startswith(data):  # a 100 Continue cut in two
                self.early = data
                return
            self.waiting = False
            if data.startswith(CONTINUE):  # send the body; the caller hears of it only if it asked
                if self.expecting:
                    self.client.write(CONTINUE)
                data = data[len(CONTINUE) :]
                self.upstream.write(b"".join(self.buffer))  # type: ignore[union-attr]
                self.buffer = []
                self.client.resume_reading()
            # else a final answer from the head alone: the body is never sent (the caller's is read and dropped)
        if data:
            self.relayed = True
            self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.relayed or self.closed:
            self.client.end()
            return
        # Closed or reset before a byte of an answer (the controller died, or closed with our body unread):
        # the caller still gets one.
        log.warning("controller at %s closed the connection without answering: %s", self.controller, exc)
        self._unavailable(f"the controller at {self.controller} closed the connection without answering")

    def pause_writing(self) -> None:
        self.client.pause_reading()

    def resume_writing(self) -> None:
        self.client.resume_reading()

    # --- the caller side ---

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:  # a chunked body that outgrew the limit: the controller gets no more of it
            if self.relayed:  # the controller answered already (e.g. 401); its answer is cut with the connection
                self.client_gone()
                self.client.abort()
            else:
                message = f"/system request bodies are limited to {self.limit} bytes"
                self.client.refuse(responses.error(413, "RequestTooLarge", message, close=True))
            return
        if self.chunked:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        if self.upstream is None or self.waiting:
            self.buffer.append(chunk)
        else:
            self.upstream.write(chunk)

    def begin(self) -> None:
        """The caller's request is complete."""
        if self.chunked:
            self.feed(b"")  # the last chunk: 0-length

    def client_gone(self) -> None:
        self.closed = True
        if self.upstream is not None:
            self.upstream.close()

    def pause_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()
