"""/system/* goes to the controller unchanged, streamed both ways with back-pressure.

Not a hot path: each call opens its own connection to the controller (`Connection: close`), the answer's bytes
are relayed verbatim (chunked log streams included) and the caller's connection closes after it, so no framing
has to be rewritten on the way back.
"""

from __future__ import annotations

import asyncio
import logging

from fx_gateway import responses
from fx_gateway.server import ClientConnection
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"trailer"})


class SystemProxy(asyncio.Protocol):
    """Both the call the client connection feeds and the protocol of the connection to the controller."""

    streaming = True

    def __init__(
        self,
        client: ClientConnection,
        host: str,
        port: int,
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
        lines = [b"%s %s HTTP/1.1\r\n" % (method, url)]
        for name, value in headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"X-Forwarded-For: %s\r\nConnection: close\r\n\r\n" % client.peer)
        self.buffer = [b"".join(lines)]
        client.pause_reading()  # until the controller connection is open, so an upload is not buffered here
        spawn(self._connect(host, port))

    async def _connect(self, host: str, port: int) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: self, host, port)
        except OSError as exc:
            log.warning("controller at %s:%d unreachable: %s", host, port, exc)
            answer = responses.error(502, "ControllerUnavailable", f"the controller at {host}:{port} is unreachable")
            self.client.write(answer)
            self.client.close()

    # --- the controller side ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.upstream = transport  # type: ignore[assignment]
        if self.closed:
            transport.close()
            return
        transport.write(b"".join(self.buffer))  # type: ignore[attr-defined]
        self.buffer = []
        self.client.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.relayed = True
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()

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
        if self.upstream is None:
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
