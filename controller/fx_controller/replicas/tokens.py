"""Replica tokens: the secret the gateway shows a replica with every request, so that reaching a replica's
endpoint (a pod address the NetworkPolicy failed to fence, a socket) is not enough to call it.

A version's token is HMAC-SHA256(key, "function/version"): stable for the version's life (a Kubernetes
Deployment is made once, with it in its environment) and stored nowhere but the route table, which only the
controller and the gateways may read. The key is the controller's own, made once: a 0600 file in the state
dir (the Kubernetes backend fills that file from a Secret first, as its state dir does not outlive the pod).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "replica-token.key"
KEY_BYTES = 32


class ReplicaTokens:
    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise ValueError(f"a replica token key has at least {KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    def token(self, function: str, version: int) -> str:
        return hmac.new(self._key, f"{function}/{version}".encode(), hashlib.sha256).hexdigest()


def new_key() -> str:
    return secrets.token_hex(KEY_BYTES)


def load_key(path: Path, fresh: str | None = None) -> bytes:
    """The key in `path`, made once (owner-only) with `fresh` or a new random one if there is none."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode()
    with os.fdopen(fd, "w") as f:
        f.write(fresh or new_key())
    return path.read_text().strip().encode()
