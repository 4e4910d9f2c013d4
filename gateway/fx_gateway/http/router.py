"""HTTP routing: which call answers a request, decided from its line and headers (and the Invoke API's ARNs).

`Router.open` looks at a request's line and headers once and returns the call that will answer it: an
Exchange for function calls, a SystemProxy for /system/*, an Answer for everything the gateway answers itself;
or None when it refused the request from its head (`ClientConnection.refuse`: a body over the limit, a callback
the operator did not allow).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

from fx.protocol import (
    BODY_REF,
    ERROR_DETAIL,
    INVOKED_QUALIFIER,
    PIN_VERSION,
    REPLICA_HTTP_PREFIX,
    REPLICA_INVOKE_PATH,
    REPLICA_TOKEN,
    REQUEST_ID,
    ROUTE_CONTEXT,
    RUNS_AS_LATEST,
)

from fx_gateway.api.feed import ApiFeed
from fx_gateway.api.front_door import FrontDoor, is_gateway_path
from fx_gateway.api.services import ApiServices
from fx_gateway.config import Settings
from fx_gateway.events.async_accept import AsyncAccept, Enqueue, stored_headers, too_large
from fx_gateway.events.callback_policy import CallbackPolicy
from fx_gateway.http import lambda_errors, responses
from fx_gateway.http.answers import Answer
from fx_gateway.http.pages import Pages
from fx_gateway.http.response_stream import STREAM_HEADER, STREAM_PREFIX, STREAM_SUFFIX, invoke_stream
from fx_gateway.http.server import ClientConnection
from fx_gateway.http.system_proxy import SystemProxy
from fx_gateway.proxy.body_refs import BlobReader, BodyRefExchange
from fx_gateway.proxy.dispatch import VersionDispatcher
from fx_gateway.proxy.exchange import Exchange
from fx_gateway.proxy.replica_loss import SAFE_METHODS
from fx_gateway.proxy.route_book import RouteBook
from fx_gateway.proxy.routes import EXECUTED_LATEST, LATEST_LINE, FunctionRoutes

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
        STREAM_HEADER,  # the gateway's request for the event-stream framing
        REPLICA_TOKEN.lower().encode(),  # the gateway's own credential: a caller's is never passed on
        ERROR_DETAIL.lower().encode(),  # for the async worker only, so callers see opaque 502s
        INVOKED_QUALIFIER.lower().encode(),  # how the caller named the function: the gateway's to say
        RUNS_AS_LATEST.lower().encode(),
        REQUEST_ID.lower().encode(),  # the request id is the platform's to choose, as on Lambda
        ROUTE_CONTEXT.lower().encode(),  # an API route's context: the front door's to say
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


def scan_repeated(client: ClientConnection, headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], bytes]:
    """scan(headers), remembered per caller connection: a keep-alive caller mostly sends the same headers again,
    and comparing them costs a fifth of scanning them. What it returns is only read, so it may be shared."""
    last = client.scanned
    if last is not None and last[0] == headers:
        return last[1], last[2]
    seen, kept = scan(headers)
    client.scanned = (headers, seen, kept)
    return seen, kept


class Router:
    def __init__(
        self,
        settings: Settings,
        book: RouteBook,
        enqueue: Enqueue,
        callbacks: CallbackPolicy,
        pages: Pages,
        blobs: BlobReader,
        apis: ApiFeed,
        api_services: ApiServices,
    ) -> None:
        self.settings = settings
        self.functions = book.functions
        self.unknown = book.stats.get("", "")  # requests for no function
        self.enqueue = enqueue  # stores an async call
        self.callbacks = callbacks
        self.pages = pages
        self.blobs = blobs  # bodies passed by reference
        self.front_door = FrontDoor(apis, api_services, self.exchange, self.unknown)  # every path not the gateway's

    def open(self, client: ClientConnection, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]]):
        path, _, query = url.partition(b"?")
        if path.startswith(FUNCTION_PREFIX):
            return self._http_trigger(client, method, path[len(FUNCTION_PREFIX) :], query, headers)
        if path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX) and method == b"POST":
            return self._invoke(client, path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)], query, headers)
        if path.startswith(STREAM_PREFIX) and path.endswith(STREAM_SUFFIX) and method == b"POST":
            return invoke_stream(self._invoke, client, path[len(STREAM_PREFIX) : -len(STREAM_SUFFIX)], query, headers)
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
        if self.front_door.feed.index and not is_gateway_path(path):
            seen, kept = scan(headers)
            return self.front_door.open(client, method, path, query, headers, seen, kept)
        return self.pages.open(client, path, metrics=not self.settings.metrics_port)

    def _http_trigger(self, client: ClientConnection, method: bytes, rest: bytes, query: bytes, headers):
        found = self._function_path(client, rest, query, headers)
        if isinstance(found, Answer):
            return found
        routes, qualifier, target, seen, kept = found
        unqualified = routes.unqualified
        if unqualified is not None and not qualifier:
            dispatcher, invoked = unqualified
        else:
            dispatcher = routes.pick(qualifier, seen)
            if dispatcher is None:
                return self._no_version(client, routes, qualifier)
            invoked = routes.invoked(dispatcher, qualifier)
        return self.exchange(client, routes, dispatcher, method, target, seen, kept + invoked, None)

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
        seen, kept = scan_repeated(client, headers)
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
        refusal = None
        if length is not None and int(length) > limit:
            refusal = too_large(routes.name, limit)
        elif REF in seen:  # an async call's body is stored with it: it cannot be a reference to a blob
            message = f"{BODY_REF} is for synchronous calls only; an async call carries its body"
            refusal = responses.error(400, "InvalidBodyRef", message, routes.name, close=True)
        elif (problem := self.callbacks.refusal(seen)) is not None:  # now: nothing stored that cannot be delivered
            refusal = responses.error(400, "InvalidCallback", problem, routes.name, close=True)
        if refusal is not None:
            return client.refuse(lambda_errors.translate(refusal) if lambda_style else refusal)
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
            return Answer(client, lambda_errors.translate(responses.function_not_found(name)), self.unknown)
        seen, kept = scan(headers)
        invocation_type = seen.get(b"x-amz-invocation-type", b"RequestResponse")
        dispatcher = routes.pick(qualifier, seen)
        if dispatcher is None:
            return self._no_version(client, routes, qualifier, lambda_api=True)
        if invocation_type == b"Event":
            return self._accept(client, routes, qualifier, b"POST", INVOKE_TARGET, seen, kept, lambda_style=True)
        if invocation_type not in (b"RequestResponse", b"DryRun"):
            message = (
                f"X-Amz-Invocation-Type {invocation_type.decode('latin-1')!r} is not one of"
                " RequestResponse, Event, DryRun"
            )
            return Answer(client, lambda_errors.translate(responses.error(400, "InvalidInvocationType", message, name)))
        invoked = routes.invoked(dispatcher, qualifier)
        executed = EXECUTED_LATEST if invoked.endswith(LATEST_LINE) else dispatcher.executed
        if invocation_type == b"DryRun":
            return Answer(client, b"HTTP/1.1 204 No Content\r\n%s\r\n" % executed)
        kept += invoked
        return self.exchange(client, routes, dispatcher, b"POST", INVOKE_TARGET, seen, kept, executed, lambda_api=True)

    def exchange(
        self,
        client: ClientConnection,
        routes: FunctionRoutes,
        dispatcher: VersionDispatcher,
        method: bytes,
        target: bytes,
        seen: dict[bytes, bytes],
        kept: bytes,
        inject: bytes | None,
        lambda_api: bool = False,
    ):
        limit = min(routes.max_request_bytes, self.settings.max_request_bytes)
        length = seen.get(b"content-length")
        if length is not None and int(length) > limit:  # at once: the body is never read
            dispatcher.refused(413)
            answer = responses.too_large(routes.name, limit, close=True)
            return client.refuse(lambda_errors.translate(answer) if lambda_api else answer)
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
        safe, timeout, is_head = method in SAFE_METHODS, routes.timeout, method == b"HEAD"
        ref = seen.get(REF)
        if ref is None:  # a direct call: packing the arguments for the other case costs the usual one
            return Exchange(client, dispatcher, head, limit, timeout, is_head, inject, safe, lambda_api)
        return BodyRefExchange(
            self.blobs, ref, client, dispatcher, head, limit, timeout, is_head, inject, safe, lambda_api
        )

    def _no_version(
        self, client: ClientConnection, routes: FunctionRoutes, qualifier: str, lambda_api: bool = False
    ) -> Answer:
        answer = responses.version_not_found(routes.name, qualifier) if qualifier else responses.no_traffic(routes.name)
        return Answer(client, lambda_errors.translate(answer) if lambda_api else answer)
