"""HTTP trigger events (API Gateway HTTP API 2.0, REST API 1.0, ALB) and Lambda's rules for answering them."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import parse_qsl

ACCOUNT_ID = "000000000000"
_TEXT_SUFFIXES = ("json", "xml", "javascript", "yaml", "csv")
# requestContext.identity of a REST API event: AWS sends every key, null unless IAM or Cognito authenticated.
_REST_IDENTITY_KEYS = (
    "cognitoIdentityPoolId",
    "accountId",
    "cognitoIdentityId",
    "caller",
    "sourceIp",
    "principalOrgId",
    "accessKey",
    "cognitoAuthenticationType",
    "cognitoAuthenticationProvider",
    "userArn",
    "userAgent",
    "user",
)


_KEYS: dict[bytes, str] = {}  # a header's name as sent -> lower-cased str: decoded once, not in every request
# Header names remembered (here and by the server's token check): bounds the memory names a caller makes up can
# take; past it, a new name is lower-cased in each request that has it.
NAMES_REMEMBERED = 512


def header_key(name: bytes) -> str:
    """The lower-cased name of a header (HTTP header bytes are latin-1 by definition)."""
    key = _KEYS.get(name)
    if key is None:
        key = name.decode("latin-1").lower()
        if len(_KEYS) < NAMES_REMEMBERED:
            _KEYS[name] = key
    return key


class Request:
    """What the server hands over: the caller's request, with the /_fx/http prefix already taken off."""

    __slots__ = ("body", "headers", "method", "path", "peer", "query", "request_id")

    def __init__(
        self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes, peer: str, rid: str
    ) -> None:
        self.method = method
        self.path = path or "/"
        self.query = query
        self.headers = headers
        self.body = body
        self.peer = peer
        self.request_id = rid

    def header_lists(self) -> dict[str, list[str]]:
        """Lower-cased names."""
        out: dict[str, list[str]] = {}
        for name, value in self.headers:
            out.setdefault(header_key(name), []).append(value.decode("latin-1"))
        return out

    def encoded_body(self, content_type: str) -> tuple[str, bool]:
        """The body as Lambda passes it: text as is, anything else base64 (isBase64Encoded)."""
        if not self.body:
            return "", False
        media = content_type.split(";", 1)[0].strip().lower()
        if not media or media.startswith("text/") or media.endswith(_TEXT_SUFFIXES):
            try:
                return self.body.decode(), False
            except UnicodeDecodeError:
                pass
        return base64.b64encode(self.body).decode(), True


def _source_ip(headers: dict[str, list[str]], peer: str) -> str:
    forwarded = headers.get("x-forwarded-for")
    return forwarded[0].split(",", 1)[0].strip() if forwarded else peer


def _domain(headers: dict[str, list[str]]) -> str:
    return (headers.get("x-forwarded-host") or headers.get("host") or ["localhost"])[0]


_last_prefix = ("", "")  # (domain, its prefix): most requests to a replica name the same domain


def _prefix(domain: str) -> str:
    global _last_prefix
    last, prefix = _last_prefix
    if domain != last:
        prefix = domain.partition(".")[0].partition(":")[0]
        _last_prefix = (domain, prefix)
    return prefix


_second: tuple[int, str] = (-1, "")  # the last whole second formatted: strftime is most of a request time's cost


def _times() -> tuple[str, int]:
    """(requestTime, requestTimeEpoch): 01/May/2024:12:00:00 +0000 and milliseconds since the epoch."""
    global _second
    epoch_ms = int(time.time() * 1000)
    second, text = _second
    if epoch_ms // 1000 != second:
        second = epoch_ms // 1000
        text = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))
        _second = (second, text)
    return text, epoch_ms


def route_kind(route: dict[str, Any]) -> str:
    """The event format an API route asked for (fx.protocol.ROUTE_CONTEXT's "payload")."""
    return "v1" if route.get("payload") == "1.0" else "v2"


_NO_ROUTE: dict[str, Any] = {}  # read only, never changed
_NO_COOKIES: list[str] = []  # read only, never changed


def _v2_headers(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], list[str], dict[str, str] | None]:
    """Payload 2.0's headers (lower-cased names, repeated values joined by commas, no cookie), the cookies, and the
    first value of each name sent more than once (None when none was: the usual request)."""
    keys = _KEYS
    headers = {keys.get(name) or header_key(name): value.decode("latin-1") for name, value in raw}
    if len(headers) == len(raw) and "cookie" not in headers:  # the usual request: each name once, no cookie
        return headers, _NO_COOKIES, None
    headers = {}
    cookies: list[str] = []
    firsts: dict[str, str] | None = None
    for name, value in raw:
        key = keys.get(name) or header_key(name)
        text = value.decode("latin-1")
        if key == "cookie":
            cookies += [c.strip() for c in text.split(";") if c.strip()]
        elif key in headers:
            if firsts is None:
                firsts = {}
            firsts.setdefault(key, headers[key])
            headers[key] += "," + text
        else:
            headers[key] = text
    return headers, cookies, firsts


