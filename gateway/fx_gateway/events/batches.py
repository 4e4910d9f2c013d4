"""Events of one function (trigger events, raw-invoke async calls) that wait for a replica go to it several per
request (the replica's /_fx/batch, runtime-images/fx_runtime/batch.py): one HTTP exchange per event cost the
gateway and the replica more than a small handler's invocation.

Nothing waits to make a batch bigger. A function has at most PER_REPLICA requests in flight per replica (one
running, the next already in its socket); an event that comes while they are all out waits, and when one is
answered the next request takes everything waiting, up to --trigger-batch-max events and the function's request
size limit. Events that find room go once the event loop has run what is ready, no timer: the ones that came
meanwhile (one read of a NATS socket brings many) go together, shared among the free requests, and one alone is
a plain /_fx/invoke. Sending each at once cost a request per event whenever the waiting ones had just gone: under
load most requests carried one event, each costing the gateway and the replica a socket write and read more
than an event in a batch. Each event is still its own invocation
with its own result: a handler error, a timeout or running out of memory fails that event alone. A batch ends
with such an invocation when it ends the replica: the events after it never started, and go again, each alone,
to another replica. An event whose batch has no answer at all (the replica lost) may have run: it gets the
gateway's error, so an at-least-once source delivers it again. An event may name its request id (an async call's
is its call id): the batch's X-Fx-Request-Id lists them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable
from functools import partial

from fx.protocol import MEMORY_MB_MAX, MEMORY_MB_MIN, REQUEST_ID

from fx_gateway.events.messages import INVOKE_HEAD
from fx_gateway.proxy import internal
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.routes import FunctionRoutes

BATCH_HEAD = b"POST /_fx/batch HTTP/1.1\r\nContent-Type: application/json\r\n"
REQUEST_ID_LINE = REQUEST_ID.encode() + b": %s\r\n"  # an invoke's, or a batch's (the ids of its events, in order)
PER_REPLICA = 2  # requests in flight per replica: the one it runs, the next waiting in its socket

OnResult = Callable[[internal.Result], object]


def gateway_error(status: int, code: str, message: str) -> internal.Result:
    """The gateway's own error for an event, as a trigger hands it on (reply, dead letter)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return internal.Result(status, body, by_gateway=True)


def removed(function: str) -> internal.Result:
    return gateway_error(404, "FunctionNotFound", f"function {function!r} was removed")


def answers(result: internal.Result, count: int) -> tuple[list[internal.Result], list[float], int]:
    """The `count` results of a batch's answer, in order (the events it did not answer get the gateway's 502), the
    handler duration in ms of each invocation that ran, and how many events the replica began: the ones after
    those never started (the replica says so in X-Fx-Batch: `<invocations answered> <memory MB>`)."""
    out: list[internal.Result] = []
    durations: list[float] = []
    began = count  # unless the replica says otherwise, any event may have run
    if result.status == 200 and b"x-fx-batch" in result.headers:
        with contextlib.suppress(ValueError):  # the function's process writes it: a count outside 0..count is a lie
            began = max(0, min(count, int(result.headers[b"x-fx-batch"].split(b" ")[0])))
        body, pos = result.body, 0
        try:
            while len(out) < count and pos < len(body):
                end = body.index(b"\n", pos)
                request_id, flag, ms, size = body[pos:end].split(b" ")
                pos = end + 1 + int(size)
                if pos > len(body):  # a payload cut short is no answer
                    break
                headers = {b"x-amzn-requestid": request_id}
                if flag != b"-":
                    headers[b"x-amz-function-error"] = flag
                out.append(internal.Result(200, body[end + 1 : pos], headers, result.version))
                durations.append(float(ms))
        except ValueError:  # not the framing: the answers so far stand
            pass
        why = "its replica's answer to the batch was cut short"
    else:
        why = f"its replica did not finish the batch (status {result.status}: {result.body[:200]!r})"
    message = f"the event was sent in a batch of {count}; {why}"
    out.extend(gateway_error(502, "BatchNotFinished", message) for _ in range(count - len(out)))
    return out, durations, began


def bill(routes: FunctionRoutes, result: internal.Result, durations: list[float]) -> None:
    """Count each invocation of a batch in the version's handler durations and billed usage, as an invoke's
    X-Fx-Report is (VersionDispatcher.reported): the replica runs the function's code, so values no invocation
    can have are not counted."""
    if not durations:  # no invocation answered (the replica lost, a timeout): nothing to count here
        return
    dispatcher = routes.dispatchers.get(result.version)
    try:
        memory_mb = int(result.headers[b"x-fx-batch"].split(b" ")[1])
    except (IndexError, ValueError):
        return
    if dispatcher is None or not MEMORY_MB_MIN <= memory_mb <= MEMORY_MB_MAX:
        return
    limit_ms = routes.timeout * 1000
    for ms in durations:
        if 0 <= ms <= limit_ms:  # NaN fails too
            dispatcher.stats.record_handler(ms, memory_mb)


def alone(request_id: bytes) -> bytes:
    """The head of an event's own /_fx/invoke; `request_id`: the invocation's, else the replica makes one."""
    return INVOKE_HEAD + REQUEST_ID_LINE % request_id if request_id else INVOKE_HEAD


def unfinished(result: internal.Result) -> bool:
    """The gateway's answer for an event whose batch's answer was lost or cut short: it may have run, or not."""
    return result.by_gateway and result.status == 502 and b'"BatchNotFinished"' in result.body


