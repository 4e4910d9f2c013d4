"""The front door: a request on a path the gateway does not keep for itself, answered by the APIs' routes.

In order, as API Gateway HTTP APIs: the host and route (api.matching), a CORS preflight answered by the gateway
(the API has `cors` and no `OPTIONS` route took the request), then the API key, the authorizer, the limits, and
the integration: a function (an Exchange to a replica, like /function/, with the route's context in X-Fx-Route),
a mock (answered here), or an upstream (api.http_upstream). A refusal is API Gateway's JSON {"message": ...}.
A host no API serves gets the gateway's own 404, as before APIs.

Every step but the authorizer decides at once, in the request's own loop turn. An authorizer that has to wait
(a JWKS fetch, a Lambda authorizer's call) gets a task, and the request a `Pending` call: reading is paused, so
no more of the body comes until the decision, and what came is kept for the integration opened after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fx.protocol import GATEWAY_PATHS

from fx_gateway.api.decisions import Allow, Deny
from fx_gateway.api.feed import ApiFeed
from fx_gateway.api.matching import HostGroup, Match, ambiguous
from fx_gateway.api.metrics import denied
from fx_gateway.api.request import ApiRequest
from fx_gateway.api.services import ApiServices, Authorizer
from fx_gateway.api.table import COMPACT, Cors, Route
from fx_gateway.http import responses
from fx_gateway.http.answers import Answer
from fx_gateway.http.server import LINGER, Call, ClientConnection
from fx_gateway.proxy.stats import VersionStats
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

GATEWAY_SEGMENTS = frozenset(path.encode() for path in GATEWAY_PATHS)  # each one segment: "/function", ...
HTTP_TARGET = b"/_fx/http/"


def _message(status: int, message: str, headers: bytes = b"", close: bool = False) -> bytes:
    """API Gateway's own answer: {"message": ...}."""
    answer = responses.response(status, json.dumps({"message": message}).encode(), close=close)
    return _with_lines(answer, headers)


def _with_lines(answer: bytes, lines: bytes) -> bytes:
    """`answer` with header `lines` after its status line."""
    if not lines:
        return answer
    end = answer.index(b"\r\n") + 2
    return answer[:end] + lines + answer[end:]


NOT_FOUND = _message(404, "Not Found")
INTERNAL_ERROR = _message(500, "Internal Server Error")
TOO_LARGE = _message(413, "Request Entity Too Large", close=True)
BAD_PATH = _message(400, "Bad Request: the path has a '.', '..' or empty segment")


def is_gateway_path(path: bytes) -> bool:
    """Whether `path` is one the gateway keeps for itself (routes there are refused at deploy): by its first
    segment, one set look-up."""
    end = path.find(b"/", 1)
    return (path if end < 0 else path[:end]) in GATEWAY_SEGMENTS


# Router._exchange: an Exchange to a version of a function, as /function/ makes it.
ExchangeMaker = Callable[..., Call | None]


@dataclass(slots=True)
class Passage:
    """One request on its way through the front door's steps."""

    client: ClientConnection
    match: Match
    method: bytes
    path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]
    seen: dict[bytes, bytes]
    kept: bytes
    cors: bytes  # the CORS lines of every answer (b"" if the API has no cors or the origin is not allowed)
    request: ApiRequest | None = None
    key_id: str | None = None
    started: float = field(default_factory=time.monotonic)  # an authorizer's wait counts in the route's duration

    @property
    def route(self) -> Route:
        return self.match.route


