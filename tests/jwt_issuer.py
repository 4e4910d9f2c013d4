"""A tiny OIDC issuer for the tests and benches that check JWTs without Keycloak: its own signing keys, an OIDC
discovery document and a JWKS served on 127.0.0.1 (a real HTTP server in a thread), and tokens it signs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

Key = RSAKey | ECKey


class Issuer:
    """Signs with `self.key` (an RSA key, kid "k1" at first); serves the public half of every key in `self.keys`.
    `down = True` answers 503 to everything; `fetches` counts the JWKS requests served."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.key = self.new_key("k1")
        self.keys: list[Key] = [self.key]
        self.down = False
        self.fetches = 0
        self.discoveries = 0

    @staticmethod
    def new_key(kid: str, kind: str = "RSA") -> Key:
        if kind == "RSA":
            return RSAKey.generate_key(2048, parameters={"kid": kid})
        return ECKey.generate_key(kind, parameters={"kid": kid})  # "P-256", "P-384"

    def rotate(self, kid: str) -> None:
        """A new signing key; the old ones leave the JWKS."""
        self.key = self.new_key(kid)
        self.keys = [self.key]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {"iss": self.url, "aud": "fx-api", "sub": "alice", "iat": now, "exp": now + 300, "scope": "read"}
        return {name: value for name, value in (base | overrides).items() if value is not None}

    def token(self, key: Key | None = None, alg: str = "RS256", **overrides: Any) -> str:
        """A token signed by `key` (the current one by default) with the default claims, `overrides` applied (None
        drops a claim)."""
        key = key or self.key
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, self.claims(**overrides), key, algorithms=[alg])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False, use="sig") for key in self.keys]}

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"}


@contextmanager
def serving(port: int = 0) -> Iterator[Issuer]:
    """An Issuer answering on 127.0.0.1 (`port`, or a free one) until the block ends."""
    issuer: Issuer | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert issuer is not None
            if issuer.down:
                return self._send(503, {"error": "down"})
            if self.path == "/.well-known/openid-configuration":
                issuer.discoveries += 1
                return self._send(200, issuer.discovery())
            if self.path == "/jwks":
                issuer.fetches += 1
                return self._send(200, issuer.jwks())
            return self._send(404, {"error": "not found"})

        def _send(self, status: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    issuer = Issuer(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
