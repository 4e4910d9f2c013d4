"""The replica's HTTP/1.1 server (uvloop + httptools): /_fx/invoke, /_fx/http/..., /_fx/health.

Handlers run synchronously inside the protocol callback. That is Lambda's one-invocation-at-a-time for
free: while a handler runs the loop reads nothing, so later requests wait in the socket buffers and are
served in the order the loop sees them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
import stat
from collections.abc import Callable

import httptools

from . import batch, faults, http11, logs
from .http_events import NAMES_REMEMBERED, MalformedResponse, Request, build_event, event_v2, response, route_kind
from .invoker import Invoker
from .settings import Settings
from .streams import ChunkedStream, EventStream, from_answer

_HTTP_PREFIX = b"/_fx/http"
_INTERNAL_ERROR = b'{"message":"Internal Server Error"}'
_NOT_FOUND = b'{"message":"Not Found"}'
_READY = b'{"status":"ready"}'
_FORBIDDEN = b'{"message":"Forbidden: only the gateway may call this replica"}'
_HEALTH = b"/_fx/health"
TOKEN_HEADER = b"x-fx-replica-token"
# Sent by the gateway's async worker (and stripped from callers): answer an HTTP-trigger failure with the Lambda
# error shape instead of API Gateway's opaque 502 body, so a dead letter can name the function's errorType.
ERROR_DETAIL_HEADER = b"x-fx-error-detail"
# Sent by the gateway for InvokeWithResponseStream (and stripped from callers): answer /_fx/invoke in the
# event-stream framing, a streaming handler's chunks as they come (streams.py).
RESPONSE_STREAM_HEADER = b"x-fx-response-stream"
# A body the gateway read from the blob store (fx.protocol.BODY_REF): bounded by the controller's
# --blob-max-bytes, so taken up to FX_MAX_BLOB_BYTES rather than FX_MAX_REQUEST_BYTES. Left for the handler to see.
BODY_REF_HEADER = b"x-fx-body-ref"
# Set by the gateway (fx.protocol.INVOKED_QUALIFIER, RUNS_AS_LATEST): how the caller named the function.
QUALIFIER_HEADER = b"x-fx-qualifier"
LATEST_HEADER = b"x-fx-latest"
# Set by the gateway on a request that came through an API route (fx.protocol.ROUTE_CONTEXT): JSON of the route's
# context (routeKey, resource, pathParameters, stage, payload, ...), from which the event is built.
ROUTE_HEADER = b"x-fx-route"
TRACE_HEADER = b"x-amzn-trace-id"  # the caller's, the invocation's _X_AMZN_TRACE_ID; the handler sees it too
REQUEST_ID_HEADER = b"x-fx-request-id"  # the platform's request id (an async call's), the invocation's; seen too
LOG_TYPE_HEADER = b"x-amz-log-type"  # Invoke's: "Tail" asks for X-Amz-Log-Result
CLIENT_CONTEXT_HEADER = b"x-amz-client-context"  # Invoke's: base64 JSON, the handler's context.client_context
# What Connection.on_header does with each header the platform gives a meaning, by lower-cased name: one dict
# lookup a header (a test of its length against each name took three times as long).
_TOKEN, _STREAM, _DETAIL, _QUALIFIER, _LATEST, _ROUTE, _BODY_REF, _TRACE, _REQUEST_ID, _LOG_TYPE, _CONTEXT = range(11)
_PLATFORM_HEADERS = {
    TOKEN_HEADER: _TOKEN,
    RESPONSE_STREAM_HEADER: _STREAM,
    ERROR_DETAIL_HEADER: _DETAIL,
    QUALIFIER_HEADER: _QUALIFIER,
    LATEST_HEADER: _LATEST,
    ROUTE_HEADER: _ROUTE,
    BODY_REF_HEADER: _BODY_REF,
    TRACE_HEADER: _TRACE,
    REQUEST_ID_HEADER: _REQUEST_ID,
    LOG_TYPE_HEADER: _LOG_TYPE,
    CLIENT_CONTEXT_HEADER: _CONTEXT,
}
_OTHER = -1  # a header of the handler's alone
_CODES: dict[bytes, int] = {}  # a header's name as sent -> its code above, or _OTHER: lower-cased once, not per request


def _header_code(name: bytes) -> int:
    code = _PLATFORM_HEADERS.get(name.lower(), _OTHER)
    if len(_CODES) < NAMES_REMEMBERED:
        _CODES[name] = code
    return code


# At most one write(2) of the log per this many seconds while invocations follow each other; the first after a
# quiet spell is written once the loop has served what it read, so a reader following the log waits no longer.
LOG_FLUSH_INTERVAL_S = 0.01
_ERROR_HEADERS = (*http11.JSON, ("X-Amz-Function-Error", "Unhandled"))


def _unlink_socket(path: str) -> None:
    """Remove the socket at `path` (one left by an earlier replica makes bind(2) fail); anything else is kept."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


