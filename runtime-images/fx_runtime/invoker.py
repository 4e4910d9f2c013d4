"""One invocation at a time: context, handler call, result marshalling, timeout, and its log lines."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import faults, http11, logs, marshal, tracing
from .context import LATEST, LambdaContext
from .faults import Fault
from .loader import Handler
from .settings import Settings
from .streams import Stream, chunk_bytes, chunks_of
from .watchdog import Watchdog

if TYPE_CHECKING:
    from .batch import Items as BatchItems

TIMEOUT_EXIT_CODE = 124  # the replica ends after a timeout; the platform replaces it
OUT_OF_MEMORY_EXIT_CODE = 137  # as if killed (128 + SIGKILL), which is what Lambda reports
# Results (and HTTP results' bodies) that never stream, so the usual invocation skips looking for an iterator.
_WHOLE = frozenset({dict, list, str, bytes, int, float, bool, type(None)})


class RequestIds:
    """Request ids unique per replica (random prefix) and cheap per request (a counter), in Lambda's UUID shape."""

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._count = 0

    def __call__(self) -> str:
        self._count += 1
        return f"{self._prefix}{self._count:012x}"


class Invoker:
    def __init__(self, handler: Handler, settings: Settings, init_ms: float, alarm_fd: int | None = None) -> None:
        self.handler = handler
        self.version = settings.function_version
        self.memory_mb = settings.memory_mb
        self.timeout_s = settings.timeout_ms / 1000
        self.max_response_bytes = settings.max_response_bytes
        self.max_stream_bytes = settings.max_stream_bytes
        # Where the invocation about to run streams its answer if it does (set by the server before each one);
        # None: the caller takes the answer whole, a stream's chunks joined.
        self.stream: Stream | None = None
        # The batch whose invocation this is (batch.Items); None: a request of its own. A timeout or out-of-memory
        # then answers with the batch's items so far and this one's error, not with a plain invoke's answer.
        self.batch: BatchItems | None = None
        self.init_ms: float | None = init_ms  # reported with the first invocation only, as Lambda does
        self.exit_code: int | None = None  # set when the handler asked the process to exit
        self.listen_fds: list[int] = []  # closed before a timeout or out-of-memory answer: no new caller gets in
        self.flush_logs: Callable[[], None] = logs.flush  # the server batches flushes per loop iteration
        self.new_request_id = RequestIds()
        self.report = b""  # the last invocation's X-Fx-Report line: the gateway's handler-duration and billing
        self._report_mb = settings.memory_mb.encode()
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, which invocations run in; hidden meanwhile
        self._loop_hidden = False  # the loop's callbacks that run invocations see no running loop (_hide_loop)
        self.new_trace_id = tracing.TraceIds()
        self.watchdog = Watchdog(self.timeout_s, self._expired, alarm_fd, self._out_of_memory)

    def invoke(
        self,
        event: Any,
        request_id: str,
        client_context: dict | None,
        fd: int,
        http: bool,
        qualifier: str = "",
        latest: bool = False,
        trace_id: str | None = None,
    ) -> tuple[Any, bytes, dict | None]:
        """Run the handler; returns (result, result as bytes, error shape or None). The bytes are b"" for an HTTP
        result answered from itself alone (_plain_http), the one case where nobody reads them.

        `fd` is the caller's socket: on timeout the watchdog answers there and ends the process. `qualifier`,
        `latest`: how the caller named the function (see LambdaContext); `trace_id`: the caller's X-Amzn-Trace-Id.
        """
        started = time.perf_counter()
        logs.current_request_id = request_id
        logs.start(request_id, LATEST if latest else self.version)
        tracing.set_trace_id(trace_id or self.new_trace_id())
        deadline = self.watchdog.arm((request_id, fd, http, started))
        context = LambdaContext(request_id, int(deadline * 1000), client_context, qualifier, latest)
        result: Any = None
        err: dict | None = None
        if not self._loop_hidden:
            self._hide_loop()
        try:
            result = self.handler(event, context)
            kind = type(result)
            # A dict streams only as an HTTP answer whose body does (streams.ChunkedStream).
            if (http and type(result.get("body")) not in _WHOLE) if kind is dict else kind not in _WHOLE:
                stream = self.stream
                chunks = chunks_of(result) if stream is None else stream.open(result)
                if chunks is not None:
                    result = self._drain(chunks, stream)
        except SystemExit as e:
            self.exit_code = e.code if isinstance(e.code, int) else 1
            msg = f"RequestId: {request_id} Error: Runtime exited with error: exit status {self.exit_code}"
            err = faults.error(msg, "Runtime.ExitError", [], request_id)
        except Fault as fault:
            err = faults.from_fault(fault, request_id)
        except Exception as e:
            err = faults.from_exception(e, request_id)
        finally:
            self.watchdog.disarm()
        payload = b""
        if err is None and not (http and _plain_http(result, self.max_response_bytes)):
            try:
                payload = marshal.result_bytes(result)
            except Fault as fault:
                err = faults.from_fault(fault, request_id)
            else:
                if len(payload) > self.max_response_bytes:
                    limit = self.max_response_bytes
                    msg = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
                    err = faults.error(msg, "Function.ResponseSizeTooLarge", [], request_id)
        if err is not None:
            logs.write(faults.log_text(err))
        duration_ms = (time.perf_counter() - started) * 1000
        logs.write(logs.end_lines(request_id, duration_ms, self.memory_mb, self.init_ms))
        self.flush_logs()
        self.init_ms = None
        self.report = b"X-Fx-Report: %.3f %s\r\n" % (duration_ms, self._report_mb)
        return result, payload, err

    def _hide_loop(self) -> None:
        """The handler runs inside the server's loop callback, but must see no running loop, as on Lambda:
        asyncio.run(), or an adapter's get_event_loop().run_until_complete() (Mangum), would fail otherwise.
        The loop is shown again once the loop has served what it read, not after each invocation: setting the
        running loop costs a getpid(2) each time (CPython's check against a fork), two per invocation else."""
        asyncio._set_running_loop(None)
        if self.loop is not None:
            self._loop_hidden = True
            self.loop.call_soon(self._show_loop)

    def _show_loop(self) -> None:
        self._loop_hidden = False
        asyncio._set_running_loop(self.loop)

    def _drain(self, chunks: Iterator[Any], stream: Stream | None) -> bytes:
        """Run a streaming handler to its end, within the limit of a stream (or of a whole answer, joined):
        each chunk to `stream` as it comes, or all joined when the caller takes the answer whole."""
        limit = self.max_response_bytes if stream is None else self.max_stream_bytes
        joined: list[bytes] = []
        size = 0
        try:
            for chunk in chunks:
                try:
                    data = chunk_bytes(chunk)
                except TypeError as e:
                    raise Fault("Runtime.MarshalError", f"Unable to marshal response: {e}") from None
                size += len(data)
                if size > limit:
                    msg = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
                    raise Fault("Function.ResponseSizeTooLarge", msg)
                if not data:  # an empty HTTP chunk would end the body
                    continue
                if stream is None:
                    joined.append(data)
                else:
                    stream.send(data)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:  # a generator stopped early runs its finally blocks now
                close()
        return b"".join(joined)

    def _expired(self, job: tuple[str, int, bool, float]) -> None:
        """On the watchdog thread: answer the caller with Lambda's timeout error, log it, end the process."""
        request_id, _, http, started = job
        message = f"Task timed out after {self.timeout_s:.2f} seconds"
        if self.batch is not None:
            answer = self.batch.cut_short(request_id, timeout_error(request_id, self.timeout_s), started)
        else:
            answer = timeout_answer(request_id, self.timeout_s, http)
        if self.stream is not None:  # after the chunks it sent, if any
            answer = self.stream.last_words(answer)
        self._end(job, answer, message, "timeout", TIMEOUT_EXIT_CODE)

    def _out_of_memory(self, job: tuple[str, int, bool, float] | None) -> None:
        """On the watchdog thread, told by the sandbox that the replica hit its memory limit: answer the
        invocation in flight with Lambda's Runtime.OutOfMemory, log it, end the process."""
        if job is None:
            logs.flush()
            os._exit(OUT_OF_MEMORY_EXIT_CODE)
        request_id, _, http, started = job
        message = f"RequestId: {request_id} Error: {OUT_OF_MEMORY_MESSAGE}\nRuntime.OutOfMemory"
        if self.batch is not None:
            answer = self.batch.cut_short(request_id, out_of_memory_error(request_id), started)
        else:
            answer = out_of_memory_answer(request_id, http)
        if self.stream is not None:
            answer = self.stream.last_words(answer)
        self._end(job, answer, message, "error\tError Type: Runtime.OutOfMemory", OUT_OF_MEMORY_EXIT_CODE)

    def _end(self, job: tuple[str, int, bool, float], answer: bytes, message: str, status: str, code: int) -> None:
        request_id, fd, _, started = job
        for listen_fd in self.listen_fds:  # a caller the gateway sends next must be refused, not cut off
            os.close(listen_fd)
        _write_all(fd, answer)
        duration_ms = (time.perf_counter() - started) * 1000
        lines = logs.timestamped(request_id, message)
        lines += logs.end_lines(request_id, duration_ms, self.memory_mb, self.init_ms, status=status)
        logs.flush()  # what the handler printed so far comes first
        _write_all(1, lines.encode())
        os._exit(code)


