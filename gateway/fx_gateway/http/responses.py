"""Answers the gateway writes itself: JSON errors in the fx.models.ErrorBody shape, built without pydantic."""

from __future__ import annotations

import json
from http import HTTPStatus


def response(status: int, body: bytes, content_type: bytes = b"application/json", close: bool = False) -> bytes:
    """A complete HTTP/1.1 response with a Content-Length body."""
    reason = HTTPStatus(status).phrase.encode()
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (status, reason, content_type, len(body))
    return head + (b"Connection: close\r\n\r\n" if close else b"\r\n") + body


def error_body(code: str, message: str, function: str | None = None) -> bytes:
    detail: dict[str, str] = {"code": code, "message": message}
    if function is not None:
        detail["function"] = function
    return json.dumps({"error": detail}).encode()


def error(status: int, code: str, message: str, function: str | None = None, close: bool = False) -> bytes:
    return response(status, error_body(code, message, function), close=close)


def function_not_found(name: str) -> bytes:
    return error(404, "FunctionNotFound", f"function {name!r} not found; `fx ls` lists the deployed functions", name)


def version_not_found(name: str, qualifier: str) -> bytes:
    message = f"function {name!r} has no version or alias {qualifier!r}; `fx describe {name}` lists them"
    return error(404, "VersionNotFound", message, name)


def no_traffic(name: str) -> bytes:
    return error(404, "VersionNotFound", f"function {name!r} has no version taking traffic", name)


def too_large(name: str, limit: int, close: bool = False) -> bytes:
    message = f"request body for function {name!r} is larger than its limit of {limit} bytes"
    return error(413, "RequestTooLarge", message, name, close)


def queue_full(name: str, limit: int) -> bytes:
    message = f"function {name!r} already has {limit} requests waiting for a replica; retry later"
    return error(503, "QueueFull", message, name)


def activation_timeout(name: str, seconds: float) -> bytes:
    return error(504, "ActivationTimeout", f"function {name} did not become ready within {seconds:g} s", name)


def queue_timeout(name: str, seconds: float) -> bytes:
    return error(504, "QueueTimeout", f"function {name} had no free replica within {seconds:g} s", name)


def start_failed(name: str, status: int, code: str, cause: str) -> bytes:
    return error(status, code or "ActivationFailed", f"function {name} failed to start: {cause}", name)


def replica_lost(name: str) -> bytes:
    """Lambda's error shape (as its Runtime.ExitError), not fx's: the function's own failures come in it too."""
    message = (
        f"the replica running function {name} was lost before it answered (it exited or its connection broke);"
        " the function may have run: call again only if running it twice is safe"
    )
    return response(502, json.dumps({"errorType": "Runtime.ReplicaLost", "errorMessage": message}).encode())


def gateway_stopping(name: str) -> bytes:
    """For a request still waiting for a replica when a stopping gateway's drain ends: it never ran."""
    message = f"this gateway is stopping and function {name} had no replica free for the request in time;"
    message += " it did not run: retry"
    answer = error(503, "GatewayStopping", message, name, close=True)
    return answer.replace(b"\r\n", b"\r\nRetry-After: 1\r\n", 1)


def function_timeout(name: str, seconds: float) -> bytes:
    return error(504, "FunctionTimeout", f"function {name} did not answer within {seconds:g} s", name)


def not_found(path: str) -> bytes:
    message = f"no route for {path!r}: use /function/NAME, the Lambda Invoke API or /system/"
    return error(404, "NotFound", message)


def bad_request(message: str, close: bool = False) -> bytes:
    return error(400, "BadRequest", message, close=close)


def uri_too_long(limit: int) -> bytes:
    message = f"the request target is longer than {limit} bytes; send long parameters in the body"
    return error(414, "UriTooLong", message, close=True)


def header_fields_too_large(max_bytes: int, max_lines: int) -> bytes:
    message = f"the request's headers are over {max_bytes} bytes or {max_lines} lines; send fewer or smaller headers"
    return error(431, "HeadersTooLarge", message, close=True)


def request_timeout(what: str, seconds: float) -> bytes:
    return error(408, "RequestTimeout", f"the request did not send {what} within {seconds:g} s", close=True)


def too_many_connections(limit: int) -> bytes:
    message = f"this gateway already serves {limit} connections; retry later"
    return error(503, "TooManyConnections", message, close=True)


def with_close(answer: bytes) -> bytes:
    """`answer` saying that the connection closes after it."""
    return answer.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