def event_v2(req: Request, route: dict[str, Any] | None = None) -> dict:
    """API Gateway HTTP API payload format 2.0; `route`: the API route's context (X-Fx-Route), else `$default`."""
    headers, cookies, firsts = _v2_headers(req.headers)
    domain_key = "x-forwarded-host"  # its first value (else Host's) names the domain
    domain = headers.get(domain_key)
    if domain is None:
        domain_key = "host"
        domain = headers.get(domain_key, "localhost")
    if firsts is not None:
        domain = firsts.get(domain_key, domain)
    forwarded = headers.get("x-forwarded-for")
    stamp, epoch_ms = _times()
    if route is None:
        route_key = stage = "$default"
        api_id = "fx"
    else:
        route_key = route.get("routeKey") or "$default"
        stage = route.get("stage") or "$default"
        api_id = route.get("apiId") or "fx"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.path,
        "rawQueryString": req.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if req.query:
        params: dict[str, list[str]] = {}
        for key, value in parse_qsl(req.query, keep_blank_values=True):
            params.setdefault(key, []).append(value)
        event["queryStringParameters"] = {k: ",".join(v) for k, v in params.items()}
    if route is not None:
        if route.get("pathParameters"):
            event["pathParameters"] = route["pathParameters"]
        if route.get("stageVariables"):
            event["stageVariables"] = route["stageVariables"]
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": _prefix(domain),
        "http": {
            "method": req.method,
            "path": req.path,
            "protocol": "HTTP/1.1",
            "sourceIp": forwarded.partition(",")[0].strip() if forwarded is not None else req.peer,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": req.request_id,
        "routeKey": route_key,
        "stage": stage,
        "time": stamp,
        "timeEpoch": epoch_ms,
    }
    if route is not None and route.get("authorizer"):
        context["authorizer"] = route["authorizer"]
    event["requestContext"] = context
    if req.body:
        body, is_b64 = req.encoded_body(headers.get("content-type", ""))
        if body:
            event["body"] = body
        event["isBase64Encoded"] = is_b64
    else:
        event["isBase64Encoded"] = False
    return event


def event_v1(req: Request, route: dict[str, Any] | None = None) -> dict:
    """API Gateway REST API (payload format 1.0): for an API route (`route`, its X-Fx-Route context) its resource,
    named path parameters, stage and `version`; else as a `{proxy+}` resource would see it."""
    multi: dict[str, list[str]] = {}
    for name, value in req.headers:
        multi.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    lists = req.header_lists()
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(req.query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    domain = _domain(lists)
    stamp, epoch_ms = _times()
    content_type = next((v[-1] for k, v in multi.items() if k.lower() == "content-type"), "")
    body, is_b64 = req.encoded_body(content_type)
    given = route or {}
    if route is None:
        resource = "/{proxy+}" if req.path != "/" else "/"
        path_parameters = {"proxy": req.path[1:]} if req.path != "/" else None
    else:
        resource, path_parameters = route.get("resource") or "/{proxy+}", route.get("pathParameters") or None
    identity = dict.fromkeys(_REST_IDENTITY_KEYS)
    identity["sourceIp"] = _source_ip(lists, req.peer)
    identity["userAgent"] = lists.get("user-agent", [""])[0]
    event: dict[str, Any] = {"version": "1.0"} if route is not None else {}
    event |= {
        "resource": resource,
        "path": req.path,
        "httpMethod": req.method,
        "headers": {k: v[-1] for k, v in multi.items()},
        "multiValueHeaders": multi,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_parameters,
        "stageVariables": given.get("stageVariables"),
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": given.get("apiId") or "fx",
            "domainName": domain,
            "domainPrefix": _prefix(domain),
            "httpMethod": req.method,
            "identity": identity,
            "resourceId": "fx",
            "extendedRequestId": req.request_id,
            "path": req.path,
            "protocol": "HTTP/1.1",
            "requestId": req.request_id,
            "requestTime": stamp,
            "requestTimeEpoch": epoch_ms,
            "resourcePath": resource,
            "stage": given.get("stage") or "$default",
        },
        "body": body or None,
        "isBase64Encoded": is_b64,
    }
    if given.get("authorizer"):
        event["requestContext"]["authorizer"] = given["authorizer"]
    return event


