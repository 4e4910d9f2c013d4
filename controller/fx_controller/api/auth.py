"""The admin token: the guard every /system call passes before its body is read."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

# Starlette's ASGI shapes, spelled out so this module needs nothing but the standard library.
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorSender = Callable[[Send, int, str, str], Awaitable[None]]  # (send, status, code, message): a refusal's answer


class AdminGuard:
    """ASGI middleware in front of the admin API: the token and the body size are checked from the request's
    head, before a byte of its body is read (FastAPI would parse a JSON body before any dependency runs).

    `/system/*` and `/metrics` need `Authorization: Bearer <token>` except the paths in `public`; a body is
    refused (413) from its Content-Length, or once it grows past `limit(method, path)` while being read."""

    def __init__(
        self,
        app: App,
        token: str,
        public: frozenset[str],
        limit: Callable[[str, str], int],
        error: ErrorSender | None = None,
    ) -> None:
        self.app = app
        self._token = token.encode()
        self.public = public
        self.limit = limit
        self.error = error or _error  # how a refusal is shaped: fx's, or the Lambda API's

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, headers = scope["path"], dict(scope["headers"])
        if path not in self.public and (path.startswith("/system") or path == "/metrics"):
            scheme, _, given = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
                why = "missing" if not given else "wrong"
                message = f"admin token {why}: run `fx login` or set FX_TOKEN"
                await self.error(send, 401, "Unauthorized", message)
                return
        limit = self.limit(scope["method"], path)
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > limit:
            await self.error(send, 413, "RequestTooLarge", f"the body of {path} is limited to {limit} bytes")
            return
        bounded = _BodyLimit(receive, send, path, limit, self.error)
        await self.app(scope, bounded.receive, bounded.send)


class _BodyLimit:
    """`receive` and `send` for the application: once a body without Content-Length outgrows `limit`, 413 is
    answered (unless the application's answer has begun), the application is told the caller left, and
    whatever it sends after is dropped.

    An application that answers before it has read the body it began to read (an upload refused mid-way: a
    full disk, a digest that cannot match) has the rest read and dropped first: the connection closes after the
    answer, and a close with unread input is a reset that can reach the caller before the answer does."""

    def __init__(self, receive: Receive, send: Send, path: str, limit: int, error: ErrorSender) -> None:
        self._receive, self._send = receive, send
        self._error = error
        self.path, self.limit = path, limit
        self.size = 0
        self.started = self.refused = False
        self.reading = False  # the body was asked for (so its 100 Continue went out) and is not all read yet

    async def receive(self) -> Message:
        message = await self._receive()
        self.reading = message["type"] == "http.request" and message.get("more_body", False)
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                if not self.started:
                    await self._error(
                        self._send, 413, "RequestTooLarge", f"the body of {self.path} is limited to {self.limit} bytes"
                    )
                self.refused = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        self.started = True
        while self.reading and self.size <= self.limit:  # past the limit the rest is left: it need not end
            rest = await self._receive()
            self.reading = rest["type"] == "http.request" and rest.get("more_body", False)
            self.size += len(rest.get("body", b""))
        await self._send(message)


async def _error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