class FrontDoor:
    def __init__(self, feed: ApiFeed, services: ApiServices, exchange: ExchangeMaker, unknown: VersionStats) -> None:
        self.feed = feed
        self.services = services
        self.exchange = exchange
        self.unknown = unknown  # the gateway's own 404s, as counted before APIs

    def open(
        self,
        client: ClientConnection,
        method: bytes,
        path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        seen: dict[bytes, bytes],
        kept: bytes,
    ) -> Call | None:
        try:
            return self._open(client, method, path, query, headers, seen, kept)
        except Exception:  # a step's bug (an authorizer's, a limit's) is a 500, not a connection dropped by asyncio
            log.exception("API route request %s %r failed", method.decode("latin-1"), path.decode("latin-1"))
            return _answer(client, method, INTERNAL_ERROR, self.services.metrics.unmatched)

    def _open(
        self,
        client: ClientConnection,
        method: bytes,
        path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        seen: dict[bytes, bytes],
        kept: bytes,
    ) -> Call | None:
        index = self.feed.index
        groups = index.groups(seen.get(b"host", b"").decode("latin-1"))
        if not groups:
            return Answer(client, responses.not_found(path.decode("latin-1")), self.unknown)
        text = path.decode("latin-1")
        if ambiguous(text):
            return _answer(client, method, BAD_PATH, self.services.metrics.unmatched)
        found = index.match(groups, method.decode("latin-1"), text)
        origin = seen.get(b"origin")
        preflight = method == b"OPTIONS" and b"access-control-request-method" in seen and origin is not None
        if preflight and (found is None or found.route.method != "OPTIONS"):
            cors = _preflight_cors(found, groups)
            if cors is not None:
                stats = found.route.stats if found is not None else self.services.metrics.unmatched
                return Answer(client, cors.preflight(origin), stats)
        if found is None:  # with the CORS lines of the host's API, so a browser shows the 404, not a CORS error
            cors = _preflight_cors(None, groups)
            lines = cors.answer_lines(origin) if cors is not None else b""
            return _answer(client, method, _with_lines(NOT_FOUND, lines), self.services.metrics.unmatched)
        route = found.route
        cors = route.api.cors.answer_lines(origin) if route.api.cors is not None else b""
        length = seen.get(b"content-length")
        limit = self.services.settings.max_request_bytes  # an upstream's body streams: api.http_upstream bounds it
        if length is not None and route.upstream is None and int(length) > limit:
            route.stats.record(413, 0.0)
            return client.refuse(_with_lines(TOO_LARGE, cors))
        passage = Passage(client, found, method, path, query, headers, seen, kept, cors)
        if route.api_key or route.auth or self._limited(route):  # an upstream relays the headers as they are
            passage.request = self._request(passage)
        if route.api_key:
            checked = self.services.api_keys.check(passage.request)
            if isinstance(checked, Deny):
                return self._deny(passage, checked)
            passage.key_id = checked
        if route.auth is None:
            return self._admit(passage, None)
        authorizer = self.feed.authorizer(route.api.name, route.auth)
        if authorizer is None:  # its kind is not in this build, or its spec was unusable (logged when loaded)
            return self._deny(passage, Deny(500, "Internal Server Error"))
        decision = authorizer.decided(passage.request, route.scopes)  # a cached decision, without a task
        if decision is not None:
            return self._decided(passage, decision)
        pending = Pending(passage)
        pending.task = spawn(self._authorize(pending, authorizer))
        return pending

    def _limited(self, route: Route, key_id: str | None = None) -> bool:
        """Whether the limits have a say: a throttle on the route or its API, or a key (its own rate and quota)."""
        return route.throttle is not None or route.api.throttle is not None or key_id is not None

    def _request(self, passage: Passage) -> ApiRequest:
        headers: dict[bytes, bytes] = {}
        for name, value in passage.headers:
            lower = name.lower()
            headers[lower] = headers[lower] + b"," + value if lower in headers else value
        route, api = passage.route, passage.route.api
        return ApiRequest(
            api=api.name,
            route_key=route.key,
            method=passage.method.decode("latin-1"),
            path=passage.path.decode("latin-1"),
            query=passage.query.decode("latin-1"),
            headers=headers,
            source_ip=passage.client.peer.decode("latin-1"),
            host=passage.seen.get(b"host", b"").decode("latin-1"),
            stage=api.stage,
            path_parameters=passage.match.path_parameters,
            stage_variables=api.stage_variables,
        )

    async def _authorize(self, pending: Pending, authorizer: Authorizer) -> None:
        passage = pending.passage
        route = passage.route
        try:
            decision = await asyncio.wait_for(
                authorizer.authorize(passage.request, route.scopes),  # type: ignore[arg-type]
                self.services.settings.authorizer_timeout,
            )
        except Exception as exc:  # the authorizer failed (or took too long): API Gateway's 500, as AWS answers it
            log.warning("API %s route %r: authorizer %s failed: %r", route.api.name, route.key, route.auth, exc)
            denied(route.api.name, route.key, "authorizer_error")
            decision = Deny(500, "Internal Server Error")
        if pending.gone:
            return
        try:
            call = self._decided(passage, decision)
        except Exception:  # as in `open`: the held request gets its 500, never waits on
            log.exception("API %s route %r failed after its authorizer decided", route.api.name, route.key)
            call = _reply(passage, INTERNAL_ERROR)
        pending.proceed(call)

    def _decided(self, passage: Passage, decision: Allow | Deny) -> Call | None:
        if isinstance(decision, Deny):
            return self._deny(passage, decision)
        return self._admit(passage, decision)

    def _deny(self, passage: Passage, deny: Deny) -> Answer:
        lines = b"".join(b"%s: %s\r\n" % header for header in deny.headers) + passage.cors
        return _reply(passage, _message(deny.status, deny.message, lines))

    def _admit(self, passage: Passage, allow: Allow | None) -> Call | None:
        """Limits, then the integration."""
        route = passage.route
        if self._limited(route, passage.key_id):
            refusal = self.services.limits.admit(passage.request, route, passage.key_id)  # type: ignore[arg-type]
            if refusal is not None:
                return self._deny(passage, refusal)
        if route.function is not None:
            return self._function(passage, allow)
        if route.mock is not None:
            return _reply(passage, _with_lines(route.mock, passage.cors))
        upstreams = self.services.upstreams
        target = passage.path + (b"?" + passage.query if passage.query else b"")
        client = Observed(passage.client, route.stats, passage.cors, passage.started)
        return upstreams.open(client, route.upstream, passage.method, target, passage.headers, passage.request)  # type: ignore[arg-type]

    def _function(self, passage: Passage, allow: Allow | None) -> Call | None:
        route = passage.route
        routes = self.services.book.get(route.function)  # type: ignore[arg-type]
        dispatcher = routes.pick(route.qualifier, passage.seen) if routes is not None else None
        if dispatcher is None:  # deleted, or no version takes traffic: the integration fails, as on AWS
            return self._deny(passage, Deny(500, "Internal Server Error"))
        params = passage.match.path_parameters
        line = route.context_head + b',"pathParameters":' + (COMPACT(params).encode() if params else b"null")
        if allow is not None:
            line += b',"authorizer":' + allow.encoded(route.payload)
        line += b"}\r\n"
        target = HTTP_TARGET + passage.path[1:] + (b"?" + passage.query if passage.query else b"")
        kept = passage.kept + line + routes.invoked(dispatcher, route.qualifier)  # type: ignore[union-attr]
        client = Observed(passage.client, route.stats, passage.cors, passage.started)
        return self.exchange(client, routes, dispatcher, passage.method, target, passage.seen, kept, None)


