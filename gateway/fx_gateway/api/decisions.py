"""What an authorizer or a limit decides about a request on an API route, before its integration runs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Allow:
    """The caller may go on. What the handler sees of who they are, in its event's requestContext.authorizer."""

    v2: dict[str, Any]  # payload 2.0: {"jwt": {"claims": {...}, "scopes": [...]}} or {"lambda": {...context}}
    v1: dict[str, Any]  # payload 1.0: {"claims": {...}} (JWT), or {"principalId": ..., **context} (Lambda)
    _encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def encoded(self, payload: str) -> bytes:
        """v1 or v2 as compact ASCII JSON (safe in a header line), encoded once: an authorizer that remembers its
        decisions (a verified JWT, a cached Lambda answer) hands the same Allow to every request it allows, so
        the claims are not encoded again for each request's route context."""
        text = self._encoded.get(payload)
        if text is None:
            value = self.v1 if payload == "1.0" else self.v2
            text = self._encoded[payload] = json.dumps(value, separators=(",", ":")).encode()
        return text


@dataclass(frozen=True, slots=True)
class Deny:
    """The caller is refused, as API Gateway refuses: a JSON body {"message": message}."""

    status: int  # 401, 403, 429, 500
    message: str  # "Unauthorized", "Forbidden", "Too Many Requests", ...
    headers: tuple[tuple[bytes, bytes], ...] = ()  # e.g. WWW-Authenticate, Retry-After
