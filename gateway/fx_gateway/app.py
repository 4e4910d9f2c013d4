"""The gateway's state and request routing: route tables in, calls out.

`Gateway.open` looks at a request's line and headers once and returns the call that will answer it: an
Exchange for function calls, a SystemProxy for /system/*, an Answer for everything the gateway answers itself;
or None when it refused the request from its head (`ClientConnection.refuse`: a body over the limit, a callback
the operator did not allow).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote

from fx.protocol import REPLICA_HTTP_PREFIX, REPLICA_INVOKE_PATH, RouteTable
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest

from fx_gateway import responses
from fx_gateway.async_accept import AsyncAccept, Enqueue, StoreUnavailable, stored_headers, too_large
from fx_gateway.callback_policy import CallbackPolicy
from fx_gateway.config import Settings
from fx_gateway.dispatch import Activator, VersionDispatcher
from fx_gateway.exchange import Exchange
from fx_gateway.routes import FunctionRoutes
from fx_gateway.server import ClientConnection
from fx_gateway.stats import AsyncStats, EventStats, Stats, VersionStats
from fx_gateway.system_proxy import SystemProxy

log = logging.getLogger("fx_gateway")

FUNCTION_PREFIX = b"/function/"
ASYNC_PREFIX = b"/async-function/"
INVOKE_PREFIX = b"/2015-03-31/functions/"
INVOKE_SUFFIX = b"/invocations"
HTTP_TARGET = REPLICA_HTTP_PREFIX.encode() + b"/"
INVOKE_TARGET = REPLICA_INVOKE_PATH.encode()
# Not forwarded to replicas: they describe this hop only, or are re-set by the gateway.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"content-length",
        b"expect",
        b"te",
        b"trailer",
        b"upgrade",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-fx-replica-token",  # the gateway's own credential: a caller's is never passed on
        b"x-fx-error-detail",  # fx.protocol.ERROR_DETAIL: for the async worker only, so callers see opaque 502s
    }
)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
BACKSTOP_SWEEP_S = 0.25
CONNECTION_SWEEP_EVERY = 4  # backstop sweeps: caller connections are checked about once a second
ANSWER_MAX_BODY = 64 * 1024  # a body the gateway's own answers ignore is read up to this, else refused


class Answer:
    """A response the gateway makes itself; `make` is called when the request's turn comes."""

    __slots__ = ("client", "keep_alive", "make", "size", "started", "stats", "status")
    streaming = False

    def __init__(
        self, client: ClientConnection, make: bytes | Callable[[], bytes], stats: VersionStats | None = None
    ) -> None:
        self.client = client
        self.make = make
        self.stats = stats  # counted in the request metrics when set
        self.keep_alive = True
        self.started = time.monotonic()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)  # a body the answer does not need: read and dropped, up to a bound
        if self.size > ANSWER_MAX_BODY:
            self.client.refuse(responses.with_close(self.make if isinstance(self.make, bytes) else self.make()))

    def begin(self) -> None:
        data = self.make if isinstance(self.make, bytes) else self.make()
        if self.stats is not None:
            self.stats.record(int(data[9:12]), time.monotonic() - self.started)
        self.client.write(data)
        self.client.done(self.keep_alive)

    def client_gone(self) -> None:
        pass


class MetricsSide:
    """The gateway as a connection to --metrics-listen sees it: /metrics and /healthz, nothing else. Its
    connections are counted, capped and swept with the others."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.connections = gateway.connections

    @property
    def draining(self) -> bool:
        return self.gateway.draining

    def open(self, client: ClientConnection, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]) -> Answer:
        return self.gateway.own(client, url.partition(b"?")[0], metrics=True)


async def _no_store(function: str, body: bytes, headers: dict[str, str]) -> None:
    raise StoreUnavailable("not connected to NATS yet")


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The request's Content-Length (httptools has checked it is a number), 0 if none."""
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value)
    return 0


def scan(headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], bytes]:
    """(every header by lower-case name, the end-to-end ones as a header block)."""
    seen: dict[bytes, bytes] = {}
    kept: list[bytes] = []
    for name, value in headers:
        lower = name.lower()
        seen[lower] = value
        if lower not in HOP_BY_HOP:
            kept += (name, b": ", value, b"\r\n")
    return seen, b"".join(kept)


