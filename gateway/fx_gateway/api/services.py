"""What the parts of an API route's request path share: settings, a raw invoke, API keys, limits, upstreams.

Authorizers get an ApiServices when they are made (one per API and authorizer); the front door reads the rest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fx.protocol import REPLICA_INVOKE_PATH

from fx_gateway.api.decisions import Allow, Deny
from fx_gateway.api.metrics import ApiMetrics
from fx_gateway.api.request import ApiRequest
from fx_gateway.config import Settings
from fx_gateway.proxy import internal
from fx_gateway.proxy.route_book import RouteBook

if TYPE_CHECKING:
    from fx_gateway.api.table import Route
    from fx_gateway.http.server import Call, ClientConnection

INVOKE_HEAD = b"POST %s HTTP/1.1\r\nContent-Type: application/json\r\n" % REPLICA_INVOKE_PATH.encode()


class Authorizer(Protocol):
    """JwtAuthorizer (authorizers/jwt.py), LambdaAuthorizer (authorizers/lambda_function.py): made per API from
    the wire JSON as `kind(name, spec, services)`.

    `decided` is the hot path: the decision without awaiting anything (a cached key or result), or None to go on
    with `authorize`; the front door then answers in the same loop turn."""

    def decided(self, request: ApiRequest, scopes: list[str]) -> Allow | Deny | None: ...
    async def authorize(self, request: ApiRequest, scopes: list[str]) -> Allow | Deny: ...
    def close(self) -> None: ...


class ApiKeys(Protocol):
    def check(self, request: ApiRequest) -> Deny | str: ...  # the key's id


class Limits(Protocol):
    def admit(self, request: ApiRequest, route: Route, key_id: str | None) -> Deny | None: ...


class Upstreams(Protocol):
    def open(
        self,
        client: ClientConnection,
        upstream: dict[str, Any],
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        request: ApiRequest,
    ) -> Call | None: ...


@dataclass(slots=True)
class ApiServices:
    settings: Settings
    book: RouteBook
    metrics: ApiMetrics
    api_keys: ApiKeys
    limits: Limits
    upstreams: Upstreams

    async def invoke(self, function_ref: str, payload: bytes, timeout: float) -> internal.Result:
        """A raw invoke of `function_ref` (NAME, NAME@alias, NAME@N) through the same dispatchers as callers', as
        the async worker's; a Result with `by_gateway` for an unknown function or one that did not answer in
        `timeout` s (the call itself runs on to its function's timeout)."""
        name, _, qualifier = function_ref.partition("@")
        routes = self.book.get(name)
        if routes is None:
            return internal.Result(404, b'{"message":"function not found"}', by_gateway=True)
        try:
            return await asyncio.wait_for(internal.call(routes, qualifier, INVOKE_HEAD, payload), timeout)
        except TimeoutError:
            return internal.Result(504, b'{"message":"function timed out"}', by_gateway=True)
