"""The exceptions the SDK raises; the CLI maps each to an exit code.

FxError's subclasses name the kind of refusal by its HTTP status, so a program can catch the one it expects
(`except fx.NotFound`) where the CLI reads the status.
"""

from __future__ import annotations

import json
from typing import Any


class FxError(Exception):
    """The gateway or controller refused a call, or could not be reached (status 0)."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, function: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.function = function

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.code}{where}: {self.message}"


class BadRequest(FxError):
    """400, 413, 422: the platform refused the request as it was sent."""


class Unauthorized(FxError):
    """401, 403: a missing or wrong admin token."""


class NotFound(FxError):
    """404: no such function, version, alias, secret, stream..."""


class Conflict(FxError):
    """409: the state forbids it (nothing to roll back, a secret in use...)."""


class Unavailable(FxError):
    """The gateway was not reached (status 0), or the platform failed (5xx) or throttled (429)."""


_BY_STATUS: dict[int, type[FxError]] = {400: BadRequest, 413: BadRequest, 422: BadRequest}
_BY_STATUS |= {401: Unauthorized, 403: Unauthorized, 404: NotFound, 409: Conflict, 0: Unavailable, 429: Unavailable}


def error_for_status(
    status: int, code: str, message: str, field: str | None = None, function: str | None = None
) -> FxError:
    kind = _BY_STATUS.get(status) or (Unavailable if status >= 500 else FxError)
    return kind(status, code, message, field, function)


class FunctionError(Exception):
    """The function ran and failed; `payload` is Lambda's error shape ({errorType, errorMessage, stackTrace})."""

    def __init__(self, kind: str, payload: Any) -> None:
        message = payload.get("errorMessage", "") if isinstance(payload, dict) else str(payload)
        shape = payload if isinstance(payload, dict) else {}
        super().__init__(f"{shape.get('errorType', kind)}: {message}")
        self.kind = kind  # X-Amz-Function-Error: Unhandled (or the init error's kind)
        self.payload = payload
        self.error_type: str = str(shape.get("errorType", kind))
        self.error_message: str = str(message)
        self.stack_trace: list[str] = list(shape.get("stackTrace") or [])


class InputError(Exception):
    """Bad input on the user's side (a manifest, a flag, a folder): nothing was sent to the server."""


class PlatformError(Exception):
    """The embedded platform (fx.platform, `fx up`) could not start or keep running one of its parts. Here, not in
    fx.platform, so that the CLI handles it without importing that module at every start."""


_DETAIL_KEYS = {"code", "message", "function", "field"}  # fx.models.ErrorDetail's fields


def answer_error(status: int, body: bytes, reason: str) -> FxError:
    """An FxError from an error answer: fx's ErrorBody (`{"error": {code, message, function?, field?}}`), Lambda's
    error shape (the gateway's Runtime.ReplicaLost), or whatever else came back. The Invoke API's errors carry
    Lambda's keys beside the ErrorBody's `error`. Plain JSON checks, not the models: the CLI's light reads
    (fx.reads) raise these too, without pydantic."""
    text = body.decode("utf-8", "replace")
    try:
        payload = json.loads(body)
    except ValueError:
        payload = text
    detail = payload.get("error") if isinstance(payload, dict) else None
    if _is_detail(detail):
        err = error_for_status(status, detail["code"], detail["message"], detail.get("field"), detail.get("function"))
    elif isinstance(payload, dict) and isinstance(payload.get("errorType"), str):
        err = error_for_status(status, payload["errorType"], str(payload.get("errorMessage", "")))
    else:
        err = error_for_status(status, f"HTTP{status}", (text.strip() or reason)[:500])
    if status == 401 and "token" not in err.message.lower():
        err.message += " (check the admin token: `fx login --token TOKEN` or FX_TOKEN)"
    return err


def _is_detail(detail: Any) -> bool:
    """Whether an ErrorBody's `error` is an ErrorDetail: its fields, of their types, code and message given."""
    if not isinstance(detail, dict) or not detail.keys() <= _DETAIL_KEYS:
        return False
    optional = (detail.get(k) for k in ("function", "field"))
    return (
        isinstance(detail.get("code"), str)
        and isinstance(detail.get("message"), str)
        and all(v is None or isinstance(v, str) for v in optional)
    )


def unreachable(gateway: str, exc: Exception, timed_out: bool) -> FxError:
    """The gateway did not answer: an error saying how to start or name one (status 0)."""
    if timed_out:
        return FxError(0, "Timeout", f"the gateway at {gateway} did not answer in time ({exc!r})")
    return FxError(
        0,
        "Unreachable",
        f"the gateway at {gateway} is not reachable ({exc}); start one with `fx up`,"
        " or point the CLI at yours with `fx login --gateway URL --token TOKEN`",
    )
