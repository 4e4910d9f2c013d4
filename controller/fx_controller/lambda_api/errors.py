"""Lambda's error shape: the status, `x-amzn-ErrorType: <Type>` (what botocore classifies an error by) and a body
`{"Type": "User"|"Service", "message": ...}` (`Message` too: ResourceNotFoundException and ServiceException
model it capitalised).

fx's own ApiError (raised by the controller methods the actions reuse) is translated by its status, so a
deploy's refusal reaches a boto3 caller as the exception class Lambda would raise."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from ..api.auth import ErrorSender, Send
from ..api.errors import ApiError

INVALID = "InvalidParameterValueException"
NOT_FOUND = "ResourceNotFoundException"
CONFLICT = "ResourceConflictException"
TOO_LARGE = "RequestTooLargeException"
PRECONDITION = "PreconditionFailedException"
SERVICE = "ServiceException"
# fx's statuses as Lambda's modeled exceptions (those of the actions fx serves).
BY_STATUS = {
    400: INVALID,
    404: NOT_FOUND,
    409: CONFLICT,
    412: PRECONDITION,
    413: TOO_LARGE,
    415: "UnsupportedMediaTypeException",
    429: "TooManyRequestsException",
}


class LambdaError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def invalid(message: str) -> LambdaError:
    return LambdaError(400, INVALID, message)


def not_found(message: str) -> LambdaError:
    return LambdaError(404, NOT_FOUND, message)


def conflict(message: str) -> LambdaError:
    return LambdaError(409, CONFLICT, message)


def precondition(message: str) -> LambdaError:
    return LambdaError(412, PRECONDITION, message)


def forbidden(kind: str, message: str) -> LambdaError:
    """Refused credentials: UnrecognizedClientException, InvalidSignatureException, MissingAuthenticationToken..."""
    return LambdaError(403, kind, message)


def _payload(status: int, message: str) -> dict[str, str]:
    return {"Type": "Service" if status >= 500 else "User", "message": message, "Message": message}


def response(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(_payload(status, message), status_code=status, headers={"x-amzn-ErrorType": kind})


def guard_error(hint: str) -> ErrorSender:
    """What the body-size guard answers on a Lambda path (it refuses from the head, before FastAPI runs);
    `hint` follows its message: what the limit is for and its knob."""

    async def answer(send: Send, status: int, code: str, message: str) -> None:
        content = json.dumps(_payload(status, f"{message}: {hint}")).encode()
        headers = [
            (b"x-amzn-errortype", BY_STATUS.get(status, SERVICE).encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    return answer


def validation_message(exc: ValidationError | RequestValidationError, names: dict[str, str] | None = None) -> str:
    """The first problem, its field named as Lambda names it (`names`: fx's field -> Lambda's)."""
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    if loc and names:
        loc[0] = names.get(loc[0], loc[0])
    where = ".".join(loc)
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def install(app: FastAPI) -> None:
    async def lambda_error(_: Request, exc: LambdaError) -> JSONResponse:
        return response(exc.status, exc.kind, str(exc))

    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        # A 5xx keeps its status (503: NATS lost fx's store, retry; 507: a full disk), so botocore retries alike.
        kind = BY_STATUS.get(exc.status) or (SERVICE if exc.status >= 500 else INVALID)
        return response(exc.status, kind, exc.detail.message)

    async def validation_error(_: Request, exc: ValidationError | RequestValidationError) -> JSONResponse:
        return response(400, INVALID, validation_message(exc))

    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code in (404, 405):
            return response(404, "UnknownOperationException", "fx's Lambda API has no such action")
        return response(exc.status_code, BY_STATUS.get(exc.status_code, SERVICE), str(exc.detail))

    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        message = f"internal error ({type(exc).__name__}); the controller's log has the details"
        return response(500, SERVICE, message)

    app.add_exception_handler(LambdaError, lambda_error)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
