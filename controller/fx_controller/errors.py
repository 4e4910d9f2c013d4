"""The admin API's one error shape (fx.models.ErrorBody) and the handlers that produce it."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fx.models import ErrorBody, ErrorDetail
from starlette.exceptions import HTTPException


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, function: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(code=code, message=message, function=function, field=field)


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


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
