"""Typed models of API routes (`apis:` in fx.yaml, PUT /system/apis/NAME), shared by the CLI/SDK and the controller.

The stored form (KV fx_apis, what GET /system/apis answers) is `ApiSpec.model_dump(mode="json")`: every field
present with its default filled in, route keys normalized ("GET /users/{id}", "$default"), and of an authorizer
or a route only the kind it has ({"jwt": {...}}, {"function": "users", ...}). The gateway reads that JSON with
the stdlib alone (ARCHITECTURE.md, "API routes").
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from fx.models import ALIAS_RE, check_name, shown
from fx.protocol import gateway_path

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
DEFAULT_ROUTE = "$default"
DEFAULT_STAGE = "$default"
Payload = Literal["2.0", "1.0"]  # the event format: API Gateway HTTP API ("2.0") or REST API ("1.0")

# Hard bounds every API obeys; the controller's --max-apis / --max-routes-per-api set the others.
MAX_AUTHORIZERS = 10  # per API, as API Gateway
MAX_HOSTS = 16
MAX_PATH_LENGTH = 1024
MAX_STAGE_VARIABLES = 64
MAX_SCOPES = 32
MAX_CORS_ITEMS = 64
RATE_MAX = 1e6
BURST_MAX = 1_000_000
UPSTREAM_TIMEOUT_MAX = 900
DEFAULT_UPSTREAM_TIMEOUT = 29.0  # API Gateway's integration timeout

# A literal path segment: RFC 3986 pchar, without the braces that mark a parameter.
LITERAL_SEGMENT_RE = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+\Z")
PARAMETER_RE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}\Z")
# A host name, lower-case; "*." first stands for exactly one label.
HOST_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
STAGE_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
STAGE_VARIABLE_RE = re.compile(r"^[A-Za-z0-9_]{1,64}\Z")
AUTHORIZER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # an HTTP header name (RFC 9110 token)
FUNCTION_REF_RE = re.compile(r"^([^@]+)(?:@(.+))?\Z")
IDENTITY_SOURCE_RE = re.compile(
    r"^\$(request\.header\.[!#$%&'*+.^_`|~0-9A-Za-z-]+|request\.querystring\.[^\s]+"
    r"|context\.[A-Za-z.]+|stageVariables\.[A-Za-z0-9_]+)\Z"
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouteProblem(ValueError):
    """What is wrong with one route in the light of the others: it says which route and field, so fx.yaml errors
    point at the route's line and the admin API's at its field (pydantic keeps it in an error's ctx["error"])."""

    def __init__(self, route: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.route, self.field = route, field

    @property
    def loc(self) -> tuple[str, ...]:
        return ("routes", self.route, *([self.field] if self.field else []))


# --- route keys ------------------------------------------------------------------------


def check_path(path: str) -> str:
    """A path template: "/", or "/" segments each literal, "{name}", or "{name+}" (greedy, last only)."""
    example = "(e.g. '/users/{id}' or '/files/{path+}')"
    if not path.startswith("/"):
        raise ValueError(f"path {shown(path)} must start with '/' {example}")
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(f"path {shown(path)} is longer than {MAX_PATH_LENGTH} characters")
    if "?" in path or "#" in path:
        raise ValueError(f"path {shown(path)} holds a query or fragment: a route matches the path alone {example}")
    if path == "/":
        return path
    reserved = gateway_path(path)
    if reserved:
        raise ValueError(
            f"path {shown(path)} is under {reserved}, which the gateway serves itself; choose another path"
        )
    if path.endswith("/"):
        raise ValueError(f"path {shown(path)} ends with '/': only the root path '/' may {example}")
    segments = path[1:].split("/")
    if "" in segments:
        raise ValueError(f"path {shown(path)} holds an empty segment ('//') {example}")
    names: list[str] = []
    for index, segment in enumerate(segments):
        match = PARAMETER_RE.match(segment)
        if match:
            name, greedy = match.groups()
            if greedy and index != len(segments) - 1:
                raise ValueError(f"path {shown(path)}: the greedy parameter {segment} may only be the last segment")
            if name in names:
                raise ValueError(f"path {shown(path)} names the parameter {name!r} twice")
            names.append(name)
        elif "{" in segment or "}" in segment:
            raise ValueError(
                f"path {shown(path)}: segment {segment!r} is not a whole parameter: a parameter is a segment of"
                f" its own, '{{name}}' or '{{name+}}', name a letter or '_' then letters, digits or '_' {example}"
            )
        elif segment in (".", ".."):
            raise ValueError(f"path {shown(path)}: a segment '.' or '..' is no path of its own; the gateway refuses it")
        elif not LITERAL_SEGMENT_RE.match(segment):
            raise ValueError(f"path {shown(path)}: segment {segment!r} holds a character a URL path cannot {example}")
    return path


def check_route_key(key: str) -> str:
    """'METHOD /path' (method in any case, returned upper-case) or '$default'."""
    if key == DEFAULT_ROUTE:
        return key
    method, _, path = key.strip().partition(" ")
    method = method.upper()
    if method not in METHODS or not path:
        raise ValueError(
            f"route {shown(key)} is not 'METHOD /path' (METHOD one of {', '.join(METHODS)}) or '$default',"
            " e.g. 'GET /users/{id}'"
        )
    return f"{method} {check_path(path.strip())}"


def route_shape(key: str) -> tuple[str, str]:
    """What two routes conflict on: the method and the path with its parameters' names left out, so
    'GET /users/{id}' and 'GET /users/{uid}' are the same route."""
    if key == DEFAULT_ROUTE:
        return key, ""
    method, path = key.split(" ", 1)
    segments = ["{+}" if s.endswith("+}") else "{}" if s.startswith("{") else s for s in path.split("/")]
    return method, "/".join(segments)


def split_function_ref(ref: str) -> tuple[str, str | None]:
    """ "users" -> ("users", None); "users@live" -> ("users", "live"); "users@3" -> ("users", "3")."""
    match = FUNCTION_REF_RE.match(ref)
    name, qualifier = match.groups() if match else (ref, None)
    return name, qualifier


def check_function_ref(ref: str) -> str:
    name, qualifier = split_function_ref(ref)
    check_name(name)
    if qualifier is not None and not (qualifier.isdecimal() and int(qualifier) >= 1) and not ALIAS_RE.match(qualifier):
        raise ValueError(
            f"function {shown(ref)}: {qualifier!r} after '@' is neither a version number (1, 2, ...) nor an alias"
            " name; use NAME, NAME@ALIAS or NAME@VERSION (e.g. 'orders@live', 'orders@3')"
        )
    return ref


def check_identity_source(source: str) -> str:
    if not IDENTITY_SOURCE_RE.match(source):
        raise ValueError(
            f"identity source {shown(source)} is not one of $request.header.NAME, $request.querystring.NAME,"
            " $context.NAME or $stageVariables.NAME (e.g. '$request.header.Authorization')"
        )
    return source


def _http_url(url: str, what: str) -> Any:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} {shown(url)} is not an http(s) URL with a host (e.g. 'https://auth.example.com')")
    return parts


# --- parts of an API -----------------------------------------------------------------------


class ThrottleSpec(_Model):
    """A token bucket: `rate` requests a second on average, up to `burst` at once."""

    rate: Annotated[float, Field(gt=0, le=RATE_MAX, description="requests per second, all gateways together")]
    burst: Annotated[int, Field(ge=1, le=BURST_MAX, description="the bucket's size: requests admitted at once")]


class CorsSpec(_Model):
    """API Gateway HTTP API's CORS configuration: the gateway answers preflights and adds the headers."""

    origins: list[str] = Field(default_factory=list, max_length=MAX_CORS_ITEMS, description="'*' or scheme://host")
    methods: list[str] = Field(default_factory=list, max_length=MAX_CORS_ITEMS, description="'*' or HTTP methods")
    headers: list[str] = Field(default_factory=list, max_length=MAX_CORS_ITEMS, description="request headers allowed")
    expose_headers: list[str] = Field(default_factory=list, max_length=MAX_CORS_ITEMS)
    max_age: Annotated[int, Field(ge=0, le=86400, description="seconds a browser may cache a preflight")] = 0
    credentials: bool = False

    @field_validator("origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for origin in v:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
                raise ValueError(
                    f"CORS origin {shown(origin)} is not '*' or 'scheme://host[:port]' (e.g. 'https://app.example.com')"
                )
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        upper = [m.upper() for m in v]
        for method in upper:
            if method != "*" and (method == "ANY" or method not in METHODS):
                raise ValueError(f"CORS method {method!r} is not '*' or one of {', '.join(METHODS[:-1])}")
        return upper

    @field_validator("headers", "expose_headers")
    @classmethod
    def _headers(cls, v: list[str]) -> list[str]:
        for header in v:
            if header != "*" and not TOKEN_RE.match(header):
                raise ValueError(f"CORS header {shown(header)} is not '*' or a header name (e.g. 'authorization')")
        return [h.lower() for h in v]

    @model_validator(mode="after")
    def _credentials(self) -> CorsSpec:
        if self.credentials and "*" in self.origins:
            raise ValueError("CORS credentials: true needs named origins: browsers refuse credentials with origin '*'")
        return self


class JwtAuthorizerSpec(_Model):
    """API Gateway HTTP API's JWT authorizer: a bearer token signed by `issuer`, for one of `audience`."""

    issuer: str = Field(description="the token's iss; its JWKS is found by OIDC discovery unless jwks_uri is given")
    audience: list[str] = Field(min_length=1, max_length=MAX_SCOPES, description="accepted aud (or client_id) values")
    identity_source: str = "$request.header.Authorization"
    jwks_uri: str | None = None

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None:
            _http_url(v, "URL")
        return v

    @field_validator("identity_source")
    @classmethod
    def _source(cls, v: str) -> str:
        return check_identity_source(v)


class LambdaAuthorizerSpec(_Model):
    """API Gateway's Lambda (REQUEST) authorizer: a function decides, its answer cached per identity for `ttl`."""

    function: str = Field(description="NAME, NAME@ALIAS or NAME@VERSION")
    payload: Payload = "2.0"
    simple_responses: bool = Field(default=False, description="{isAuthorized, context} rather than an IAM policy")
    identity_source: list[str] = Field(
        default_factory=list, max_length=16, description="what the cache is keyed on; missing one: 401"
    )
    ttl: Annotated[int, Field(ge=0, le=3600, description="seconds an answer is cached; 0: never")] = 300

    @field_validator("function")
    @classmethod
    def _function(cls, v: str) -> str:
        return check_function_ref(v)

    @field_validator("identity_source")
    @classmethod
    def _sources(cls, v: list[str]) -> list[str]:
        return [check_identity_source(s) for s in v]

    @model_validator(mode="after")
    def _consistent(self) -> LambdaAuthorizerSpec:
        if self.simple_responses and self.payload != "2.0":
            raise ValueError("simple_responses needs payload '2.0': a '1.0' authorizer answers with an IAM policy")
        if self.ttl and not self.identity_source:
            raise ValueError(
                "a cached authorizer (ttl > 0) needs identity_source, what its answers are cached by"
                " (e.g. ['$request.header.Authorization']); or set ttl: 0"
            )
        return self


class AuthorizerSpec(_Model):
    """Exactly one of `jwt` and `lambda`."""

    jwt: JwtAuthorizerSpec | None = None
    lambda_: LambdaAuthorizerSpec | None = Field(default=None, alias="lambda")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    @model_validator(mode="after")
    def _one_kind(self) -> AuthorizerSpec:
        if (self.jwt is None) == (self.lambda_ is None):
            raise ValueError("an authorizer is exactly one of 'jwt: {issuer, audience}' and 'lambda: {function, ...}'")
        return self

    @property
    def kind(self) -> str:
        return "jwt" if self.jwt is not None else "lambda"

    @model_serializer(mode="wrap")
    def _only_its_kind(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class MockSpec(_Model):
    """A fixed answer: the body as is when a string, as JSON otherwise; none when null."""

    status: Annotated[int, Field(ge=100, le=599)] = 200
    headers: dict[str, str] = Field(default_factory=dict, max_length=64)
    body: JsonValue = None

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not TOKEN_RE.match(name):
                raise ValueError(f"mock header {shown(name)} is not a header name (e.g. 'x-served-by')")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"mock header {name!r} holds a line break or NUL character")
        return v


class UpstreamSpec(_Model):
    """An HTTP service the route is passed to (the strangler pattern): URL's path prefixed to the request's."""

    url: str = Field(description="http[s]://host[:port][/prefix]")
    timeout: Annotated[float, Field(gt=0, le=UPSTREAM_TIMEOUT_MAX, description="seconds")] = DEFAULT_UPSTREAM_TIMEOUT

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"upstream URL {shown(v)} is not 'http[s]://host[:port][/prefix]' (e.g. 'http://legacy.internal:8000')"
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"upstream URL {shown(v)} holds a query, fragment or user: give scheme, host, port, path")
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            raise ValueError(f"upstream URL {shown(v)} has an invalid port") from None
        return v


class RouteSpec(_Model):
    """A route: exactly one integration (`function`, `mock`, `upstream`) and the options any route has."""

    function: str | None = Field(default=None, description="NAME, NAME@ALIAS or NAME@VERSION")
    mock: MockSpec | None = None
    upstream: UpstreamSpec | None = None
    auth: str | None = Field(default=None, description="an authorizer of this API; none: no authorization")
    scopes: list[str] = Field(default_factory=list, max_length=MAX_SCOPES, description="JWT: at least one needed")
    api_key: bool = Field(default=False, description="a valid x-api-key of this API is needed")
    throttle: ThrottleSpec | None = None
    payload: Payload | None = Field(default=None, description="function routes: the event format; none: the API's")

    @field_validator("function")
    @classmethod
    def _function(cls, v: str | None) -> str | None:
        return None if v is None else check_function_ref(v)

    @field_validator("upstream", mode="before")
    @classmethod
    def _upstream_shorthand(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v  # `upstream: http://legacy:8000`, as the issue writes it

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        for scope in v:
            # RFC 6750's scope-token: printable ASCII but space, '"' and '\\' (it is quoted in WWW-Authenticate)
            if not scope or any(not ("!" <= c <= "~") or c in '"\\' for c in scope):
                raise ValueError(
                    f"scope {shown(scope)} is empty or holds a space, a quote, a backslash or a non-ASCII character"
                    " (RFC 6750 scope tokens; scopes are space-separated in a JWT)"
                )
        return v

    @model_validator(mode="after")
    def _one_integration(self) -> RouteSpec:
        if [self.function, self.mock, self.upstream].count(None) != 2:
            raise ValueError(
                "a route has exactly one of 'function: NAME', 'mock: {status, body}' and 'upstream: http://HOST:PORT'"
            )
        if self.payload is not None and self.function is None:
            raise ValueError("payload (the event format) goes with a function route only")
        if self.scopes and self.auth is None:
            raise ValueError("scopes need an authorizer: give auth: NAME (a jwt authorizer of this API)")
        return self

    @property
    def integration(self) -> str:
        if self.function is not None:
            return self.function
        if self.mock is not None:
            return f"mock {self.mock.status}"
        return self.upstream.url  # type: ignore[union-attr]

    @model_serializer(mode="wrap")
    def _only_its_integration(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        kinds = ("function", "mock", "upstream")
        return {k: v for k, v in handler(self).items() if k not in kinds or v is not None}


# --- the API ---------------------------------------------------------------------------------


def check_host(host: str) -> str:
    lower = host.lower()
    labels = lower.removeprefix("*.").split(".")
    if len(lower) > 253 or any(not HOST_LABEL_RE.match(label) for label in labels) or len(labels) < 1:
        raise ValueError(
            f"host {shown(host)} is not a host name or '*.' and a host name (e.g. 'shop.example.com',"
            " '*.example.com'); no scheme, port or path"
        )
    return lower


def hosts_overlap(a: list[str], b: list[str]) -> bool:
    """Whether some Host header could reach both: either is any host, or a name (or wildcard) is shared or covered."""
    if not a or not b:
        return True
    return any(_host_covers(x, y) or _host_covers(y, x) for x in a for y in b)


def _host_covers(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return rest == pattern[2:] and first != "*"
    return False


class ApiSpec(_Model):
    """An API: its hosts, stage, defaults, authorizers and routes."""

    name: str
    hosts: list[str] = Field(default_factory=list, max_length=MAX_HOSTS, description="[]: any host")
    stage: str = Field(default=DEFAULT_STAGE, description="requestContext.stage (not a path prefix)")
    stage_variables: dict[str, str] = Field(default_factory=dict, max_length=MAX_STAGE_VARIABLES)
    payload: Payload = Field(default="2.0", description="event format of function routes: '2.0' or '1.0'")
    cors: CorsSpec | None = None
    throttle: ThrottleSpec | None = Field(default=None, description="the whole API, all gateways together")
    authorizers: dict[str, AuthorizerSpec] = Field(default_factory=dict, max_length=MAX_AUTHORIZERS)
    routes: dict[str, RouteSpec] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_api_name(v)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        hosts = [check_host(h) for h in v]
        twice = sorted({h for h in hosts if hosts.count(h) > 1})
        if twice:
            raise ValueError(f"host {twice[0]!r} is listed twice")
        return hosts

    @field_validator("stage")
    @classmethod
    def _stage(cls, v: str) -> str:
        if v != DEFAULT_STAGE and not STAGE_RE.match(v):
            raise ValueError(f"stage {shown(v)} is not '$default' or 1-128 letters, digits, '-' and '_' (e.g. 'prod')")
        return v

    @field_validator("stage_variables")
    @classmethod
    def _stage_variables(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not STAGE_VARIABLE_RE.match(name):
                raise ValueError(f"stage variable {shown(name)}: use 1-64 letters, digits and '_'")
            if len(value) > 2048:
                raise ValueError(f"stage variable {name!r} is {len(value)} characters; at most 2048")
        return v

    @field_validator("authorizers")
    @classmethod
    def _authorizer_names(cls, v: dict[str, AuthorizerSpec]) -> dict[str, AuthorizerSpec]:
        for name in v:
            if not AUTHORIZER_NAME_RE.match(name):
                raise ValueError(f"authorizer name {shown(name)}: use 1-64 letters, digits, '-' and '_'")
        return v

    @field_validator("routes", mode="before")
    @classmethod
    def _route_keys(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v  # pydantic says what it should be
        routes: dict[str, Any] = {}
        for key, route in v.items():
            try:
                normal = check_route_key(str(key))
            except ValueError as e:
                raise RouteProblem(str(key), None, str(e)) from None
            if normal in routes:
                raise RouteProblem(str(key), None, f"route {normal!r} is listed twice")
            routes[normal] = route
        return routes

    @model_validator(mode="after")
    def _routes_agree(self) -> ApiSpec:
        shapes: dict[tuple[str, str], str] = {}
        for key, route in self.routes.items():
            same = shapes.setdefault(route_shape(key), key)
            if same != key:
                raise RouteProblem(
                    key,
                    None,
                    f"routes {same!r} and {key!r} are the same route (parameter names aside): a request could not"
                    " tell them apart; keep one",
                )
            if route.auth is not None:
                authorizer = self.authorizers.get(route.auth)
                if authorizer is None:
                    known = ", ".join(sorted(self.authorizers)) or "none"
                    raise RouteProblem(
                        key, "auth", f"{route.auth!r} is not an authorizer of this API (its authorizers: {known})"
                    )
                if route.scopes and authorizer.kind != "jwt":
                    raise RouteProblem(
                        key, "scopes", f"scopes go with a jwt authorizer; {route.auth!r} is a lambda authorizer"
                    )
        return self

    def functions(self) -> dict[str, list[str]]:
        """Function refs this API invokes -> what invokes them ('route GET /x', 'authorizer mine')."""
        uses: dict[str, list[str]] = {}
        for key, route in self.routes.items():
            if route.function is not None:
                uses.setdefault(route.function, []).append(f"route {key!r}")
        for name, authorizer in self.authorizers.items():
            if authorizer.lambda_ is not None:
                uses.setdefault(authorizer.lambda_.function, []).append(f"authorizer {name!r}")
        return uses


def _check_api_name(name: str) -> str:
    try:
        return check_name(name)
    except ValueError as e:
        raise ValueError(str(e).replace("function name", "API name")) from None
