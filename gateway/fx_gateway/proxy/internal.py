"""Calls the gateway makes itself (async invocations, events): an Exchange whose caller is a future.

They go through the same dispatcher as HTTP callers, so they are held while a version scales from zero,
count in the load reports the autoscaler reads, and are bounded by the same backstop timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

from fx_gateway.http import responses
from fx_gateway.proxy.exchange import Exchange
from fx_gateway.proxy.routes import FunctionRoutes


@dataclass
class Result:
    status: int  # 0: the connection broke after part of the answer was relayed
    body: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)  # lower-case names
    version: str = ""  # the version that answered
    by_gateway: bool = False  # the gateway's own error (no replica, queue full, timeout), not a function's answer

    @property
    def function_error(self) -> bytes | None:
        """The Invoke API's X-Amz-Function-Error (Unhandled, Handled), if the handler failed."""
        return self.headers.get(b"x-amz-function-error")


class _Answer:
    """httptools callbacks collecting one HTTP response."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)


class Caller:
    """Stands in for a caller's connection (fx_gateway.proxy.exchange.Client): collects the answer, then hands it on."""

    __slots__ = ("data", "exchange", "on_result")

    def __init__(self, on_result: Callable[[Result], object]) -> None:
        self.data: list[bytes] = []
        self.on_result: Callable[[Result], object] | None = on_result
        self.exchange: Exchange | None = None

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def done(self, keep_alive: bool) -> None:
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        try:
            parser.feed_data(b"".join(self.data))
            result = Result(parser.get_status_code(), b"".join(answer.body), answer.headers)
        except httptools.HttpParserError:
            result = Result(0, b"the replica's answer was not valid HTTP")
        self._resolve(result)

    def abort(self) -> None:
        self._resolve(Result(0, b"the replica's connection broke in the middle of its answer"))

    def _resolve(self, result: Result) -> None:
        on_result, self.on_result = self.on_result, None
        if on_result is not None:
            exchange: Exchange = self.exchange  # type: ignore[assignment]
            result.version = exchange.dispatcher.version
            result.by_gateway = not exchange.relayed
            on_result(result)


def send(
    routes: FunctionRoutes,
    qualifier: str,
    head: bytes,
    body: bytes,
    on_result: Callable[[Result], object],
    invocations: int = 1,
) -> None:
    """Send one request (`head`: request line and headers, no Content-Length) to a version of `routes`;
    `on_result` gets the Result, from the event loop's callbacks (or at once). No task: for hot paths.
    `invocations`: how many the request runs one after another (a batch), each within the function's timeout."""
    dispatcher = routes.pick(qualifier)
    if dispatcher is None:
        answer = responses.version_not_found(routes.name, qualifier) if qualifier else responses.no_traffic(routes.name)
        on_result(Result(404, answer[answer.index(b"\r\n\r\n") + 4 :], by_gateway=True))
        return
    caller = Caller(on_result)
    head += routes.invoked(dispatcher, qualifier)
    exchange = caller.exchange = Exchange(caller, dispatcher, head, len(body), routes.timeout * invocations)
    exchange.feed(body)
    exchange.begin()


async def call(routes: FunctionRoutes, qualifier: str, head: bytes, body: bytes) -> Result:
    """send(), awaited."""
    future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
    # The awaiting task may have been cancelled by the time the answer comes.
    send(routes, qualifier, head, body, lambda result: future.done() or future.set_result(result))
    return await future
