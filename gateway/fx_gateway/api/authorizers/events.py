"""The events a Lambda authorizer function receives: API Gateway's REQUEST authorizer payloads 2.0 and 1.0.

Built from the request's head only (an authorizer never sees the body, as on AWS), in the shapes of the
handler events fx_runtime.http_events builds, so one authorizer's code runs unchanged on AWS and on fx.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from fx_gateway.api.authorizers.iam_policy import ACCOUNT_ID, method_arn
from fx_gateway.api.request import ApiRequest


def request_arn(request: ApiRequest) -> str:
    return method_arn(request.api, request.stage, request.method, request.path)


def resource(request: ApiRequest) -> str:
    """The route's path template ("/users/{id}"), or "$default"."""
    return request.route_key.partition(" ")[2] or request.route_key


def event_v2(request: ApiRequest, identity: list[str]) -> dict[str, Any]:
    headers = _headers(request)
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    domain = headers.get("host", request.host)
    stamp, epoch_ms = _times()
    event: dict[str, Any] = {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": request_arn(request),
        "identitySource": identity,
        "routeKey": request.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if request.query:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in _query(request).items()}
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": request.api,
        "domainName": domain,
        "domainPrefix": _prefix(domain),
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": "HTTP/1.1",
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": _request_id(),
        "routeKey": request.route_key,
        "stage": request.stage,
        "time": stamp,
        "timeEpoch": epoch_ms,
    }
    if request.path_parameters:  # left out when there are none, as in 2.0 handler events
        event["pathParameters"] = request.path_parameters
    if request.stage_variables:
        event["stageVariables"] = request.stage_variables
    return event


def event_v1(request: ApiRequest, identity: list[str]) -> dict[str, Any]:
    headers = _headers(request)
    query = _query(request)
    domain = headers.get("host", request.host)
    stamp, epoch_ms = _times()
    path_template = resource(request)
    request_id = _request_id()
    joined = ",".join(identity)  # the 1.0 format's identitySource: the values, comma-separated
    return {
        "version": "1.0",
        "type": "REQUEST",
        "methodArn": request_arn(request),
        "identitySource": joined,
        "authorizationToken": joined,
        "resource": path_template,
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": request.path_parameters or None,
        "stageVariables": request.stage_variables or None,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": request.api,
            "domainName": domain,
            "domainPrefix": _prefix(domain),
            "extendedRequestId": request_id,
            "httpMethod": request.method,
            "identity": {"sourceIp": request.source_ip, "userAgent": headers.get("user-agent", "")},
            "path": request.path,
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": stamp,
            "requestTimeEpoch": epoch_ms,
            "resourceId": request.route_key,
            "resourcePath": path_template,
            "stage": request.stage,
        },
    }


def _headers(request: ApiRequest) -> dict[str, str]:
    """Header bytes are latin-1 by definition; a repeated header's values come joined by ","."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers.items()}


def _query(request: ApiRequest) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in parse_qsl(request.query, keep_blank_values=True):
        params.setdefault(key, []).append(value)
    return params


def _prefix(domain: str) -> str:
    return domain.split(".", 1)[0].split(":", 1)[0]


def _times() -> tuple[str, int]:
    now = time.time()
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), int(now * 1000)


def _request_id() -> str:
    return str(uuid.uuid4())
