"""Accepting an async call: store it in JetStream, then answer 202 with its call id.

The 202 goes out only after JetStream has acknowledged the write, so an accepted call survives any gateway.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable

from fx.protocol import (
    ASYNC_CALL_ID,
    ASYNC_CALLBACK_SUBJECT,
    ASYNC_CALLBACK_URL,
    ASYNC_FUNCTION,
    ASYNC_METHOD,
    ASYNC_QUALIFIER,
    ASYNC_TARGET,
    CALL_ID,
    PIN_VERSION,
)

from fx_gateway.events.callback_policy import SUBJECT_HEADER, URL_HEADER
from fx_gateway.http import lambda_errors, responses
from fx_gateway.proxy.exchange import Client
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")


class StoreUnavailable(Exception):
    """JetStream did not take the call (NATS down, the stream full or gone); StoreUnconfirmed: no acknowledgement
    in time. Each says what the caller is answered."""

    status, code = 503, "AsyncUnavailable"
    outcome = "could not be stored ({}); nothing was queued"


class StoreUnconfirmed(StoreUnavailable):
    """JetStream did not acknowledge the call in time: it may have stored it all the same (a NATS server lost
    with the acknowledgement under way), so the caller is told that its outcome is unknown, not that nothing was
    queued."""

    status, code = 504, "AsyncUnconfirmed"
    outcome = (
        "was not acknowledged in time ({}): it may have been queued, and then it runs; sent again, it may run twice"
    )


CALL_ID_HEADER = CALL_ID.encode()

# Stores one call: (function, body, headers); returns once JetStream acknowledged it.
Enqueue = Callable[[str, bytes, dict[str, str]], Awaitable[None]]

# The caller's headers that steer the gateway, not the function: turned into ASYNC_* headers or dropped (a log
# tail, X-Amz-Log-Type, is for RequestResponse calls only, as on Lambda).
CONSUMED = frozenset(
    {URL_HEADER, SUBJECT_HEADER, PIN_VERSION.lower().encode(), b"x-amz-invocation-type", b"x-amz-log-type"}
)


def stored_headers(
    function: str, qualifier: str, method: bytes, target: bytes, seen: dict[bytes, bytes], kept: bytes, peer: bytes
) -> tuple[str, dict[str, str]]:
    """(call id, the NATS headers of the stored call): the caller's end-to-end headers, X-Forwarded-*, ASYNC_*."""
    call_id = str(uuid.uuid4())
    headers: dict[str, str] = {}
    for line in kept.split(b"\r\n"):
        name, _, value = line.partition(b": ")
        if name and name.lower() not in CONSUMED:
            headers[name.decode("latin-1")] = value.decode("latin-1")
    forwarded_for = seen.get(b"x-forwarded-for")
    headers["X-Forwarded-For"] = (forwarded_for + b", " + peer if forwarded_for else peer).decode("latin-1")
    headers["X-Forwarded-Proto"] = seen.get(b"x-forwarded-proto", b"http").decode("latin-1")
    headers["X-Forwarded-Host"] = (seen.get(b"x-forwarded-host") or seen.get(b"host", b"")).decode("latin-1")
    headers[ASYNC_CALL_ID] = call_id
    headers[ASYNC_FUNCTION] = function
    headers[ASYNC_METHOD] = method.decode("latin-1")
    headers[ASYNC_TARGET] = target.decode("latin-1")
    if qualifier:
        headers[ASYNC_QUALIFIER] = qualifier
    if URL_HEADER in seen:
        headers[ASYNC_CALLBACK_URL] = seen[URL_HEADER].decode("latin-1")
    if SUBJECT_HEADER in seen:
        headers[ASYNC_CALLBACK_SUBJECT] = seen[SUBJECT_HEADER].decode("latin-1")
    return call_id, headers


def too_large(function: str, limit: int) -> bytes:
    message = f"the body of an async call to function {function!r} is over the limit of {limit} bytes"
    return responses.error(413, "RequestTooLarge", message, function, close=True)


class AsyncAccept:
    """The call object for an async request: receives the body, stores it, answers 202 (or why not)."""

    __slots__ = (
        "body",
        "call_id",
        "client",
        "enqueue",
        "function",
        "gone",
        "headers",
        "keep_alive",
        "lambda_style",
        "limit",
        "size",
    )
    streaming = False

    def __init__(
        self,
        client: Client,
        enqueue: Enqueue,
        function: str,
        call_id: str,
        headers: dict[str, str],
        limit: int,
        lambda_style: bool,
    ) -> None:
        self.client = client
        self.enqueue = enqueue
        self.function = function
        self.call_id = call_id
        self.headers = headers
        self.limit = limit
        self.lambda_style = lambda_style  # the Invoke API answers 202 with an empty body
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = True
        self.gone = False

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size <= self.limit:
            self.body.append(chunk)
        else:  # without Content-Length (chunked): refused once it outgrows the limit, without reading on
            self.client.refuse(too_large(self.function, self.limit))

    def begin(self) -> None:
        body = b"".join(self.body)
        if self.lambda_style and body:  # Lambda refuses an event that is not JSON before it queues it
            try:
                json.loads(body)
            except ValueError as exc:
                message = f"Could not parse request body into json: {exc}"
                self._answer(lambda_errors.translate(responses.error(400, "InvalidRequestContent", message)))
                return
        spawn(self._store(body))

    def client_gone(self) -> None:
        self.gone = True  # the call is stored all the same if its write is under way

    async def _store(self, body: bytes) -> None:
        try:
            await self.enqueue(self.function, body, self.headers)
        except StoreUnavailable as exc:
            log.warning("async call to %s: %s (%s)", self.function, exc.code, exc)
            message = f"the async call to function {self.function!r} {exc.outcome.format(exc)}"
            answer = responses.error(exc.status, exc.code, message, self.function)
            self._answer(lambda_errors.translate(answer) if self.lambda_style else answer)
            return
        call_id = self.call_id.encode()
        if self.lambda_style:
            head = b"HTTP/1.1 202 Accepted\r\n%s: %s\r\nX-Amzn-RequestId: %s\r\nContent-Length: 0\r\n\r\n"
            self._answer(head % (CALL_ID_HEADER, call_id, call_id))
        else:
            body = b'{"call_id": "%s"}' % call_id
            head = b"HTTP/1.1 202 Accepted\r\n%s: %s\r\nContent-Type: application/json\r\n"
            self._answer(head % (CALL_ID_HEADER, call_id) + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def _answer(self, data: bytes) -> None:
        if not self.gone:
            self.client.write(data)
            self.client.done(self.keep_alive)
