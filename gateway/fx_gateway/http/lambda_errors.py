"""The Invoke API's errors as Lambda answers them, so botocore and the AWS CLI raise the modeled exception.

Only the answers the gateway makes itself on `/2015-03-31/functions/NAME/invocations` are translated (on the
error path: the success path never comes here); `/function/NAME` answers keep fx's own shape. Each gets
Lambda's `X-Amzn-ErrorType` (what botocore reads the error code from), an `x-amzn-RequestId`, and Lambda's
`Type` and message keys beside fx's own `error` object (or the Lambda-shaped `errorType` of
Runtime.ReplicaLost), which the fx SDK and CLI read as before. Types are botocore's model of Invoke
(botocore/data/lambda/2015-03-31/service-2.json); a status is Lambda's for the user errors and the throttle,
fx's own for the platform failures (ServiceException): 502, 503 and 504 tell an fx caller more than 500.
"""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus

# fx's error code -> (Lambda's type, its status or None to keep fx's, the message key botocore's model names)
_TYPES: dict[str, tuple[str, int | None, str]] = {
    "FunctionNotFound": ("ResourceNotFoundException", 404, "Message"),
    "VersionNotFound": ("ResourceNotFoundException", 404, "Message"),
    "RequestTooLarge": ("RequestTooLargeException", 413, "message"),
    "InvalidInvocationType": ("InvalidParameterValueException", 400, "message"),
    "InvalidBodyRef": ("InvalidParameterValueException", 400, "message"),
    "InvalidCallback": ("InvalidParameterValueException", 400, "message"),
    "InvalidRequestContent": ("InvalidRequestContentException", 400, "message"),
    "QueueFull": ("TooManyRequestsException", 429, "message"),  # fx's throttle: no replica free, none to wait for
    "QueueTimeout": ("TooManyRequestsException", 429, "message"),
    "BlobNotFound": ("ResourceNotFoundException", 404, "Message"),  # a body by reference that expired
}
# Any other code: a platform failure (5xx), or a request refused for a reason Lambda has no type of its own for.
_SERVICE = ("ServiceException", None, "Message")
_INVALID = ("InvalidParameterValueException", None, "message")
THROTTLE_REASON = "ConcurrentInvocationLimitExceeded"


def translate(answer: bytes) -> bytes:
    """fx's error `answer` (a whole response with a JSON body) as the Invoke API's error."""
    head_end = answer.index(b"\r\n\r\n")
    body = json.loads(answer[head_end + 4 :])
    fx_error = body.get("error")
    if isinstance(fx_error, dict):
        code, message = fx_error.get("code", ""), fx_error.get("message", "")
    else:  # Lambda's own shape already (Runtime.ReplicaLost)
        code, message = body.get("errorType", ""), body.get("errorMessage", "")
    own_status = int(answer[9:12])
    kind, status, key = _TYPES.get(code) or (_SERVICE if own_status >= 500 else _INVALID)
    status = status or own_status
    body["Type"] = "User" if status < 500 else "Service"
    body[key] = message
    if kind == "TooManyRequestsException":
        body["Reason"] = THROTTLE_REASON
    close = b"\r\nconnection: close\r\n" in answer[: head_end + 2].lower()
    return response(status, kind, json.dumps(body).encode(), close)


def response(status: int, kind: str, body: bytes, close: bool = False) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nX-Amzn-ErrorType: %s\r\nx-amzn-RequestId: %s\r\n" % (
        status,
        HTTPStatus(status).phrase.encode(),
        kind.encode(),
        str(uuid.uuid4()).encode(),
    )
    tail = b"Connection: close\r\n\r\n" if close else b"\r\n"
    return head + b"Content-Length: %d\r\n%s%s" % (len(body), tail, body)


def function_timeout(seconds: float) -> bytes:
    """The backstop's answer on the Invoke API: Lambda's timeout, a function error (200, X-Amz-Function-Error),
    as the runtime itself answers one."""
    body = json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": f"Task timed out after {seconds:.2f} seconds"})
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Amz-Function-Error: Unhandled\r\n"
    return head + b"x-amzn-RequestId: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        str(uuid.uuid4()).encode(),
        len(body),
        body.encode(),
    )
