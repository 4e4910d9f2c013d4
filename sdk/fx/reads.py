"""The admin API's GET calls for the CLI's read commands (`fx ls`...) over a plain socket, answered as plain JSON,
with no httpx and no pydantic models.

Why not fx.Client: a command that lists what is deployed spent ~140 ms importing httpx and building fx.models'
pydantic models, for an API call of a few ms. Why not the stdlib's http.client either: importing it costs 11-16 ms
(it loads the email package to parse headers, and ssl even for plain HTTP) where a socket costs ~1 ms, of a start
whose budget is 80 ms and whose interpreter and parser take ~60. So one GET with `Connection: close`, read to the
end, framed by Content-Length or chunked. What fx.Client does that matters here is done alike: the token as a
Bearer header, the gateway's path prefix kept, TLS verified against the CA bundle httpx would use, the same errors
(fx.errors.answer_error, unreachable). Proxies are httpx's business: with a proxy variable set, `usable` says no
and the command takes fx.Client.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import urlencode, urlsplit

from fx.errors import answer_error, unreachable

TIMEOUT = 60.0  # fx.Client's default


def usable(gateway: str) -> bool:
    """Whether a GET to `gateway` can be made here: an http(s) URL with no user info, and no proxy to go through
    (proxy variables in the environment; on macOS and Windows, the system's settings too, as httpx reads them)."""
    parts = urlsplit(gateway)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        return False
    if sys.platform in ("darwin", "win32"):
        from urllib.request import getproxies

        return not getproxies()
    return not any(key.lower().endswith("_proxy") and value for key, value in os.environ.items())


def get_json(gateway: str, token: str | None, path: str, params: dict[str, Any] | None = None) -> Any:
    """The JSON answer of GET `path` (under /system/...), or the FxError fx.Client would raise for it."""
    import socket

    parts = urlsplit(gateway)
    target = parts.path.rstrip("/") + path + (f"?{urlencode(params, doseq=True)}" if params else "")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{auth}Accept: */*\r\nConnection: close\r\n\r\n"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # An ASCII host name goes as bytes: as text, the resolver would load the idna codec (~1 ms) to encode it.
    host = parts.hostname.encode() if parts.hostname.isascii() else parts.hostname
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
            conn = _tls().wrap_socket(raw, server_hostname=parts.hostname) if parts.scheme == "https" else raw
            conn.sendall(request.encode())
            status, reason, body = _answer(conn)
    except TimeoutError as exc:
        raise unreachable(gateway.rstrip("/"), exc, timed_out=True) from exc
    except OSError as exc:  # refused, reset, no such host, a TLS failure (ssl.SSLError is one)
        raise unreachable(gateway.rstrip("/"), exc, timed_out=False) from exc
    if status >= 400:
        raise answer_error(status, body, reason)
    return json.loads(body)


def _answer(conn: Any) -> tuple[int, str, bytes]:
    """Status, reason and body of the answer to a request sent with `Connection: close`: read to the end, framed
    by Content-Length or chunked as the head says."""
    chunks = []
    while data := conn.recv(65536):
        chunks.append(data)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not sep or not version.startswith("HTTP/") or not code.isdigit():
        raise ConnectionError(f"not an HTTP answer: {lines[0][:80]!r}")
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body = _dechunked(body)
    elif (length := fields.get("content-length", "")).isdigit():
        if len(body) < int(length):
            raise ConnectionError(f"the answer ended after {len(body)} of its {length} bytes")
        body = body[: int(length)]
    return int(code), reason, body


def _dechunked(data: bytes) -> bytes:
    out, at = [], 0
    while True:
        line_end = data.find(b"\r\n", at)
        size_text = data[at:line_end].split(b";", 1)[0].strip() if line_end >= 0 else b""
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ConnectionError("the answer's chunked body is cut or malformed") from None
        if size == 0:
            return b"".join(out)
        start = line_end + 2
        if start + size > len(data):
            raise ConnectionError("the answer's chunked body is cut or malformed")
        out.append(data[start : start + size])
        at = start + size + 2


def _tls() -> Any:
    """The TLS context httpx makes for verify=True: $SSL_CERT_FILE, else $SSL_CERT_DIR, else certifi's bundle."""
    import ssl

    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