def event_alb(req: Request, function_name: str, region: str, multi_value: bool = False) -> dict:
    """Application Load Balancer target. Header names lower-cased; query keys and values stay URL-encoded, as ALB
    sends them. With the target group's multi-value headers on, only the multiValue* maps, holding every value;
    else only the single-value maps, holding the last one."""
    lists = req.header_lists()
    body, is_b64 = req.encoded_body(lists.get("content-type", [""])[-1])
    query: dict[str, list[str]] = {}
    for key, _, value in (p.partition("=") for p in req.query.split("&") if p):
        query.setdefault(key, []).append(value)
    group = f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT_ID}:targetgroup/{function_name}/0"
    event: dict[str, Any] = {
        "requestContext": {"elb": {"targetGroupArn": group}},
        "httpMethod": req.method,
        "path": req.path,
    }
    if multi_value:
        event["multiValueQueryStringParameters"] = query
        event["multiValueHeaders"] = lists
    else:
        event["queryStringParameters"] = {k: v[-1] for k, v in query.items()}
        event["headers"] = {k: v[-1] for k, v in lists.items()}
    event["body"] = body
    event["isBase64Encoded"] = is_b64
    return event


def build_event(
    kind: str,
    req: Request,
    function_name: str,
    region: str,
    alb_multi_value: bool = False,
    route: dict[str, Any] | None = None,
) -> dict:
    """The event of `kind`; `route`: the API route's context, whose payload decides the kind (route_kind)."""
    if kind == "v2":
        return event_v2(req, route)
    if kind == "v1":
        return event_v1(req, route)
    return event_alb(req, function_name, region, alb_multi_value)


class MalformedResponse(ValueError):
    pass


def response(kind: str, result: Any, payload: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) for the handler's result, by the rules of the event's trigger.

    HTTP API 2.0 also accepts results without statusCode (200 JSON, or a string body); REST and ALB need
    a statusCode. Raises MalformedResponse where API Gateway would answer 502.
    """
    if isinstance(result, dict) and "statusCode" in result:
        if len(result) == 2:  # the usual {"statusCode": 200, "body": "..."}: what _structured makes of it, directly
            status, body = result["statusCode"], result.get("body")
            if type(status) is int and 100 <= status <= 599 and type(body) is str:
                return status, [], body.encode()
        return _structured(kind, result)
    if kind != "v2":
        raise MalformedResponse("the response has no statusCode")
    if isinstance(result, str):
        return 200, [("Content-Type", "application/json")], result.encode()
    return 200, [("Content-Type", "application/json")], payload


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise MalformedResponse(f"header value {value!r} is not a string")


def _structured(kind: str, result: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    status = result["statusCode"]
    if type(status) is not int:
        try:
            status = int(status) if not isinstance(status, bool) else -1
        except (TypeError, ValueError):
            status = -1
    if not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode {result['statusCode']!r} is not an HTTP status")
    headers_in = result.get("headers") or _NO_ROUTE
    # Payload 2.0 has no multiValueHeaders but a cookies list; REST and ALB the other way round.
    multi_in = (result.get("multiValueHeaders") or _NO_ROUTE) if kind != "v2" else _NO_ROUTE
    cookies = (result.get("cookies") or _NO_COOKIES) if kind == "v2" else _NO_COOKIES
    if not isinstance(headers_in, dict) or not isinstance(multi_in, dict) or not isinstance(cookies, list):
        raise MalformedResponse("headers and multiValueHeaders must be objects, cookies a list")
    multi: list[tuple[str, str]] = []
    for name, values in multi_in.items():
        if not isinstance(values, list):
            raise MalformedResponse(f"multiValueHeaders[{name!r}] must be a list")
        multi += [(str(name), _header_value(v)) for v in values]
    headers = [(str(k), _header_value(v)) for k, v in headers_in.items()]
    if multi:  # both maps are merged; a name-value pair in both appears once (API Gateway's rule)
        seen = {(name.lower(), value) for name, value in multi}
        headers = [h for h in headers if (h[0].lower(), h[1]) not in seen] + multi
    if cookies:
        headers += [("Set-Cookie", _header_value(c)) for c in cookies]
    body = result.get("body")
    if body is None:
        return status, headers, b""
    if not isinstance(body, str):
        raise MalformedResponse("body must be a string")
    if result.get("isBase64Encoded"):
        try:
            return status, headers, base64.b64decode(body, validate=True)
        except ValueError:
            raise MalformedResponse("body is not valid base64") from None
    return status, headers, body.encode()
