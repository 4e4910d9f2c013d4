"""One proxied function call: the caller's request, its trip through a dispatcher, the replica's answer."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from fx.protocol import REPLICA_REPORT

from fx_gateway.http import lambda_errors, responses

if TYPE_CHECKING:
    from fx_gateway.proxy.dispatch import VersionDispatcher
    from fx_gateway.proxy.upstream import UpstreamConnection


REPORT_LINE = REPLICA_REPORT.encode() + b": "
NO_BODY = b"Content-Length: 0\r\n\r\n"


class Client(Protocol):
    """What an exchange needs from the caller's connection (fx_gateway.http.server.ClientConnection)."""

    def write(self, data: bytes) -> None: ...
    def done(self, keep_alive: bool) -> None: ...
    def abort(self) -> None: ...
    def refuse(self, answer: bytes) -> None: ...


class Exchange:
    __slots__ = (
        "body",
        "client",
        "cold",
        "conn",
        "deadline",
        "dispatcher",
        "gone",
        "head",
        "held_at",
        "inject",
        "is_head",
        "keep_alive",
        "lambda_api",
        "limit",
        "prefix",
        "raw",
        "relayed",
        "retried",
        "safe",
        "size",
        "started",
        "timeout",
    )
    streaming = False

    def __init__(
        self,
        client: Client,
        dispatcher: VersionDispatcher,
        head: bytes,
        limit: int,
        timeout: float,
        is_head: bool = False,
        inject: bytes | None = None,
        safe: bool = False,
        lambda_api: bool = False,
    ) -> None:
        self.client = client
        self.dispatcher = dispatcher
        self.head = head  # request line and headers for the replica, without Content-Length and the blank line
        self.limit = limit
        self.timeout = timeout  # the function's: the backstop answers for it a grace later
        self.is_head = is_head
        self.inject = inject  # a header line to add to the answer (X-Amz-Executed-Version)
        self.safe = safe  # a GET, HEAD or OPTIONS: sent again if its replica is lost (proxy.replica_loss)
        self.lambda_api = lambda_api  # on the Invoke API: the gateway's own errors in Lambda's shape
        self.retried = 0  # times sent again after its replica was lost
        self.prefix = b""
        self.body: list[bytes] = []
        self.size = 0
        self.raw = b""
        self.keep_alive = True
        self.started = time.monotonic()
        self.deadline = 0.0  # set by the dispatcher when it sends the request
        self.held_at = 0.0
        self.cold = False
        self.relayed = False
        self.gone = False
        self.conn: UpstreamConnection | None = None

    # --- from the caller's connection ---

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size <= self.limit:
            self.body.append(chunk)
        else:  # a body without Content-Length (chunked) that outgrew the limit: refused without reading on
            answer = self._own(responses.too_large(self.dispatcher.function, self.limit, close=True))
            self.dispatcher.finished(self, int(answer[9:12]))
            self.client.refuse(answer)

    def begin(self) -> None:
        auth = self.dispatcher.auth  # last, so it is the one the replica reads whatever the head holds
        if self.body:
            self.raw = b"".join([self.head, auth, b"Content-Length: %d\r\n\r\n" % self.size, *self.body])
            self.body = []
        else:  # most calls (GET): concatenation is half the cost of the join and the formatting
            self.raw = self.head + auth + NO_BODY
        self.dispatcher.submit(self)

    def client_gone(self) -> None:
        self.gone = True
        if self.held_at and self.conn is None:
            self.dispatcher.drop(self)

    # --- from the upstream connection ---

    def relay(self, data: bytes) -> None:
        if not self.relayed:
            data = self.prefix + data
            head_end = data.find(b"\r\n\r\n")
            if head_end < 0:  # until the whole head is in, its report and executed version are unknown
                self.prefix = data
                return
            end = data.find(b"\r\n") + 2  # after the status line
            if data.startswith(REPORT_LINE, end):  # the handler's duration: counted, and kept from the caller
                line_end = data.find(b"\r\n", end)
                self.dispatcher.reported(self, data[end + len(REPORT_LINE) : line_end])
                data = data[:end] + data[line_end + 2 :]
                head_end -= line_end + 2 - end
            if self.inject is not None:
                if b"\nx-amz-executed-version:" not in data[:head_end].lower():
                    data = b"%s%s%s" % (data[:end], self.inject, data[end:])  # the runtime names it on success only
                self.inject = None
        self.relayed = True
        if not self.gone:
            self.client.write(data)

    def answered(self, status: int, keep_alive: bool) -> None:
        self.dispatcher.finished(self, status)
        if not self.gone:
            self.client.done(keep_alive and self.keep_alive)

    @property
    def heard_back(self) -> bool:
        """Whether a byte of the replica's answer came (held back in `prefix` until its head is whole)."""
        return self.relayed or bool(self.prefix)

    def lost(self) -> None:
        """The replica's connection broke before the whole answer came, and the request is not sent again."""
        self._abandoned(self._own(responses.replica_lost(self.dispatcher.function)))

    def timed_out(self) -> None:
        self.conn.abandon()  # type: ignore[union-attr]
        if self.lambda_api:
            self._abandoned(lambda_errors.function_timeout(self.timeout))
        else:
            self._abandoned(responses.function_timeout(self.dispatcher.function, self.timeout))

    def _own(self, answer: bytes) -> bytes:
        """An answer of the gateway's own, in the Invoke API's shape when that is the caller's."""
        return lambda_errors.translate(answer) if self.lambda_api else answer

    def _abandoned(self, answer: bytes) -> None:
        self.dispatcher.finished(self, int(answer[9:12]))
        if self.gone:
            return
        if self.relayed:  # part of an answer is out: only closing tells the caller it is incomplete
            self.client.abort()
        else:
            self.client.write(answer)
            self.client.done(self.keep_alive)

    # --- from the dispatcher, before any replica saw the request ---

    def fail(self, answer: bytes, status: int) -> None:
        if self.lambda_api:
            answer = lambda_errors.translate(answer)
            status = int(answer[9:12])
        self.dispatcher.finished(self, status)
        if not self.gone:
            self.client.write(answer)
            self.client.done(self.keep_alive)
