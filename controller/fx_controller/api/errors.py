"""The admin API's one error shape (fx.models.ErrorBody) and the handlers that produce it."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fx.models import ErrorBody, ErrorDetail
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError as JetStreamError
from nats.js.errors import NoStreamResponseError
from starlette.exceptions import HTTPException

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# JetStream's "insufficient resources" and "insufficient storage resources available": its store is at its limit.
JETSTREAM_FULL = frozenset({10023, 10047})
STREAM_NOT_FOUND = 10059  # JetStream's "stream not found": one of fx's streams or buckets is gone
# nats-server does not acknowledge the first write it fails to store: below this, a timeout means a full disk.
LOW_SPACE_BYTES = 1 << 20


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, function: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(code=code, message=message, function=function, field=field)


def checked(
    check: Callable[[str], str], value: str, field: str, code: str = "InvalidName", *, function: str | None = None
) -> str:
    """`value` as `check` passes it; its ValueError a 400 naming `field` (for a path or query parameter)."""
    try:
        return check(value)
    except ValueError as e:
        raise ApiError(400, code, str(e), function=function, field=field) from e


def not_found(name: str) -> ApiError:
    return ApiError(404, "FunctionNotFound", f"function {name!r} not found; `fx ls` lists functions", function=name)


def error_response(status: int, detail: ErrorDetail, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def _field_path(loc: tuple) -> str:
    # FastAPI prefixes locations with where the value came from ("body", "path", ...).
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "path", "query", "header"):
        parts = parts[1:]
    return ".".join(parts)


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.detail)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    field = _field_path(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    message = f"{field}: {msg}" if field else msg
    return error_response(400, ErrorDetail(code="InvalidSpec", message=message, field=field or None))


async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    codes = {404: "NotFound", 405: "MethodNotAllowed"}
    detail = ErrorDetail(code=codes.get(exc.status_code, "HttpError"), message=str(exc.detail))
    return error_response(exc.status_code, detail, getattr(exc, "headers", None))


def disk_full(where: object, why: str | None) -> ApiError:
    message = f"the disk holding {where} is full ({why or 'no space left'}); free space on it, then retry"
    return ApiError(507, "InsufficientStorage", message)


async def _os_error(_: Request, exc: OSError) -> JSONResponse:
    if exc.errno not in DISK_FULL:
        raise exc  # on to _internal_error
    # Nothing half-written stays: Artifacts.store removes its temp file, and no record names what was not stored.
    return error_response(507, disk_full(exc.filename or "the state dir", exc.strerror).detail)


def _store_lost(recover: Callable[[], None]):
    """A stream fx's operation needs is gone (NATS lost its data): have it re-created and restored, and ask
    for a retry (503) rather than fail (500)."""
    message = "NATS lost fx's store; the controller is re-creating it from its own copy: retry in a moment"

    async def answer(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, JetStreamError) and exc.err_code != STREAM_NOT_FOUND:
            return await _jetstream_error(request, exc)
        recover()
        return error_response(503, ErrorDetail(code="NatsStoreLost", message=message))

    return answer


async def _jetstream_error(_: Request, exc: JetStreamError) -> JSONResponse:
    description = exc.description or ""
    if exc.err_code not in JETSTREAM_FULL and "no space left on device" not in description:
        raise exc
    message = (
        f"NATS JetStream's store is full ({description}); free space on the disk of its store (<state dir>/nats in"
        " the embedded mode), then restart fx: nats-server keeps a stream's write error until it restarts"
    )
    return error_response(507, ErrorDetail(code="InsufficientStorage", message=message))


def _timeout(state_dir: Path | None):
    async def answer(_: Request, exc: NatsTimeout) -> JSONResponse:
        try:
            free = shutil.disk_usage(state_dir).free if state_dir else LOW_SPACE_BYTES
        except OSError:
            free = LOW_SPACE_BYTES
        if free < LOW_SPACE_BYTES:
            message = (
                f"NATS JetStream did not store the write, and the disk holding {state_dir} has {free} bytes free:"
                " free space on it, then restart fx (nats-server keeps a stream's write error until it restarts)"
            )
            return error_response(507, ErrorDetail(code="InsufficientStorage", message=message))
        message = "NATS did not answer in time; retry, and check that nats-server is running"
        return error_response(503, ErrorDetail(code="NatsUnavailable", message=message))

    return answer


async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, so the traceback still reaches the controller's log.
    message = f"internal error ({type(exc).__name__}); the controller's log has the details"
    return error_response(500, ErrorDetail(code="InternalError", message=message))


def install(app: FastAPI, state_dir: Path | None = None, recover: Callable[[], None] | None = None) -> None:
    """`state_dir`: where the embedded nats-server keeps its store, to tell a full disk from a slow NATS.
    `recover`: what re-creates fx's streams and buckets when an operation finds one missing."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(OSError, _os_error)
    app.add_exception_handler(JetStreamError, _jetstream_error if recover is None else _store_lost(recover))
    if recover is not None:  # a write to a stream that is gone: nobody answers it
        app.add_exception_handler(NoStreamResponseError, _store_lost(recover))
    app.add_exception_handler(NatsTimeout, _timeout(state_dir))
    app.add_exception_handler(Exception, _internal_error)
