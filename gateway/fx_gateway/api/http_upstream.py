"""API routes whose integration is an HTTP upstream: the legacy service behind the same front door (strangler).

A call rides the function path's data plane: the same keep-alive connection (`proxy.upstream.UpstreamConnection`,
httptools parsing the answer, its bytes relayed as they arrive), pooled per upstream host and port with at most
--upstream-max-connections open (a request beyond waits for one). Unlike a function call the request body is
not gathered first: it streams to the upstream as it arrives (the caller's reading paused while the upstream's
socket is full), and the answer streams back as the upstream frames it (Content-Length, chunked, or until the
close), so a body costs the gateway one read's worth of memory whatever its size.

The upstream is the operator's: its host, port and path prefix come from the route, never from the request.
The caller's path and query are appended to the prefix; a path with a `.` or `..` segment (also percent-encoded,
or with backslashes) is refused, so no path can leave the prefix. Host is the upstream's (as API Gateway's HTTP
integrations send it), the caller's host goes in X-Forwarded-Host; X-Forwarded-For/Proto are set as for
functions; hop-by-hop headers, a caller's `Forwarded` (the gateway does not vouch for it) and the gateway's own
`X-Fx-*` headers are not passed on.

Timeouts (the route's `timeout`, API Gateway's 29 s by default): the upstream must accept the connection, read
what it is sent and start answering, each within the timeout, and never leave a gap longer than that while it
owes bytes (not while the caller does, or while the caller is slow to take the answer). One sweep a few times a
second checks the calls in flight, so no timer is armed per request. Errors are API Gateway's JSON
`{"message": ...}`: 504 "Endpoint request timed out", 502 "Bad Gateway" (refused, reset, or an answer that is
not HTTP, or a certificate that does not verify), 413, 400. An https:// upstream's certificate is verified
against its host name with the system's CAs, or --upstream-ca-file's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections import deque
from collections.abc import Iterator
from urllib.parse import unquote_to_bytes, urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fx_gateway.api.request import ApiRequest
from fx_gateway.config import Settings
from fx_gateway.http import responses
from fx_gateway.http.answers import Answer
from fx_gateway.http.server import ClientConnection
from fx_gateway.proxy.replica_loss import SAFE_METHODS, unread
from fx_gateway.proxy.upstream import UpstreamConnection
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

DEFAULT_TIMEOUT = 29.0  # API Gateway's integration timeout
SWEEP_S = 0.25
IDLE_S = 60.0  # a kept connection unused this long is closed: a firewall or NAT may drop it silently (nginx's 60 s)
NEVER = float("inf")
# Describe one hop only, or are set by the gateway for the upstream.
DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",  # the gateway answers 100 Continue itself
        b"host",
        b"forwarded",
        b"transfer-encoding",
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
)
# Of an answer: describe the upstream's connection, not the caller's.
ANSWER_DROPPED = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade"})
GATEWAY_HEADERS = b"x-fx-"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
NO_BODY_STATUS = (204, 304)


def message(status: int, text: str, close: bool = False) -> bytes:
    """An answer in API Gateway's shape: JSON {"message": text}."""
    return responses.response(status, json.dumps({"message": text}).encode(), close=close)


TIMED_OUT = message(504, "Endpoint request timed out")
BAD_GATEWAY = message(502, "Bad Gateway")


def escapes(path: bytes) -> bool:
    """Whether `path` has a `.` or `..` segment (percent-encoded or with backslashes too): it could leave the
    upstream's prefix on a server that resolves them."""
    if b"." not in path and b"%" not in path and b"\\" not in path:
        return False
    segments = unquote_to_bytes(path).replace(b"\\", b"/").split(b"/")
    return b"." in segments or b".." in segments


class Target:
    """An upstream URL, parsed once: where to connect (its origin: scheme, host, port), its Host header, its path
    prefix."""

    __slots__ = ("host", "host_header", "origin", "port", "prefix", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream {url!r}: only http[s]://host[:port][/prefix] is supported")
        self.tls = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.tls else 80)
        self.origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self.host_header = parts.netloc.rpartition("@")[2].encode("idna")
        self.prefix = parts.path.rstrip("/").encode()


