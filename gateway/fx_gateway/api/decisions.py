"""What an authorizer or a limit decides about a request on an API route, before its integration runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Allow:
    """The caller may go on. What the handler sees of who they are, in its event's requestContext.authorizer."""

    v2: dict[str, Any]  # payload 2.0: {"jwt": {"claims": {...}, "scopes": [...]}} or {"lambda": {...context}}
    v1: dict[str, Any]  # payload 1.0: {"claims": {...}} (JWT), or {"principalId": ..., **context} (Lambda)


@dataclass(frozen=True, slots=True)
class Deny:
    """The caller is refused, as API Gateway refuses: a JSON body {"message": message}."""

    status: int  # 401, 403, 429, 500
    message: str  # "Unauthorized", "Forbidden", "Too Many Requests", ...
    headers: tuple[tuple[bytes, bytes], ...] = ()  # e.g. WWW-Authenticate, Retry-After