def _answer(client: ClientConnection, method: bytes, data: bytes, stats: Any) -> Answer:
    """An answer the gateway makes; to a HEAD request, its head alone (a body would be read as the next answer)."""
    return Answer(client, data if method != b"HEAD" else data[: data.index(b"\r\n\r\n") + 4], stats)


def _reply(passage: Passage, data: bytes) -> Answer:
    """The gateway's answer to a matched request, timed from its arrival."""
    answer = _answer(passage.client, passage.method, data, passage.route.stats)
    answer.started = passage.started
    return answer


def _preflight_cors(found: Match | None, groups: list[HostGroup]) -> Cors | None:
    """The CORS configuration answering a preflight (or a 404): the matched route's API's, else the first API
    with cors on the host (a path only other methods take, or none)."""
    if found is not None:
        return found.route.api.cors
    return next((api.cors for group in groups for api in group.apis if api.cors is not None), None)


class Observed:
    """The caller's connection as an integration sees it: counts the answer's status and duration under its
    route, and adds the API's CORS lines after the status line."""

    __slots__ = ("client", "cors", "started", "stats", "status")

    def __init__(self, client: ClientConnection, stats: Any, cors: bytes, started: float) -> None:
        self.client = client
        self.stats = stats
        self.cors = cors
        self.started = started
        self.status = 0

    def write(self, data: bytes) -> None:
        if not self.status and data.startswith(b"HTTP/1.1 ") and data[9:10] != b"1":  # not a 100 Continue
            self.status = int(data[9:12])
            if self.cors:
                data = _with_lines(data, self.cors)
        self.client.write(data)

    def done(self, keep_alive: bool) -> None:
        self.stats.record(self.status, time.monotonic() - self.started)
        self.client.done(keep_alive)

    def abort(self) -> None:
        self.stats.record(self.status, time.monotonic() - self.started)
        self.client.abort()

    def end(self) -> None:
        """The answer is out before the request's body was all read (an upstream that answered early)."""
        self.stats.record(self.status, time.monotonic() - self.started)
        self.client.end()

    def refuse(self, answer: bytes) -> None:
        self.stats.record(int(answer[9:12]), time.monotonic() - self.started)
        self.client.refuse(_with_lines(answer, self.cors))

    def __getattr__(self, name: str) -> Any:  # the rest (peer, active, pause_reading, ...) is the connection's
        return getattr(self.client, name)