class UpstreamHost:
    """The connections to one upstream origin: idle ones for reuse, at most `limit` open, callers beyond wait."""

    __slots__ = (
        "busy",
        "connecting",
        "host",
        "idle",
        "idle_since",
        "limit",
        "origin",
        "port",
        "refused_at",
        "tls",
        "waiting",
    )

    def __init__(self, target: Target, tls: ssl.SSLContext | None, limit: int) -> None:
        self.origin, self.host, self.port, self.limit = target.origin, target.host, target.port, limit
        self.tls = tls  # https: the context verifying the upstream's certificate against its host name
        self.idle: list[UpstreamConnection] = []  # kept tidy by the connections (closed ones leave it)
        self.idle_since: dict[UpstreamConnection, float] = {}
        self.busy = 0  # connections carrying a request
        self.connecting = 0
        self.waiting: deque[UpstreamCall] = deque()
        self.refused_at = 0.0

    def acquire(self, call: UpstreamCall) -> None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.transport.is_closing():  # type: ignore[union-attr]
                self.busy += 1
                call.connected(conn, reused=True)
                return
        if self.busy + self.connecting + len(idle) < self.limit:
            self.connecting += 1
            spawn(self._connect(call))
        else:
            self.waiting.append(call)

    async def _connect(self, call: UpstreamCall) -> None:
        loop = asyncio.get_running_loop()
        try:
            connecting = loop.create_connection(
                lambda: UpstreamConnection(self),
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.host if self.tls else None,
                ssl_handshake_timeout=call.timeout if self.tls else None,
            )
            _, conn = await asyncio.wait_for(connecting, call.timeout)
        except (OSError, TimeoutError) as exc:
            self.connecting -= 1
            now = time.monotonic()
            if now - self.refused_at > 1.0:  # one line per outage, not per request
                log.warning("upstream %s unreachable: %r", self.origin, exc)
            self.refused_at = now
            call.unreachable(isinstance(exc, TimeoutError))
            self._next()
            return
        self.connecting -= 1
        self.busy += 1
        if call.finished:  # timed out or gone meanwhile: the connection serves the next caller
            self.release(conn, True)
        else:
            call.connected(conn, reused=False)

    def release(self, conn: UpstreamConnection, reusable: bool) -> None:
        self.busy -= 1
        if reusable and not conn.transport.is_closing():  # type: ignore[union-attr]
            while self.waiting:
                call = self.waiting.popleft()
                if not call.finished:
                    self.busy += 1
                    call.connected(conn, reused=True)
                    return
            self.idle.append(conn)
            self.idle_since[conn] = time.monotonic()
        else:
            conn.transport.close()  # type: ignore[union-attr]
            self._next()

    def lost(self, conn: UpstreamConnection, sent: UpstreamCall, exc: Exception | None) -> None:  # type: ignore[override]
        self.busy -= 1
        sent.lost(exc)
        self._next()

    def said_close(self) -> None:
        """Nothing to do: an upstream closes a connection for reasons of its own (a request count, a restart);
        the others stay good, and one that is not is sent again or answered 502."""

    def close_idle(self, before: float = NEVER) -> None:
        """Close the kept connections (those unused since `before` only, if given)."""
        since = self.idle_since
        for conn in [c for c in self.idle if since.get(c, 0.0) < before]:
            conn.transport.close()  # type: ignore[union-attr]  # it leaves `idle` as it closes
        for conn in [c for c in since if c.transport.is_closing()]:  # type: ignore[union-attr]
            del since[conn]

    def forget(self, call: UpstreamCall) -> None:
        with contextlib.suppress(ValueError):
            self.waiting.remove(call)

    def _next(self) -> None:
        """A connection closed: one caller waiting for one may open a new one."""
        while self.waiting:
            call = self.waiting.popleft()
            if not call.finished:
                self.acquire(call)
                return