def _plain_http(result: Any, limit: int) -> bool:
    """The usual HTTP result, `{"statusCode": <100-599>, "body": <ASCII str>}`, which http_events.response answers
    from its body alone, and small enough that its JSON could not pass `limit`: at most 6 bytes a character (an
    escape), 40 more for the rest. Its JSON need not be made then; a larger or non-ASCII one is made and checked."""
    if type(result) is not dict or len(result) != 2:
        return False
    status, body = result.get("statusCode"), result.get("body")
    return (
        type(status) is int
        and 100 <= status <= 599
        and type(body) is str
        and body.isascii()
        and len(body) * 6 + 40 <= limit
    )


def timeout_error(request_id: str, timeout_s: float) -> dict:
    """Lambda's error shape for a timed-out invocation (Sandbox.Timedout)."""
    message = f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds"
    return {"errorMessage": message, "errorType": "Sandbox.Timedout"}


def timeout_answer(request_id: str, timeout_s: float, http: bool) -> bytes:
    """What the caller of a timed-out invocation gets: on the HTTP trigger API Gateway's 502 for a failed Lambda
    (its 504 is for its own integration timeout), on invoke Sandbox.Timedout."""
    if http:
        return http11.response(502, http11.JSON, b'{"message":"Internal Server Error"}', keep_alive=False)
    return _error_answer(timeout_error(request_id, timeout_s), request_id)


