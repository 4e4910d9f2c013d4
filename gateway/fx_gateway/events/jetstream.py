"""What the event engines share about JetStream: the async-call streams, storing a call (once, by message id),
keeping long work from being redelivered, and dead letters (their headers built here only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable

import nats.errors
from fx import async_streams
from fx.protocol import (
    CONSUMER_ASYNC,
    DEAD_ATTEMPTS,
    DEAD_ERROR,
    DEAD_MESSAGE,
    DEAD_STATUS,
    STREAM_ASYNC,
    STREAM_DLQ,
    async_subject,
    dead_letter_subject,
)
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import APIError

from fx_gateway.proxy.internal import Result
from fx_gateway.tasks import spawn

STORE_TIMEOUT_S = 5.0  # for JetStream's acknowledgement of a stored async call
MESSAGE_MAX = 1024  # characters of an error message kept in a dead letter's header
MSG_ID = "Nats-Msg-Id"  # JetStream stores a message once per id within the stream's duplicate window
EXPECTED_STREAM = "Nats-Expected-Stream"  # JetStream refuses a message its subject would put in another stream


async def ensure_streams(js: JetStreamContext, ack_wait: float, replicas: int = 1) -> None:
    """Check (on a NATS without auth: create) the async-call and dead-letter streams, then the shared consumer.
    `replicas` as the controller's (FX_NATS_REPLICAS): else the check finds them different and tries to change them."""
    await async_streams.ensure(js, replicas)
    await js.add_consumer(STREAM_ASYNC, consumer_config(ack_wait))


def consumer_config(ack_wait: float) -> ConsumerConfig:
    """The async calls' shared durable consumer (the worker creates it again if missing: a NATS that lost its
    store lost it too)."""
    return ConsumerConfig(
        durable_name=CONSUMER_ASYNC,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,  # the worker counts attempts itself and dead-letters
        max_ack_pending=-1,  # each gateway takes at most --async-concurrency
    )


class Storer:
    """Stores async calls, JetStream's acknowledgements taken on one inbox subscription: nats-py's js.publish()
    costs a request per call (random bytes for its inbox, a future awaited under a timer of its own, the answer
    parsed into a PubAck), more than the gateway's whole 202. Acknowledgements overdue are failed together."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._inbox = ""
        self._sent = 0
        self._waiting: dict[str, asyncio.Future[bool]] = {}  # by the reply subject's last token
        self._deadlines: deque[tuple[float, str]] = deque()  # in the order sent
        self._expiry: asyncio.Task | None = None

    async def start(self) -> None:
        self._inbox = self.nc.new_inbox()
        await self.nc.subscribe(self._inbox + ".*", cb=self._acknowledged)
        self._expiry = spawn(self._expire())

    def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()

    async def store(self, function: str, body: bytes, headers: dict[str, str], msg_id: str = "") -> bool:
        """Store an async call; returns once JetStream has it, False if it was a copy of one with the same
        `msg_id` (stored by another gateway). Raises nats.errors.Error (TimeoutError: no acknowledgement within
        STORE_TIMEOUT_S; the call may be stored all the same)."""
        headers = {**headers, EXPECTED_STREAM: STREAM_ASYNC}
        if msg_id:
            headers[MSG_ID] = msg_id
        self._sent += 1
        token = str(self._sent)
        future = self._waiting[token] = asyncio.get_running_loop().create_future()
        self._deadlines.append((time.monotonic() + STORE_TIMEOUT_S, token))
        try:
            await self.nc.publish(async_subject(function), body, f"{self._inbox}.{token}", headers)
            return await future
        finally:
            self._waiting.pop(token, None)

    async def _acknowledged(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject.rpartition(".")[2], None)
        if future is None or future.done():  # given up on already
            return
        data = msg.data
        if msg.headers and msg.headers.get("Status") == "503":
            future.set_exception(nats.errors.NoRespondersError())  # no stream takes the subject
        elif data.startswith(b'{"error"'):  # e.g. the stream full, or not the one expected
            try:
                description = str(json.loads(data)["error"].get("description", ""))
            except (ValueError, KeyError, TypeError, AttributeError):
                description = data[:200].decode("utf-8", "replace")
            future.set_exception(APIError(description=description))
        else:
            future.set_result(b'"duplicate"' not in data or not json.loads(data).get("duplicate"))

    async def _expire(self) -> None:
        """Fail the stores whose acknowledgement is overdue (lost with a connection, or NATS too slow)."""
        while True:
            await asyncio.sleep(STORE_TIMEOUT_S / 5)
            now = time.monotonic()
            while self._deadlines and self._deadlines[0][0] < now:
                future = self._waiting.pop(self._deadlines.popleft()[1], None)
                if future is not None and not future.done():
                    future.set_exception(nats.errors.TimeoutError())


_SEQUENCE, _DELIVERED, _STORED = Msg.Ack.StreamSeq, Msg.Ack.NumDelivered, Msg.Ack.Timestamp


def ack_texts(msg: Msg) -> tuple[str, str, str]:
    """(stream sequence, deliveries, ns stored) as the message's ack subject writes them, at a fraction of the cost
    of nats-py's Metadata; the subject has 9 tokens, or 12 with a domain and account hash after $JS.ACK. Raises
    ValueError unless all three are digits (JetStream writes the subject: they are, and JSON may take them so)."""
    reply = msg.reply
    tokens = reply.split(".")
    shift = 2 if len(tokens) == 9 else 0
    texts = tokens[_SEQUENCE - shift], tokens[_DELIVERED - shift], tokens[_STORED - shift]
    if not (reply.isascii() and texts[0].isdigit() and texts[1].isdigit() and texts[2].isdigit()):
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    return texts


def ack_tokens(msg: Msg) -> tuple[int, int, int]:
    """ack_texts(msg) as numbers."""
    sequence, count, stored = ack_texts(msg)
    return int(sequence), int(count), int(stored)


async def keep_in_progress(running: Callable[[], list[Msg]], ack_wait: float) -> None:
    """Tell JetStream the messages under way (`running()`) are still being worked on, so long calls are not
    redelivered."""
    while True:
        await asyncio.sleep(ack_wait / 3)
        for msg in running():
            # Disconnected: the message will be redelivered, which at-least-once allows.
            with contextlib.suppress(nats.errors.Error):
                await msg.in_progress()


def describe(result: Result) -> tuple[str, str]:
    """(error code, message) of a failed answer: Lambda's error shape, the gateway's, or the status."""
    try:
        body = json.loads(result.body)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errorType"), str):
        return body["errorType"], str(body.get("errorMessage", ""))
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code", "")), str(body["error"].get("message", ""))
    if result.function_error is not None:
        return "Unhandled", result.body.decode("utf-8", "replace")
    return f"HTTP{result.status}", result.body.decode("utf-8", "replace")


async def dead_letter(
    js: JetStreamContext,
    function: str,
    msg: Msg,
    code: str,
    message: str,
    status: int,
    attempts: int,
    more: dict[str, str] | None = None,
) -> dict[str, str]:
    """Store `msg`'s dead letter (its data and headers, with why it failed, and `more`); returns its headers.
    The caller acks `msg` only after this: between the two a crash only duplicates the letter."""
    headers = dict(msg.headers or {})
    headers[DEAD_ERROR] = code or "Unknown"
    headers[DEAD_MESSAGE] = " ".join(message.split())[:MESSAGE_MAX]
    headers[DEAD_STATUS] = str(status)
    headers[DEAD_ATTEMPTS] = str(attempts)
    headers.update(more or {})
    await js.publish(dead_letter_subject(function), msg.data, stream=STREAM_DLQ, headers=headers)
    return headers