def _slots(routes: FunctionRoutes) -> int:
    """Requests a function may have in flight: PER_REPLICA per replica of its versions (one while it has none)."""
    return PER_REPLICA * max(1, sum(len(d.replicas) for d in routes.dispatchers.values()))


class Batcher:
    """Sends invocations of functions, batching those that wait (see the module's docstring)."""

    def __init__(self, book: RouteBook, max_events: int) -> None:
        self.book = book
        self.max_events = max_events  # --trigger-batch-max; 1 (or less): every event alone
        self._waiting: dict[str, deque[tuple[bytes, OnResult, bytes]]] = {}
        self._in_flight: dict[str, int] = {}
        self._unbatched: set[str] = set()  # functions whose replicas have no /_fx/batch (a custom runtime's relay)
        self._loop: asyncio.AbstractEventLoop | None = None  # the running loop, taken at the first dispatch

    def send(self, routes: FunctionRoutes, body: bytes, on_result: OnResult, request_id: bytes = b"") -> None:
        """Invoke `routes`' function with the event `body` (JSON, within its size limit), with the others that came
        in this loop iteration or that wait; `on_result` gets its Result from the event loop's callbacks.
        `request_id`: the invocation's (an async call's id), else the replica makes one."""
        name = routes.name
        if self.max_events <= 1 or name in self._unbatched:
            internal.send(routes, "", alone(request_id), body, on_result)
            return
        waiting = self._waiting.get(name)
        if waiting is None:
            waiting = self._waiting[name] = deque()
        waiting.append((body, on_result, request_id))
        # The first to wait, with room: the events until the loop comes round go with it. Others find the
        # dispatch due, or every request out (an answer's _next takes them).
        if len(waiting) == 1 and self._in_flight.get(name, 0) < _slots(routes):
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._dispatch, name)

    def _dispatch(self, name: str) -> None:
        """Send what waits: about one request per idle replica, each with an even share (it runs it meanwhile),
        then to the free requests left if more wait. More requests of fewer events each would cost more than the
        events: under load, one request per answer's worth of events is what keeps the gateway's CPU down."""
        routes = self.book.get(name)
        free = 1 if routes is None else _slots(routes) - self._in_flight.get(name, 0)
        shares = -(-free // PER_REPLICA)  # a replica with a request in flight has at most one free
        while free > 0 and (waiting := self._waiting.get(name)):
            self._next(name, -(-len(waiting) // max(shares, 1)))
            shares, free = shares - 1, free - 1

    def _answered(self, name: str, on_result: OnResult, result: internal.Result) -> None:
        self._in_flight[name] -= 1
        self._next(name)  # the replica gets its next request before the result is handed on
        on_result(result)

    def _batch_answered(self, name: str, sent: list[tuple[bytes, OnResult, bytes]], result: internal.Result) -> None:
        self._in_flight[name] -= 1
        self._next(name)  # the replica gets its next request before the results are handed on
        results, durations, began = answers(result, len(sent))
        routes = self.book.get(name)
        if routes is not None:
            bill(routes, result, durations)
        for (_, on_result, _), one in zip(sent[:began], results[:began], strict=True):
            on_result(one)
        self._alone(name, routes, sent[began:])  # never started: an invocation of its own each, as if just come

    def _alone(self, name: str, routes: FunctionRoutes | None, sent: list[tuple[bytes, OnResult, bytes]]) -> None:
        for body, on_result, request_id in sent:
            if routes is None:
                on_result(removed(name))
            else:
                internal.send(routes, "", alone(request_id), body, on_result)

    def _refused(self, name: str, sent: list[tuple[bytes, OnResult, bytes]], result: internal.Result) -> None:
        """A batch's answer. One the replica refused whole ran nothing: 404, a replica without /_fx/batch (its
        events, and the function's from now on, go one by one), or 400, an event that is not JSON (its events go
        one by one, so that only that one fails)."""
        if result.status not in (400, 404) or result.by_gateway:
            self._batch_answered(name, sent, result)
            return
        self._in_flight[name] -= 1
        resend = sent
        if result.status == 404:
            self._unbatched.add(name)  # until the gateway restarts
            resend = [*sent, *self._waiting.pop(name, ())]
        else:
            self._next(name)
        self._alone(name, self.book.get(name), resend)

    def _next(self, name: str, most: int = 0) -> None:
        """One request with what waits, up to `most` events (0: up to max_events)."""
        waiting = self._waiting.get(name)
        if not waiting:
            return
        routes = self.book.get(name)
        if routes is None:
            gone = removed(name)
            while waiting:
                waiting.popleft()[1](gone)
            return
        room = min(routes.max_request_bytes, self.book.settings.max_request_bytes) - 2  # the array's [ ]
        sent: list[tuple[bytes, OnResult, bytes]] = []
        most = min(most or self.max_events, self.max_events)
        while waiting and len(sent) < most:
            room -= len(waiting[0][0]) + 1
            if room < 0 and sent:
                break
            sent.append(waiting.popleft())
        self._in_flight[name] = self._in_flight.get(name, 0) + 1
        if len(sent) == 1:
            body, on_result, request_id = sent[0]
            internal.send(routes, "", alone(request_id), body, partial(self._answered, name, on_result))
            return
        head = BATCH_HEAD
        if any(request_id for _, _, request_id in sent):
            head += REQUEST_ID_LINE % b",".join(request_id for _, _, request_id in sent)
        body = b"[%s]" % b",".join(body for body, _, _ in sent)
        internal.send(routes, "", head, body, partial(self._refused, name, sent), len(sent))