class Server:
    new_request_id: Callable[[], str]

    def __init__(self, invoker: Invoker | None, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.invoker = invoker  # None when a subclass relays invocations elsewhere (runtime_api.RelayServer)
        self.settings = settings
        self.connections: set[Connection] = set()
        self.draining = False
        self.exit_code = 0
        self.listener: asyncio.Server | None = None
        self.loop = loop
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self._flush_pending = False
        self._flushed_at = -LOG_FLUSH_INTERVAL_S  # loop.time() of the last flush
        # One invocation at a time: one answer streams at a time (streams.py), begun anew per call.
        self.event_stream = EventStream(settings.function_version.encode())
        self.chunked = ChunkedStream(settings.http_event)
        if invoker is not None:
            invoker.loop = loop
            invoker.flush_logs = self.flush_logs_soon
            self.new_request_id = invoker.new_request_id
        self.token = settings.replica_token.encode() if settings.replica_token else None
        self._versions = (settings.function_version.encode(), b"$LATEST")  # by LATEST_HEADER
        head = b"Content-Type: application/json\r\nX-Amz-Executed-Version: %s\r\n"
        self._ok_heads = (head % self._versions[0], head % self._versions[1])

    def flush_logs_soon(self) -> None:
        """Flush the log once the loop has served what it read, or, within LOG_FLUSH_INTERVAL_S of the last
        flush, at its end: one write(2) for all the invocations of a busy spell instead of one per loop
        iteration. The lines wait in memory that long at most; whatever ends the process flushes them first
        (a drain, the handler's sys.exit, the watchdog's timeout and out-of-memory answers)."""
        if not self._flush_pending:
            self._flush_pending = True
            wait = self._flushed_at + LOG_FLUSH_INTERVAL_S - self.loop.time()
            if wait > 0:
                self.loop.call_later(wait, self._flush_logs)
            else:
                self.loop.call_soon(self._flush_logs)

    def _flush_logs(self) -> None:
        self._flush_pending = False
        self._flushed_at = self.loop.time()
        logs.flush()

    def protocol(self) -> Connection:
        return Connection(self, self.settings.max_request_bytes, self.token, self.settings.max_blob_bytes)

    async def listen(self) -> str:
        """Bind and return the endpoint actually listened on: "host:port" or "unix:/path"."""
        loop = asyncio.get_running_loop()
        s = self.settings
        if s.listen_path:
            _unlink_socket(s.listen_path)
            self.listener = await loop.create_unix_server(self.protocol, s.listen_path, backlog=1024)
            return f"unix:{s.listen_path}"
        self.listener = await loop.create_server(self.protocol, s.listen_host, s.listen_port, backlog=1024)
        host, port = self.listener.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    def shutdown(self, exit_code: int = 0) -> None:
        """Stop accepting, let a request being received finish and be answered, then close `closed`."""
        if self.draining:
            return
        self.draining = True
        self.exit_code = exit_code
        if self.listener is not None:
            self.listener.close()
            if self.settings.listen_path:
                _unlink_socket(self.settings.listen_path)  # nobody will answer on it again
        for conn in list(self.connections):
            if not conn.in_message and not conn.awaiting:
                conn.close()
        self.loop.call_later(self.settings.timeout_ms / 1000 + 5, self._done)  # a stalled client cannot hold us
        self.check_drained()

    def check_drained(self) -> None:
        if self.draining and not self.connections:
            self._done()

    def _done(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def report(self) -> bytes:
        """The X-Fx-Report line of the invocation being answered (Invoker.report)."""
        return self.invoker.report  # type: ignore[union-attr]

    def ok_json(self, payload: bytes, keep_alive: bool, extra: bytes = b"", latest: bool = False) -> bytes:
        """The hot path's response, without http11's general header handling; `extra`: more header lines."""
        tail = b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n"
        head = self._ok_heads[latest]
        report = self.report()
        return b"HTTP/1.1 200 OK\r\n%s%s%sContent-Length: %d%s%s" % (report, head, extra, len(payload), tail, payload)

    def dispatch(self, conn: Connection) -> None:
        url = conn.url
        method = conn.parser.get_method()
        keep = conn.parser.should_keep_alive() and not self.draining
        conn.head_only = method == b"HEAD"
        if not conn.authorized and url != _HEALTH:  # health stays open: the kubelet's probes carry no token
            data = http11.response(403, http11.JSON, _FORBIDDEN, keep)
        elif conn.too_large:
            limit = conn.limit  # FX_MAX_REQUEST_BYTES, or FX_MAX_BLOB_BYTES for a body passed by reference
            message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            data = invoke_error(413, "RequestTooLargeException", message, keep)
        elif url == b"/_fx/invoke" and method == b"POST":
            data = self.invoke(conn, keep)
            if conn.event_stream and data is not None:  # InvokeWithResponseStream: the stream's end, or all of it
                data = self.event_stream.finish(data)
        elif url == batch.PATH and method == b"POST" and self.invoker is not None:  # not relayed: 404, one by one
            data = batch.run(self, conn, keep)
        elif url.startswith(_HTTP_PREFIX) and url[9:10] in (b"", b"/", b"?"):
            data = self.http(conn, method, keep)
        elif url == _HEALTH and method == b"GET":
            data = http11.response(200, http11.JSON, _READY, keep)
        else:
            data = http11.response(404, http11.JSON, _NOT_FOUND, keep)
        conn.reply(data, keep)
        if self.invoker is not None and self.invoker.exit_code is not None:
            self.shutdown(self.invoker.exit_code)

    def invoke(self, conn: Connection, keep: bool) -> bytes | None:
        if conn.event_stream:  # its head names the version as Invoke's does: $LATEST when the caller named none
            self.event_stream.version = self._versions[conn.latest]
            self.invoker.stream = self.event_stream.begin(conn.fd, keep)
        else:
            self.invoker.stream = None
        try:
            event, context, request_id = self.invoke_input(conn)
        except (ValueError, binascii.Error) as e:
            return unparsable(e, keep)
        call = (event, request_id, context, conn.fd, False, conn.qualifier, conn.latest, conn.trace_id)
        if conn.log_type != b"Tail":
            _, payload, err = self.invoker.invoke(*call)
            return self.invoke_answer(payload, err, keep, request_id, conn.latest)
        with logs.capture() as log:
            _, payload, err = self.invoker.invoke(*call)
        return self.invoke_answer(payload, err, keep, request_id, conn.latest, log.tail())

    def invoke_input(self, conn: Connection) -> tuple[object, dict | None, str]:
        """(event, client context, request id) of a raw invoke; ValueError if the body or context is not JSON."""
        body = conn.body()
        client_context = conn.client_context
        event = json.loads(body) if body else {}
        context = json.loads(base64.b64decode(client_context)) if client_context else None
        return event, context, conn.request_id() or self.new_request_id()

    def invoke_answer(
        self, payload: bytes, err: dict | None, keep: bool, request_id: str, latest: bool, log_tail: str | None = None
    ) -> bytes:
        """Lambda's answer, with its x-amzn-RequestId; `latest`: the version ran as $LATEST; `log_tail`: the
        X-Amz-Log-Result value, when the caller asked for the tail of the invocation's log."""
        if err is not None:
            headers = (*_ERROR_HEADERS, ("X-Amzn-RequestId", request_id))
            if log_tail is not None:
                headers += (("X-Amz-Log-Result", log_tail),)
            body = json.dumps(err, ensure_ascii=False).encode()
            return http11.response(200, headers, body, keep, self.report())
        extra = b"X-Amzn-RequestId: %s\r\n" % request_id.encode("latin-1")
        if log_tail is not None:
            extra += b"X-Amz-Log-Result: %s\r\n" % log_tail.encode()
        return self.ok_json(payload, keep, extra, latest)

    def http(self, conn: Connection, method: bytes, keep: bool) -> bytes | None:
        self.invoker.stream = self.chunked.begin(conn.fd, keep, conn.head_only)
        event, request_id = self.http_input(conn, method)
        self.chunked.kind = conn.kind
        result, payload, err = self.invoker.invoke(
            event, request_id, None, conn.fd, True, conn.qualifier, conn.latest, conn.trace_id
        )
        return self.http_answer(result, payload, err, request_id, keep, conn)

    def http_input(self, conn: Connection, method: bytes) -> tuple[dict, str]:
        """The HTTP trigger's event for this request, and its request id. An API route's request is answered by
        the rules of its route's payload format (`conn.kind`), any other by the function's FX_HTTP_EVENT."""
        path, _, query = conn.url[9:].partition(b"?")
        request_id = conn.request_id() or self.new_request_id()
        s = self.settings
        req = Request(
            method.decode(),
            path.decode("latin-1"),
            query.decode("latin-1"),
            conn.headers,
            conn.body(),
            conn.peer,
            request_id,
        )
        route = json.loads(conn.route) if conn.route else None  # the gateway's JSON (the replica token vouches)
        conn.kind = kind = route_kind(route) if route is not None else s.http_event
        if kind == "v2":  # the usual kind, without build_event's call
            return event_v2(req, route), request_id
        return build_event(kind, req, s.function_name, s.region, s.alb_multi_value, route), request_id

    def http_answer(
        self, result: object, payload: bytes, err: dict | None, request_id: str, keep: bool, conn: Connection
    ) -> bytes:
        stream = self.chunked  # (begun by `http`; never by a relay's, whose answers come whole)
        if stream.started and err is not None:
            conn.close()  # a chunked body cut short: the one way left to tell the caller the stream failed
            return b""
        if stream.head and err is None:
            return stream.finish()
        if err is None:
            try:
                status, headers, body = response(conn.kind, result, payload)
                return http11.response(status, headers, body, keep, self.report())
            except (MalformedResponse, ValueError) as e:
                logs.write(logs.timestamped(request_id, f"[ERROR] Malformed Lambda proxy response: {e}"))
                logs.flush()
                err = faults.error(f"Malformed Lambda proxy response: {e}", "MalformedResponse", [], request_id)
        report = self.report()
        if conn.error_detail:
            return http11.response(502, _ERROR_HEADERS, json.dumps(err, ensure_ascii=False).encode(), keep, report)
        return http11.response(502, http11.JSON, _INTERNAL_ERROR, keep, report)


def invoke_error(status: int, error_type: str, message: str, keep: bool) -> bytes:
    """An Invoke refused before the handler saw it, as Lambda answers it: botocore reads X-Amzn-ErrorType."""
    body = json.dumps({"Type": "User", "message": message, "errorType": error_type, "errorMessage": message})
    return http11.response(status, (*http11.JSON, ("X-Amzn-ErrorType", error_type)), body.encode(), keep)


def unparsable(exc: Exception, keep: bool) -> bytes:
    """An Invoke whose body (or client context) is not JSON."""
    return invoke_error(400, "InvalidRequestContentException", f"Could not parse request body into json: {exc}", keep)


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; `server` is whatever answers its requests (dispatch, connections, check_drained)."""

    def __init__(self, server: Server, limit: int, token: bytes | None = None, ref_limit: int | None = None) -> None:
        self.server = server
        self.limit = limit
        self.plain_limit = limit
        self.ref_limit = ref_limit  # the limit of a body passed by reference; None: no such bodies
        self.token = token  # the replica token a request must carry; None: no check
        self.authorized = token is None
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.fd = -1
        self.peer = ""
        self.in_message = False
        self.awaiting = False  # a request was dispatched and its answer is pending
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.event_stream = False  # the request carried RESPONSE_STREAM_HEADER
        self.error_detail = False  # the request carried ERROR_DETAIL_HEADER
        self.head_only = False  # the request was HEAD: its answer goes without the body
        self.qualifier = ""  # QUALIFIER_HEADER
        self.latest = False  # LATEST_HEADER
        self.trace_id: str | None = None  # TRACE_HEADER
        self.route: bytes | None = None  # ROUTE_HEADER
        self.given_request_id: bytes | None = None  # REQUEST_ID_HEADER
        self.log_type: bytes | None = None  # LOG_TYPE_HEADER
        self.client_context: bytes | None = None  # CLIENT_CONTEXT_HEADER
        self.marked = False  # the request being read has headers of the platform's (whose fields to reset after)
        self.kind = ""  # the event format of the HTTP request being served (set by Server.http_input)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.fd = transport.get_extra_info("socket").fileno()
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.server.check_drained()

    def close(self) -> None:
        self.transport.close()

    def reply(self, data: bytes | None, keep: bool) -> None:
        """What a dispatch does with its answer: write it now, or (None) wait for answer() reading nothing."""
        if data is None:
            self.awaiting = True
            self.transport.pause_reading()
            return
        self._write(data)
        if not keep:
            self.close()

    def answer(self, data: bytes, keep: bool) -> None:
        """Write the answer to a request whose dispatch deferred it, then read the next one."""
        self.awaiting = False
        if self.transport.is_closing():
            return
        if self.event_stream:  # a relayed invocation (runtime_api.py) answers whole: one PayloadChunk
            data = from_answer(data, self.server.settings.function_version.encode())
        self._write(data)
        if keep and not self.server.draining:
            self.transport.resume_reading()
        else:
            self.close()

    def _write(self, data: bytes) -> None:
        if self.head_only:  # RFC 9110 §9.3.2: the head a GET would get (its Content-Length too), no body
            data = data[: data.find(b"\r\n\r\n") + 4]  # none (-1): the head went out already
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(http11.response(400, http11.JSON, b'{"message":"Bad Request"}', keep_alive=False))
            self.close()

    def header(self, lowered_name: bytes) -> bytes | None:
        for name, value in self.headers:
            if name.lower() == lowered_name:
                return value
        return None

    def request_id(self) -> str | None:
        """The platform's request id (X-Fx-Request-Id), so logs and answers can be correlated end to end."""
        value = self.given_request_id
        return value.decode("latin-1") if value else None

    def body(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.in_message = True
        self.url = b""
        self.headers = []
        self.chunks = []
        self.size = 0
        self.too_large = False
        self.authorized = self.token is None
        if self.marked:  # the last request had headers of the platform's: what they set goes
            self.marked = False
            self.limit = self.plain_limit
            self.event_stream = False
            self.error_detail = False
            self.qualifier = ""
            self.latest = False
            self.trace_id = None
            self.route = None
            self.given_request_id = None
            self.log_type = None
            self.client_context = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        what = _CODES.get(name)
        if what is None:
            what = _header_code(name)
        if what != _OTHER:
            if what == _TOKEN:  # not the handler's to see
                if self.token is not None:
                    self.authorized = hmac.compare_digest(value, self.token)  # constant time: no guessing byte by byte
                return
            self.marked = True
            if what == _STREAM:
                self.event_stream = True
                return
            if what == _DETAIL:  # the platform's, not the handler's
                self.error_detail = True
                return
            if what == _QUALIFIER:
                self.qualifier = value.decode("latin-1")
                return
            if what == _LATEST:
                self.latest = True
                return
            if what == _ROUTE:
                self.route = value
                return
            if what == _BODY_REF:
                if self.ref_limit is not None:
                    self.limit = self.ref_limit
            elif what == _TRACE:
                self.trace_id = value.decode("latin-1")
            elif what == _LOG_TYPE:  # these three: the first, as a lookup by name finds
                if self.log_type is None:
                    self.log_type = value
            elif what == _CONTEXT:
                if self.client_context is None:
                    self.client_context = value
            elif self.given_request_id is None:
                self.given_request_id = value
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        if self.too_large:
            return
        self.size += len(body)
        if self.size > self.limit:
            self.too_large = True  # keep reading to the end of the message, then answer 413
            self.chunks = []
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if not self.transport.is_closing():  # e.g. requests pipelined behind a "Connection: close" one
            self.server.dispatch(self)