OUT_OF_MEMORY_MESSAGE = "Runtime exited with error: signal: killed"


def out_of_memory_error(request_id: str) -> dict:
    """Lambda's error shape for an invocation over its memory (Runtime.OutOfMemory)."""
    message = f"RequestId: {request_id} Error: {OUT_OF_MEMORY_MESSAGE}"
    return {"errorMessage": message, "errorType": "Runtime.OutOfMemory"}


def out_of_memory_answer(request_id: str, http: bool) -> bytes:
    """What the caller of an invocation over its memory gets: Lambda's 502 on HTTP, Runtime.OutOfMemory on invoke."""
    if http:
        return http11.response(502, http11.JSON, b'{"message":"Internal Server Error"}', keep_alive=False)
    return _error_answer(out_of_memory_error(request_id), request_id)


def _error_answer(error: dict, request_id: str) -> bytes:
    """Lambda's answer to an Invoke whose runtime failed: status 200, the error shape, X-Amz-Function-Error."""
    headers = (*http11.JSON, ("X-Amz-Function-Error", "Unhandled"), ("X-Amzn-RequestId", request_id))
    return http11.response(200, headers, json.dumps(error).encode(), keep_alive=False)


def _write_all(fd: int, data: bytes) -> None:
    """Blocking-enough write to a possibly non-blocking fd; gives up quietly if the peer is gone."""
    view = memoryview(data)
    deadline = time.monotonic() + 1.0
    while view and time.monotonic() < deadline:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            return
