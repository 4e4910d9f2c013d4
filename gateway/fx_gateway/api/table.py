"""The APIs as the gateway serves them, compiled from the wire JSON the controller writes to KV fx_apis.

The controller has validated every API (fx.api_models); the gateway has no pydantic, so it reads the JSON with
the stdlib and checks only what it relies on, raising ValueError (the feed logs it and keeps the API it had).
Everything a request needs that does not depend on the request is computed here, once per change: a route's
template split into segments, its function reference parsed, its mock answer's bytes, its API's CORS lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fx_gateway.api.metrics import ApiMetrics, RouteStats

DEFAULT_ROUTE = "$default"
ANY = "ANY"
PAYLOADS = ("2.0", "1.0")


@dataclass(slots=True)
class Cors:
    origins: frozenset[str]  # lower-case; "*" = any
    methods: str  # Access-Control-Allow-Methods' value ("*" when none listed)
    headers: str  # Access-Control-Allow-Headers' value ("" = none)
    expose: str  # Access-Control-Expose-Headers' value ("" = none)
    max_age: int | None
    credentials: bool

    def origin_line(self, origin: bytes | None) -> bytes:
        """The Access-Control-Allow-Origin line (and credentials, Vary) for a request from `origin`; b"" when the
        origin is not allowed or the request names none (no CORS headers, as API Gateway)."""
        if origin is None:
            return b""
        if "*" in self.origins and not self.credentials:
            allowed = b"*"
        elif "*" in self.origins or origin.decode("latin-1").lower() in self.origins:
            allowed = origin
        else:
            return b""
        line = b"Access-Control-Allow-Origin: %s\r\n" % allowed
        if allowed != b"*":
            line += b"Vary: Origin\r\n"
        if self.credentials:
            line += b"Access-Control-Allow-Credentials: true\r\n"
        return line

    def answer_lines(self, origin: bytes | None) -> bytes:
        """CORS lines added to every answer of the API (API Gateway HTTP APIs add them to the integration's)."""
        line = self.origin_line(origin)
        if line and self.expose:
            line += b"Access-Control-Expose-Headers: %s\r\n" % self.expose.encode("latin-1")
        return line

    def preflight(self, origin: bytes | None) -> bytes:
        """The gateway's answer to a preflight OPTIONS: 204 with the allowed methods and headers."""
        lines = self.origin_line(origin)
        if lines:
            lines += b"Access-Control-Allow-Methods: %s\r\n" % self.methods.encode("latin-1")
            if self.headers:
                lines += b"Access-Control-Allow-Headers: %s\r\n" % self.headers.encode("latin-1")
            if self.max_age is not None:
                lines += b"Access-Control-Max-Age: %d\r\n" % self.max_age
        return b"HTTP/1.1 204 No Content\r\n%sContent-Length: 0\r\n\r\n" % lines


@dataclass(slots=True)
class Route:
    api: Api
    key: str  # "GET /users/{id}", or "$default"
    method: str  # "GET", ..., "ANY"; "" for $default
    path: str  # the template, "/users/{id}"; "" for $default
    segments: tuple[str, ...]  # the template's segments, "{id}" and "{proxy+}" as written
    params: tuple[tuple[int, str], ...]  # (segment index, name) of each {name} in the template
    greedy: str | None  # the name of a last {name+} segment
    function: str | None  # the function's name, for a function route
    qualifier: str  # its alias or version ("" = the traffic split)
    mock: bytes | None  # a mock route's answer, without its CORS lines: status line and headers, then the body
    upstream: dict[str, Any] | None
    auth: str | None
    scopes: list[str]
    api_key: bool
    throttle: dict[str, Any] | None
    payload: str  # the event format of a function route: "2.0" or "1.0"
    stats: RouteStats
    context: dict[str, Any] = field(default_factory=dict)  # the route's part of X-Fx-Route

    @property
    def resource(self) -> str:
        """API Gateway's `resource` of a 1.0 event: the template ("/{proxy+}" for $default, as a proxy resource)."""
        return self.path or "/{proxy+}"


@dataclass(slots=True)
class Api:
    name: str
    hosts: list[str]  # lower-case; "*.example.com" = one more label; [] = any host
    stage: str
    stage_variables: dict[str, str]
    payload: str
    cors: Cors | None
    throttle: dict[str, Any] | None
    authorizers: dict[str, dict[str, Any]]  # name -> {"jwt": {...}} or {"lambda": {...}}
    routes: list[Route] = field(default_factory=list)


def parse(name: str, text: bytes | str, metrics: ApiMetrics) -> Api:
    """An API from the JSON stored under KV key `name`. Raises ValueError naming what is wrong."""
    try:
        wire = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(wire, dict):
        raise ValueError("not a JSON object")
    if wire.get("name", name) != name:
        raise ValueError(f"stored under {name!r} but named {wire['name']!r}")
    try:
        return _api(name, wire, metrics)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed ({type(exc).__name__}: {exc})") from None


def _api(name: str, wire: dict[str, Any], metrics: ApiMetrics) -> Api:
    payload = wire.get("payload") or "2.0"
    _check(payload in PAYLOADS, f"payload {payload!r} is not one of {PAYLOADS}")
    variables = wire.get("stage_variables") or {}
    _check(isinstance(variables, dict), "stage_variables is not an object")
    api = Api(
        name=name,
        hosts=[str(host).lower() for host in wire.get("hosts") or []],
        stage=str(wire.get("stage") or "$default"),
        stage_variables={str(k): str(v) for k, v in variables.items()},
        payload=payload,
        cors=_cors(wire.get("cors")),
        throttle=wire.get("throttle"),
        authorizers=dict(wire.get("authorizers") or {}),
    )
    routes = wire.get("routes") or {}
    _check(isinstance(routes, dict), "routes is not an object")
    api.routes = [_route(api, key, spec, metrics) for key, spec in routes.items()]
    return api


def _cors(spec: dict[str, Any] | None) -> Cors | None:
    if spec is None:
        return None
    methods = [str(m).upper() for m in spec.get("methods") or []]
    max_age = spec.get("max_age")
    return Cors(
        origins=frozenset(str(o).lower() for o in spec.get("origins") or []),
        methods=", ".join(methods) if methods and "*" not in methods else "*",
        headers=", ".join(str(h) for h in spec.get("headers") or []),
        expose=", ".join(str(h) for h in spec.get("expose_headers") or []),
        max_age=int(max_age) if max_age is not None else None,
        credentials=bool(spec.get("credentials")),
    )


def _route(api: Api, key: str, spec: dict[str, Any], metrics: ApiMetrics) -> Route:
    if key == DEFAULT_ROUTE:
        method, path = "", ""
    else:
        method, _, path = key.partition(" ")
        _check(method == method.upper() and path.startswith("/"), f"route key {key!r} is not 'METHOD /path'")
    segments = tuple(path[1:].split("/")) if path not in ("", "/") else ()
    params: list[tuple[int, str]] = []
    greedy = None
    for index, segment in enumerate(segments):
        if segment.startswith("{") and segment.endswith("}"):
            if segment.endswith("+}"):
                _check(index == len(segments) - 1, f"route {key!r}: a greedy variable must be the last segment")
                greedy = segment[1:-2]
            else:
                params.append((index, segment[1:-1]))
    integrations = [kind for kind in ("function", "mock", "upstream") if spec.get(kind) is not None]
    _check(len(integrations) == 1, f"route {key!r} has {integrations or 'no integration'}, not exactly one")
    function, _, qualifier = str(spec.get("function") or "").partition("@")
    auth = spec.get("auth")
    _check(auth is None or auth in api.authorizers, f"route {key!r}: no authorizer {auth!r} in API {api.name!r}")
    payload = spec.get("payload") or api.payload
    _check(payload in PAYLOADS, f"route {key!r}: payload {payload!r} is not one of {PAYLOADS}")
    route = Route(
        api=api,
        key=key,
        method=method,
        path=path,
        segments=segments,
        params=tuple(params),
        greedy=greedy,
        function=function or None,
        qualifier=qualifier,
        mock=_mock(spec["mock"]) if spec.get("mock") is not None else None,
        upstream=spec.get("upstream"),
        auth=auth,
        scopes=[str(s) for s in spec.get("scopes") or []],
        api_key=bool(spec.get("api_key")),
        throttle=spec.get("throttle"),
        payload=payload,
        stats=metrics.route(api.name, key),
    )
    route.context = {
        "routeKey": key,
        "resource": route.resource,
        "stage": api.stage,
        "stageVariables": api.stage_variables or None,
        "apiId": api.name,
        "payload": payload,
    }
    return route


def _mock(spec: dict[str, Any]) -> bytes:
    """A mock integration's answer: a dict or list body as JSON, a string as it is."""
    status = int(spec.get("status") or 200)
    _check(100 <= status <= 599, f"mock status {status} is not an HTTP status")
    headers = {str(k).lower(): str(v) for k, v in (spec.get("headers") or {}).items()}
    body = spec.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode()
        headers.setdefault("content-type", "text/plain; charset=utf-8")
    else:
        data = json.dumps(body, separators=(",", ":")).encode()
        headers.setdefault("content-type", "application/json")
    for name, value in headers.items():
        _check(not any(c in name + value for c in "\r\n"), f"mock header {name!r} has a line break")
    headers.pop("content-length", None)
    lines = b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    try:
        reason = HTTPStatus(status).phrase.encode()
    except ValueError:  # a status Python does not name: the reason phrase may be empty (RFC 9112)
        reason = b""
    return b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n\r\n%s" % (status, reason, lines, len(data), data)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
