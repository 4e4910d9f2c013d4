"""The exceptions the SDK raises; the CLI maps each to an exit code."""

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


class FunctionError(Exception):
    """The function ran and failed; `payload` is Lambda's error shape ({errorType, errorMessage, ...})."""

    def __init__(self, kind: str, payload: Any) -> None:
        message = payload.get("errorMessage", "") if isinstance(payload, dict) else str(payload)
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.payload = payload


class InputError(Exception):
    """Bad input on the user's side (a manifest, a flag, a folder): nothing was sent to the server."""
