"""HTTP routing: which call answers a request, decided from its line and headers (and the Invoke API's ARNs).

`Router.open` looks at a request's line and headers once and returns the call that will answer it: an
Exchange for function calls, a SystemProxy for /system/*, an Answer for everything the gateway answers itself;
or None when it refused the request from its head (`ClientConnection.refuse`: a body over the limit, a callback
the operator did not allow).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

from fx.protocol import BODY_REF, ERROR_DETAIL, PIN_VERSION, REPLICA_HTTP_PREFIX, REPLICA_INVOKE_PATH, REPLICA_TOKEN

from fx_gateway.config import Settings
from fx_gateway.events.async_accept import AsyncAccept, Enqueue, stored_headers, too_large
from fx_gateway.events.callback_policy import CallbackPolicy
from fx_gateway.http import responses
from fx_gateway.http.answers import Answer
from fx_gateway.http.pages import Pages
from fx_gateway.http.server import ClientConnection
from fx_gateway.http.system_proxy import SystemProxy
from fx_gateway.proxy.body_refs import BlobReader, BodyRefExchange
from fx_gateway.proxy.dispatch import VersionDispatcher
from fx_gateway.proxy.exchange import Exchange
from fx_gateway.proxy.replica_loss import SAFE_METHODS
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.routes import FunctionRoutes

FUNCTION_PREFIX = b"/function/"
ASYNC_PREFIX = b"/async-function/"
INVOKE_PREFIX = b"/2015-03-31/functions/"
INVOKE_SUFFIX = b"/invocations"
# The Lambda API's control-plane actions (all but Invoke, matched above): the controller answers them.
LAMBDA_CONTROL_PREFIXES = (b"/2015-03-31/functions", b"/2016-08-19/account-settings")
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
        REPLICA_TOKEN.lower().encode(),  # the gateway's own credential: a caller's is never passed on
        ERROR_DETAIL.lower().encode(),  # for the async worker only, so callers see opaque 502s
    }
)
PIN = PIN_VERSION.lower().encode()
REF = BODY_REF.lower().encode()
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


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


class Router:
    def __init__(
        self,
        settings: Settings,
        book: RouteBook,
        enqueue: Enqueue,
        callbacks: CallbackPolicy,
        pages: Pages,
        blobs: BlobReader,
    ) -> None:
        self.settings = settings
        self.functions = book.functions
        self.unknown = book.stats.get("", "")  # requests for no function
        self.enqueue = enqueue  # stores an async call
        self.callbacks = callbacks
        self.pages = pages
        self.blobs = blobs  # bodies passed by reference

    def open(self, client: ClientConnection, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]):
        path, _, query = url.partition(b"?")
        if path.startswith(FUNCTION_PREFIX):
            return self._http_trigger(client, method, path[len(FUNCTION_PREFIX) :], query, headers)
        if path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX) and method == b"POST":
            return self._invoke(client, path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)], query, headers)
        if path.startswith(ASYNC_PREFIX):
            return self._async_http(client, method, path[len(ASYNC_PREFIX) :], query, headers)
        if path.startswith(b"/system/") or path == b"/system" or path.startswith(LAMBDA_CONTROL_PREFIXES):
            settings = self.settings
            limit = settings.system_max_bytes
            if _declared_length(headers) > limit:
                message = f"/system request bodies are limited to {limit} bytes"
                return client.refuse(responses.error(413, "RequestTooLarge", message, close=True))
            controller = (settings.controller_host, settings.controller_port, settings.system_connect_timeout)
            return SystemProxy(client, *controller, method, url, headers, limit)
        return self.pages.open(client, path, metrics=not self.settings.metrics_port)

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
        if not qualifier and PIN in seen:
            qualifier = seen[PIN].decode("latin-1")
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
        if REF in seen:  # an async call's body is stored with it: it cannot be a reference to a blob
            message = f"{BODY_REF} is for synchronous calls only; an async call carries its body"
            return client.refuse(responses.error(400, "InvalidBodyRef", message, routes.name, close=True))
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
            dispatcher.refused(413)
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
        args = (client, dispatcher, head, limit, routes.timeout, method == b"HEAD", inject, method in SAFE_METHODS)
        ref = seen.get(REF)
        return Exchange(*args) if ref is None else BodyRefExchange(self.blobs, ref, *args)

    def _no_version(self, client: ClientConnection, routes: FunctionRoutes, qualifier: str) -> Answer:
        if qualifier:
            return Answer(client, responses.version_not_found(routes.name, qualifier))
        return Answer(client, responses.no_traffic(routes.name))
