"""The exceptions the SDK raises; the CLI maps each to an exit code.

FxError's subclasses name the kind of refusal by its HTTP status, so a program can catch the one it expects
(`except fx.NotFound`) where the CLI reads the status.
"""

from __future__ import annotations

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