class UpstreamCall:
    """One request to an upstream: the call the caller's connection feeds, and what its upstream connection
    carries (`proxy.upstream.Sent`). Streaming: it starts at its head, so the answer may begin before the body
    is all in (the caller's connection then closes after it, the rest of the body unread)."""

    __slots__ = (
        "blocked",
        "body_done",
        "buffer",
        "chunked",
        "client",
        "conn",
        "deadline",
        "finished",
        "framed",
        "gone",
        "head",
        "is_head",
        "keep_alive",
        "limit",
        "pool",
        "prefix",
        "raw",
        "relayed",
        "retry",
        "reused",
        "safe",
        "size",
        "status",
        "timeout",
        "upstreams",
    )
    streaming = True

    def __init__(
        self,
        upstreams: Upstreams,
        pool: UpstreamHost,
        client: ClientConnection,
        head: bytes,
        chunked: bool,
        has_body: bool,
        limit: int,
        timeout: float,
        is_head: bool,
        safe: bool,
    ) -> None:
        self.upstreams = upstreams
        self.pool = pool
        self.client = client
        self.head = head
        self.chunked = chunked
        self.limit = limit  # body bytes forwarded at most (a Content-Length over it was refused before)
        self.timeout = timeout
        self.is_head = is_head
        self.safe = safe  # a GET, HEAD or OPTIONS
        self.retry = not has_body  # may be sent again if a reused connection broke before answering
        self.blocked = False  # the upstream's socket is full: it owes reading the body
        self.raw = b""  # what a connection sends first (UpstreamConnection.send)
        self.buffer: list[bytes] = []  # body received before the connection was there
        self.body_done = not has_body
        self.size = 0
        self.keep_alive = True
        self.conn: UpstreamConnection | None = None
        self.reused = False
        self.prefix = b""  # the answer's head, until it is whole
        self.relayed = False
        self.framed = True  # the answer has a length (or none): the caller's connection may carry another request
        self.status = 0  # the upstream's answer's status, once its head is in
        self.gone = False
        self.finished = False
        self.deadline = time.monotonic() + timeout  # the connection is due
        if has_body:
            client.pause_reading()  # until the connection is open, so the body is not buffered here
        pool.acquire(self)

    # --- from the pool ---

    def connected(self, conn: UpstreamConnection, reused: bool) -> None:
        self.conn, self.reused = conn, reused
        self.raw = b"".join([self.head, *self.buffer])
        self.buffer = []
        conn.send(self)
        self.raw = b""
        self._due()
        if self.client.paused and not self.blocked:
            self.client.resume_reading()

    def unreachable(self, timed_out: bool) -> None:
        self._fail(TIMED_OUT if timed_out else BAD_GATEWAY)

    # --- from the caller's connection ---

    def feed(self, chunk: bytes) -> None:
        if self.finished:
            return
        self.size += len(chunk)
        if self.size > self.limit:  # a chunked body that outgrew the limit: the upstream gets no more of it
            self._give_up()
            if self.relayed:
                self.client.abort()
            else:
                self.client.refuse(too_large(self.limit))
            return
        if self.chunked:
            chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        if self.conn is None:  # at most one read: reading stays paused until the connection is there
            self.buffer.append(chunk)
            if not self.client.paused:  # resumed by someone else (the front door, after an authorizer)
                self.client.pause_reading()
        else:
            self.conn.transport.write(chunk)  # type: ignore[union-attr]

    def begin(self) -> None:
        """The caller's request is complete."""
        if self.chunked:
            self.feed(b"")  # the last chunk: 0-length
        self.body_done = True
        if not self.finished:
            self._due()

    def client_gone(self) -> None:
        self.gone = True
        if not self.finished:
            self._give_up()

    def pause_upstream(self) -> None:
        """The caller takes the answer slower than the upstream sends it: the caller owes, not the upstream."""
        if self.conn is not None:
            self.conn.transport.pause_reading()  # type: ignore[union-attr]
            self.deadline = NEVER

    def resume_upstream(self) -> None:
        if self.conn is not None:
            self.conn.transport.resume_reading()  # type: ignore[union-attr]
            self._due()

    # --- from the upstream connection ---

    def pause_caller(self) -> None:
        """The upstream reads the body slower than the caller sends it."""
        self.blocked = True
        self.client.pause_reading()
        self.deadline = time.monotonic() + self.timeout

    def resume_caller(self) -> None:
        self.blocked = False
        self.client.resume_reading()
        self._due()

    def relay(self, data: bytes) -> None:
        if self.finished:
            return
        self._due()
        while not self.relayed:
            data = self.prefix + data
            end = data.find(b"\r\n\r\n")
            if end < 0 or not data.startswith(b"HTTP/1."):  # a head not yet whole, or not HTTP (the parser's
                self.prefix = data  # error then ends it: 502)
                return
            if data[9:10] == b"1" and data[9:12] != b"101":  # interim (103 Early Hints): the caller never asked
                self.prefix, data = b"", data[end + 4 :]
                continue
            data = self._answer_head(data[:end]) + data[end + 4 :]
            self.relayed = True
        if not self.gone:
            self.client.write(data)

    def answered(self, status: int, keep_alive: bool) -> None:
        if self.finished:
            return
        self._finish()
        if self.gone:
            return
        if not self.body_done:  # the rest of the body is never read: this is the connection's last answer
            self.client.end()
            return
        if self.client.paused:
            self.client.resume_reading()
        self.client.done(self.keep_alive and self.framed)

    def lost(self, exc: Exception | None) -> None:
        """The upstream's connection ended before the answer did."""
        if self.finished:
            return
        if self.relayed and not self.framed:  # an answer that ends with its connection: this is its end
            self.answered(self.status, False)
        elif self.reused and self.retry and not self.relayed and not self.prefix and (self.safe or unread(exc)):
            # Most likely the upstream closed that idle connection as the request went out: once more, fresh.
            self.conn, self.retry = None, False
            self.upstreams.retried += 1
            self.pool.acquire(self)
        else:
            self._fail(BAD_GATEWAY)

    # --- the sweep ---

    def timed_out(self) -> None:
        self._give_up()
        self._answer(TIMED_OUT)

    # --- inside ---

    def _answer_head(self, head: bytes) -> bytes:
        """The upstream's answer head (status and header lines, no blank line) for the caller: HTTP/1.1, without the
        upstream's hop-by-hop headers, and saying `Connection: close` when its body ends with the connection."""
        lines = head.split(b"\r\n")
        status_line = lines[0]
        self.status = int(status_line[9:12]) if status_line[9:12].isdigit() else 0
        kept = [b"HTTP/1.1" + status_line[8:]]
        length = False
        for line in lines[1:]:
            name = line[: line.find(b":")].strip().lower()
            if name in ANSWER_DROPPED:
                continue
            if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in line.lower()):
                length = True
            kept.append(line)
        self.framed = length or self.is_head or self.status in NO_BODY_STATUS or self.status < 200
        if not self.framed:
            kept.append(b"Connection: close")
        return b"\r\n".join(kept) + b"\r\n\r\n"

    def _due(self) -> None:
        """The upstream owes the next step (reading the body, or answering) within the timeout, unless the
        caller still owes body bytes the upstream has room for."""
        self.deadline = time.monotonic() + self.timeout if self.body_done or self.blocked else NEVER

    def _finish(self) -> None:
        """Nothing more to do with the upstream (its connection, if any, is released or abandoned)."""
        self.finished = True
        self.conn = None
        self.upstreams.in_flight.discard(self)

    def _give_up(self) -> None:
        """Stop before the answer is whole: its connection is in an unknown state and closed."""
        conn = self.conn
        self._finish()
        if conn is not None:
            conn.abandon()
        else:
            self.pool.forget(self)

    def _fail(self, answer: bytes) -> None:
        if not self.finished:
            self._finish()
            self._answer(answer)

    def _answer(self, answer: bytes) -> None:
        """The gateway's own answer, instead of the upstream's; the caller is cut off if part of that is out."""
        if self.gone:
            return
        if self.relayed:  # part of an answer is out: only closing tells the caller it is incomplete
            self.client.abort()
        elif not self.body_done:
            self.client.refuse(responses.with_close(answer))
        else:
            if self.client.paused:
                self.client.resume_reading()
            self.client.write(answer)
            self.client.done(self.keep_alive)