class Gateway:
    def __init__(self, settings: Settings, activator: Activator) -> None:
        self.settings = settings
        self.activator = activator
        self.functions: dict[str, FunctionRoutes] = {}
        self.dispatchers: weakref.WeakSet[VersionDispatcher] = weakref.WeakSet()  # incl. retired, for the backstop
        self.stats = Stats()
        self.unknown = self.stats.get("", "")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.stats)
        self.async_stats = AsyncStats()
        self.registry.register(self.async_stats)
        self.event_stats = EventStats()
        self.registry.register(self.event_stats)
        ProcessCollector(registry=self.registry)
        self.connections: set[ClientConnection] = set()
        self.draining = False
        self.healthy: Callable[[], bool] = lambda: False  # set by whoever feeds the route tables
        self.enqueue: Enqueue = _no_store  # stores an async call; set by the NATS link
        self.callbacks = CallbackPolicy.from_settings(settings)

    # --- route tables ---

    def apply(self, table: RouteTable) -> None:
        ahead = (table.revision - time.time_ns()) / 1e9
        if ahead > self.settings.max_revision_skew:
            # The controller numbers revisions by its clock's nanoseconds: one this far ahead was not made by
            # it, and once adopted it would outrank every real update (a hijack surviving redeploys).
            log.warning(
                "function %s: refused route table revision %d, %.0f s ahead of this gateway's clock"
                " (--max-revision-skew %g s); it was not written by the controller",
                table.function,
                table.revision,
                ahead,
                self.settings.max_revision_skew,
            )
            return
        routes = self.functions.get(table.function)
        if routes is None:
            self.functions[table.function] = FunctionRoutes(table, self._dispatcher)
            log.info("function %s: route table revision %d", table.function, table.revision)
        elif table.revision > routes.table.revision:
            routes.update(table)
        else:
            log.info(
                "function %s: ignored stale route table %d <= %d", table.function, table.revision, routes.table.revision
            )

    def remove(self, name: str) -> None:
        routes = self.functions.pop(name, None)
        if routes is not None:
            routes.close()
            log.info("function %s: removed", name)

    def _dispatcher(self, function: str, version: str) -> VersionDispatcher:
        settings = self.settings
        dispatcher = VersionDispatcher(
            function,
            version,
            self.stats.get(function, version),
            self.activator,
            settings.hold_timeout,
            settings.hold_queue,
        )
        self.dispatchers.add(dispatcher)
        return dispatcher

    # --- requests ---

    def open(self, client: ClientConnection, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]):
        path, _, query = url.partition(b"?")
        if path.startswith(FUNCTION_PREFIX):
            return self._http_trigger(client, method, path[len(FUNCTION_PREFIX) :], query, headers)
        if path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX) and method == b"POST":
            return self._invoke(client, path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)], query, headers)
        if path.startswith(ASYNC_PREFIX):
            return self._async_http(client, method, path[len(ASYNC_PREFIX) :], query, headers)
        if path.startswith(b"/system/") or path == b"/system":
            settings = self.settings
            limit = settings.system_max_bytes
            if _declared_length(headers) > limit:
                message = f"/system request bodies are limited to {limit} bytes"
                return client.refuse(responses.error(413, "RequestTooLarge", message, close=True))
            return SystemProxy(client, settings.controller_host, settings.controller_port, method, url, headers, limit)
        return self.own(client, path, metrics=not self.settings.metrics_port)

    def own(self, client: ClientConnection, path: bytes, metrics: bool) -> Answer:
        """/healthz, /metrics when `metrics` (not on --metrics-listen elsewhere), or the 404 for any other path."""
        if path == b"/metrics" and metrics:
            return Answer(client, self._metrics)
        if path == b"/healthz":
            return Answer(client, self._health)
        return Answer(client, responses.not_found(path.decode("latin-1")))

    def _http_trigger(self, client: ClientConnection, method: bytes, rest: bytes, query: bytes, headers):
        found = self._function_path(client, rest, query, headers)
        if isinstance(found, Answer):
            return found
        routes, qualifier, target, seen, kept = found
        dispatcher = routes.pick(qualifier, seen)
        if dispatcher is None:
            return self._no_version(client, routes, qualifier)
        return self._exchange(client, routes, dispatcher, method, target, seen, kept, None)

    def _async_http(self, client: ClientConnection, method: bytes, rest: bytes, query: bytes, headers):
        found = self._function_path(client, rest, query, headers)
        if isinstance(found, Answer):
            return found
        routes, qualifier, target, seen, kept = found
        if qualifier and routes.pick(qualifier) is None:
            return Answer(client, responses.version_not_found(routes.name, qualifier))
        return self._accept(client, routes, qualifier, method, target, seen, kept, lambda_style=False)

    def _function_path(self, client: ClientConnection, rest: bytes, query: bytes, headers):
        """`NAME[@QUALIFIER][/path]` → (routes, qualifier, replica target, headers seen, headers kept),
        or the 404 Answer for an unknown function. The X-Fx-Version header pins when the path does not."""
        name_part, _, sub = rest.partition(b"/")
        name, _, qualifier = name_part.decode("latin-1").partition("@")
        routes = self.functions.get(name)
        if routes is None:
            return Answer(client, responses.function_not_found(name), self.unknown)
        seen, kept = scan(headers)
        if not qualifier and b"x-fx-version" in seen:
            qualifier = seen[b"x-fx-version"].decode("latin-1")
        return routes, qualifier, HTTP_TARGET + sub + (b"?" + query if query else b""), seen, kept

    def _accept(
        self,
        client: ClientConnection,
        routes: FunctionRoutes,
        qualifier: str,
        method: bytes,
        target: bytes,
        seen: dict[bytes, bytes],
        kept: bytes,
        lambda_style: bool,
    ) -> AsyncAccept | None:
        limit = min(routes.max_request_bytes, self.settings.max_request_bytes, self.settings.async_max_bytes)
        length = seen.get(b"content-length")
        if length is not None and int(length) > limit:
            return client.refuse(too_large(routes.name, limit))
        problem = self.callbacks.refusal(seen)
        if problem is not None:  # refused now, so nothing is stored that could not be delivered
            return client.refuse(responses.error(400, "InvalidCallback", problem, routes.name, close=True))
        call_id, stored = stored_headers(routes.name, qualifier, method, target, seen, kept, client.peer)
        return AsyncAccept(client, self.enqueue, routes.name, call_id, stored, limit, lambda_style)

    def _invoke(self, client: ClientConnection, name_bytes: bytes, query: bytes, headers):
        name = unquote(name_bytes.decode("latin-1"))
        if name.startswith("arn:"):  # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
            parts = name.split(":")
            name, qualifier = parts[6] if len(parts) > 6 else "", parts[7] if len(parts) > 7 else ""
        else:
            name, _, qualifier = name.partition(":")
        if query:
            qualifier = dict(parse_qsl(query.decode("latin-1"))).get("Qualifier", qualifier)
        routes = self.functions.get(name)
        if routes is None:
            return Answer(client, responses.function_not_found(name), self.unknown)
        seen, kept = scan(headers)
        invocation_type = seen.get(b"x-amz-invocation-type", b"RequestResponse")
        dispatcher = routes.pick(qualifier, seen)
        if dispatcher is None:
            return self._no_version(client, routes, qualifier)
        if invocation_type == b"Event":
            return self._accept(client, routes, qualifier, b"POST", INVOKE_TARGET, seen, kept, lambda_style=True)
        if invocation_type not in (b"RequestResponse", b"DryRun"):
            message = (
                f"X-Amz-Invocation-Type {invocation_type.decode('latin-1')!r} is not one of"
                " RequestResponse, Event, DryRun"
            )
            return Answer(client, responses.error(400, "InvalidInvocationType", message, name))
        executed = b"X-Amz-Executed-Version: %s\r\n" % dispatcher.version.encode()
        if invocation_type == b"DryRun":
            return Answer(client, b"HTTP/1.1 204 No Content\r\n%s\r\n" % executed)
        return self._exchange(client, routes, dispatcher, b"POST", INVOKE_TARGET, seen, kept, executed)

    def _exchange(
        self,
        client: ClientConnection,
        routes: FunctionRoutes,
        dispatcher: VersionDispatcher,
        method: bytes,
        target: bytes,
        seen: dict[bytes, bytes],
        kept: bytes,
        inject: bytes | None,
    ):
        limit = min(routes.max_request_bytes, self.settings.max_request_bytes)
        length = seen.get(b"content-length")
        if length is not None and int(length) > limit:  # at once: the body is never read
            dispatcher.stats.record(413, 0.0)
            return client.refuse(responses.too_large(routes.name, limit, close=True))
        if b"expect" in seen and client.active is None and seen[b"expect"].lower() == b"100-continue":
            client.write(CONTINUE)
        forwarded_for = seen.get(b"x-forwarded-for")
        forwarded_for = forwarded_for + b", " + client.peer if forwarded_for else client.peer
        head = b"%s %s HTTP/1.1\r\n%sX-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\nX-Forwarded-Host: %s\r\n" % (
            method,
            target,
            kept,
            forwarded_for,
            seen.get(b"x-forwarded-proto", b"http"),
            seen.get(b"x-forwarded-host") or seen.get(b"host", b""),
        )
        return Exchange(client, dispatcher, head, limit, routes.timeout, method == b"HEAD", inject)

    def _no_version(self, client: ClientConnection, routes: FunctionRoutes, qualifier: str) -> Answer:
        if qualifier:
            return Answer(client, responses.version_not_found(routes.name, qualifier))
        return Answer(client, responses.no_traffic(routes.name))

    def _metrics(self) -> bytes:
        return responses.response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST.encode())

    def _health(self) -> bytes:
        if self.healthy():
            return responses.response(200, b'{"status": "ready"}')
        message = "not ready: waiting for NATS and the initial route tables"
        return responses.error(503, "NotReady", message)

    # --- lifecycle ---

    async def backstop(self) -> None:
        """Answer requests a replica holds past its function's timeout plus a grace (the replica should have),
        and end caller connections that are late with a head, a body or their next request."""
        sweeps = 0
        while True:
            await asyncio.sleep(BACKSTOP_SWEEP_S)
            now = time.monotonic()
            for dispatcher in list(self.dispatchers):
                if dispatcher.sent:
                    dispatcher.expire_sent(now)
            sweeps += 1
            if sweeps % CONNECTION_SWEEP_EVERY == 0:
                self.sweep(now)

    def sweep(self, now: float) -> None:
        for conn in list(self.connections):
            conn.overdue(now)

    async def drain(self, timeout: float) -> None:
        """Finish what is in flight (bounded), closing each caller connection once it is idle."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for conn in [c for c in self.connections if c.idle()]:
                conn.close()
            if not self.connections:
                return
            await asyncio.sleep(0.05)
        log.warning("%d connections still busy after %g s; closing them", len(self.connections), timeout)
        for conn in list(self.connections):
            conn.abort()
