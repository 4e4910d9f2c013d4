"""POST /_fx/batch: several invocations in one request, for the gateway's event paths (triggers, async calls).

One HTTP exchange per event costs the gateway and the replica more than the invocation of a small handler, so the
gateway sends the events of a function that are already waiting together. Each stays its own invocation, run one
after another as separate /_fx/invoke requests would be: its own request id, START/END/REPORT lines, timeout
and result or error (a handler error fails that event alone).

Request body: a JSON array of events; `X-Fx-Request-Id`, if sent, their request ids in order, comma-separated
(an async call's is its call id, as on a plain invoke; an empty one: the replica makes it). Answer: 200,
`X-Fx-Batch: <invocations answered> <memory MB>`, and per invocation in order `<request id> <function error or ->
<duration ms> <payload length>\\n<payload>` (the payload is what /_fx/invoke would answer: the result, or the
error shape; the duration is its REPORT line's, which the gateway bills as it bills an invoke's X-Fx-Report). A
handler that exits, times out or runs out of memory ends the batch after its own invocation (the last two with
Lambda's Sandbox.Timedout or Runtime.OutOfMemory error as its result, written by the watchdog): fewer invocations
are answered than were sent, the rest never started, and the gateway sends each of them again alone.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from . import http11

if TYPE_CHECKING:
    from .server import Connection, Server

PATH = b"/_fx/batch"  # a relaying server (runtime_api.RelayServer) answers it 404: the gateway sends one by one
_OK = b"-"
_UNHANDLED = b"Unhandled"


class Items:
    """A batch's answer as its invocations run: the watchdog ends the process in the middle of one that times out
    or runs out of memory, and answers then with the items so far and that one's error (`cut_short`)."""

    def __init__(self, memory_mb: str) -> None:
        self.parts: list[bytes] = []
        self.memory_mb = memory_mb

    def add(self, request_id: str, flag: bytes, ms: bytes, payload: bytes) -> None:
        self.parts += (b"%s %s %s %d\n" % (request_id.encode("latin-1"), flag, ms, len(payload)), payload)

    def answer(self, keep: bool) -> bytes:
        # No X-Fx-Report, which the gateway would count as one invocation: each item has its duration.
        answered = f"{len(self.parts) // 2} {self.memory_mb}"
        headers = (("Content-Type", "application/octet-stream"), ("X-Fx-Batch", answered))
        return http11.response(200, headers, b"".join(self.parts), keep)

    def cut_short(self, request_id: str, error: dict, started: float) -> bytes:
        """The answer when the invocation `request_id`, begun at perf_counter() `started`, ends the process."""
        ms = b"%.2f" % ((time.perf_counter() - started) * 1000)
        self.add(request_id, _UNHANDLED, ms, json.dumps(error).encode())
        return self.answer(keep=False)


def run(server: Server, conn: Connection, keep: bool) -> bytes:
    """Run the batch in `conn`'s body; the whole answer."""
    from .server import invoke_error, unparsable

    try:
        events = json.loads(conn.body())
    except ValueError as e:
        return unparsable(e, keep)
    if type(events) is not list:
        return unparsable(ValueError("a batch is a JSON array of events"), keep)
    given = conn.request_id()
    ids = given.split(",") if given else []
    if ids and len(ids) != len(events):
        message = f"X-Fx-Request-Id names {len(ids)} request ids for a batch of {len(events)} events"
        return invoke_error(400, "InvalidRequestContentException", message, keep)
    invoker = server.invoker
    assert invoker is not None  # (server.dispatch routes no batch to a relaying server)
    invoker.stream = None  # answers are taken whole
    items = invoker.batch = Items(invoker.memory_mb)
    try:
        for i, event in enumerate(events):
            request_id = ids[i] if ids and ids[i] else server.new_request_id()
            _, payload, err = invoker.invoke(event, request_id, None, conn.fd, False, conn.qualifier, conn.latest)
            flag = _OK
            if err is not None:
                payload, flag = json.dumps(err, ensure_ascii=False).encode(), _UNHANDLED
            report = invoker.report  # b"X-Fx-Report: <ms> <MB>\r\n": the gateway bills each invocation
            items.add(request_id, flag, report[13 : report.index(b" ", 13)], payload)
            if invoker.exit_code is not None:  # the handler ended the process: the events after it are not run
                break
    finally:
        invoker.batch = None
    return items.answer(keep)