def too_large(limit: int) -> bytes:
    return message(413, f"HTTP content length exceeded {limit} bytes.", close=True)


class Upstreams(Collector):
    """The upstream integrations of every API on this gateway: their connection pools, the timeout sweep, and
    their metrics (read at scrape time, nothing counted on the hot path but `retried`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.targets: dict[str, Target | None] = {}  # by URL, parsed once (None: not one fx can call)
        self.hosts: dict[str, UpstreamHost] = {}  # by origin: scheme://host[:port]
        self._context: ssl.SSLContext | None = None
        self.in_flight: set[UpstreamCall] = set()
        self.retried = 0  # requests sent again after a reused connection broke (the upstream closed it idle)
        self._sweep: asyncio.Task | None = None

    def open(
        self,
        client: ClientConnection,
        upstream: dict,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        request: ApiRequest | None = None,
    ) -> UpstreamCall | Answer | None:
        """The call answering a request on a route with `upstream` ({"url", "timeout"}); `target` is the
        caller's request target (path and query). None when it was refused from its head (`client.refuse`).
        `request` (the head as authorizers saw it) is not needed: the headers are relayed as they came."""
        where = self._target(upstream["url"])
        if where is None:
            return Answer(client, BAD_GATEWAY)
        path, sep, query = target.partition(b"?")
        if not path.startswith(b"/") or escapes(path):
            return Answer(client, message(400, "the request path may not have '.' or '..' segments"))
        limit = self.settings.upstream_max_body_bytes
        chunked = has_body = False
        forwarded_for, proto, forwarded_host, host = b"", b"http", b"", b""
        kept = [b"%s %s%s%s%s HTTP/1.1\r\nHost: %s\r\n" % (method, where.prefix, path, sep, query, where.host_header)]
        for name, value in headers:
            lower = name.lower()
            if lower in DROPPED:
                if lower == b"content-length":
                    if int(value) > limit:  # at once: the body is never read
                        return client.refuse(too_large(limit))
                    has_body = value.strip() != b"0"
                    kept.append(b"Content-Length: %s\r\n" % value)
                elif lower == b"transfer-encoding":
                    chunked = has_body = b"chunked" in value.lower()
                elif lower == b"x-forwarded-for":
                    forwarded_for = value
                elif lower == b"x-forwarded-proto":
                    proto = value
                elif lower == b"x-forwarded-host":
                    forwarded_host = value
                elif lower == b"host":
                    host = value
                elif lower == b"expect" and value.lower() == b"100-continue" and client.active is None:
                    client.write(CONTINUE)
            elif not lower.startswith(GATEWAY_HEADERS):
                kept += (name, b": ", value, b"\r\n")
        if chunked:
            kept.append(b"Transfer-Encoding: chunked\r\n")
        forwarded_for = forwarded_for + b", " + client.peer if forwarded_for else client.peer
        kept.append(
            b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Host: %s\r\n\r\n"
            % (forwarded_for, proto, forwarded_host or host)
        )
        pool = self.hosts.get(where.origin)
        if pool is None:
            tls = self._tls() if where.tls else None
            pool = self.hosts[where.origin] = UpstreamHost(where, tls, self.settings.upstream_max_connections)
        timeout = float(upstream.get("timeout") or DEFAULT_TIMEOUT)
        head = b"".join(kept)
        safe, is_head = method in SAFE_METHODS, method == b"HEAD"
        call = UpstreamCall(self, pool, client, head, chunked, has_body, limit, timeout, is_head, safe)
        self.in_flight.add(call)
        if self._sweep is None:
            self._sweep = spawn(self._run())
        return call

    def collect(self) -> Iterator:
        connections = GaugeMetricFamily(
            "fx_gateway_api_upstream_connections",
            "Connections to an API upstream: busy (carrying a request), idle (kept for the next), connecting",
            labels=["upstream", "state"],
        )
        waiting = GaugeMetricFamily(
            "fx_gateway_api_upstream_waiting",
            "Requests waiting for a connection to an API upstream (--upstream-max-connections are open)",
            labels=["upstream"],
        )
        for upstream, pool in self.hosts.items():
            for state, count in (("busy", pool.busy), ("idle", len(pool.idle)), ("connecting", pool.connecting)):
                connections.add_metric([upstream, state], count)
            waiting.add_metric([upstream], len(pool.waiting))
        retried = CounterMetricFamily(
            "fx_gateway_api_upstream_retries",
            "Requests sent again on a new connection after a kept one turned out closed by its upstream",
        )
        retried.add_metric([], self.retried)
        yield from (connections, waiting, retried)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for pool in self.hosts.values():
            pool.close_idle()

    def _tls(self) -> ssl.SSLContext:
        """The context of every https upstream: the system's CAs, or --upstream-ca-file's; host names checked."""
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self.settings.upstream_ca_file or None)
        return self._context

    def _target(self, url: str) -> Target | None:
        if url not in self.targets:
            try:
                self.targets[url] = Target(url)
            except ValueError as exc:
                log.warning("%s", exc)
                self.targets[url] = None
        return self.targets[url]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for call in [c for c in self.in_flight if c.deadline < now]:
                call.timed_out()
            for pool in self.hosts.values():
                pool.close_idle(now - IDLE_S)