class Pending:
    """The call of a request whose authorizer is deciding: holds the request (reading paused, the body read so far
    kept) and hands it to the call opened after the decision."""

    __slots__ = ("begun", "chunks", "gone", "inner", "keep_alive", "passage", "task")
    streaming = False

    def __init__(self, passage: Passage) -> None:
        self.passage = passage
        self.chunks: list[bytes] = []
        self.begun = False
        self.gone = False
        self.keep_alive = True
        self.inner: Call | None = None
        self.task: asyncio.Task | None = None
        passage.client.pause_reading()

    def feed(self, chunk: bytes) -> None:
        if self.inner is not None:
            self.inner.feed(chunk)
        else:  # at most what the read that brought the head held: reading is paused
            self.chunks.append(chunk)

    def begin(self) -> None:
        self.begun = True
        if self.inner is not None:
            self.inner.keep_alive = self.keep_alive
            self.inner.begin()

    def client_gone(self) -> None:
        self.gone = True
        if self.inner is not None:
            self.inner.client_gone()
        elif self.task is not None:
            self.task.cancel()

    def proceed(self, call: Call | None) -> None:
        """The decision is in: `call` answers the request (None: it refused the request from its head)."""
        client = self.passage.client
        self.inner = call
        if call is not None:
            for chunk in self.chunks:
                call.feed(chunk)
            self.chunks = []
        if call is None or client.phase == LINGER:  # refused, from its head or for the body held (over its limit)
            if self.begun:  # the refusal waits for this call's end
                client.done(False)
            return
        client.resume_reading()
        if self.begun:
            call.keep_alive = self.keep_alive
            call.begin()

    def pause_upstream(self) -> None:
        pause = getattr(self.inner, "pause_upstream", None)
        if pause is not None:
            pause()

    def resume_upstream(self) -> None:
        resume = getattr(self.inner, "resume_upstream", None)
        if resume is not None:
            resume()
