"""The platform's admin token file: made once, owner-only, read by the launcher and the controller alike."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def new_token() -> str:
    """256 random bits as hex: never begins with '-', which a shell's `--token "$(cat file)"` would hand
    argparse as an option (a URL-safe base64 token does so once in 64)."""
    return secrets.token_hex(32)


def load_or_create_token(path: Path) -> str:
    """Read the token file; create it (0600) when it does not exist yet."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = new_token()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (the launcher, the controller) wrote it meanwhile
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
