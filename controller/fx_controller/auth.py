"""The admin token: where it comes from, and the check every /system call passes."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import Request

from .errors import ApiError


def load_or_create_token(path: Path) -> str:
    """Read the token file; create it (0600, 32 random bytes) when it does not exist yet."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # someone (the launcher) wrote it meanwhile
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


class BearerAuth:
    """FastAPI dependency: 401 unless `Authorization: Bearer <token>` matches."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def __call__(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self._token):
            why = "missing" if not given else "wrong"
            raise ApiError(401, "Unauthorized", f"admin token {why}: run `fx login` or set FX_TOKEN")
