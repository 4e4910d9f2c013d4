"""The admin API's GET calls for the CLI's read commands (`fx ls`, `fx describe`, `fx logs`...) over a plain
socket, answered as plain JSON (or text lines), with no httpx and no pydantic models.

Why not fx.Client: a command that lists what is deployed spent ~140 ms importing httpx and building fx.models'
pydantic models, for an API call of a few ms. Why not the stdlib's http.client either: importing it costs 11-16 ms
(it loads the email package to parse headers, and ssl even for plain HTTP) where a socket costs ~1 ms, of a start
whose budget is 80 ms (`fx ls` takes ~40 in all). So one GET with `Connection: close`, its answer
read as it comes (framed by Content-Length or chunked, else to the end: `fx logs -f` prints each line when it
comes). What fx.Client does that matters here is done alike: the token as a Bearer header, the gateway's path
prefix kept, TLS verified against the CA bundle httpx would use, the same errors (fx.errors.answer_error,
unreachable). Proxies are httpx's business: with a proxy variable set, `usable` says no and the command takes
fx.Client."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from fx.errors import answer_error, unreachable

if TYPE_CHECKING:
    from datetime import datetime

TIMEOUT = 60.0  # fx.Client's default
# What a gateway that never ends a line may make the CLI hold: a head as h11 (httpx) bounds it, a chunk's size line.
MAX_HEAD = 16 * 1024
MAX_CHUNK_LINE = 4096


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
    _, body = _get(gateway, token, path, params, TIMEOUT)
    return json.loads(b"".join(body))


def get_lines(
    gateway: str, token: str | None, path: str, params: dict[str, Any], follow: bool
) -> tuple[dict[str, str], Iterator[str]]:
    """The head's fields (by lower-case name) and the lines of GET `path`'s answer, each as soon as it has come,
    split as httpx's iter_lines splits them (str.splitlines' line ends); or the FxError fx.Client would raise.
    `follow`: no time limit between two lines, the answer ending when the server ends it."""
    fields, body = _get(gateway, token, path, params, None if follow else TIMEOUT)
    return fields, _lines(body)


def logs_params(follow: bool, tail: int | None, since: datetime | None, timestamps: bool) -> dict[str, Any]:
    """The query of GET /system/functions/NAME/logs (fx.Client.logs and `fx logs` ask alike)."""
    params: dict[str, Any] = {"follow": "true" if follow else "false"}
    if tail is not None:
        params["tail"] = tail
    if since is not None:
        params["since"] = since.isoformat()
    if timestamps:
        params["timestamps"] = "true"
    return params


def _get(
    gateway: str, token: str | None, path: str, params: dict[str, Any] | None, timeout: float | None
) -> tuple[dict[str, str], Iterator[bytes]]:
    """The head's fields and the body's pieces, as they come, of a 2xx or 3xx answer to GET `path`; the FxError of
    any other answer. `timeout`: seconds a read may wait once the head has come (None: no limit)."""
    import socket

    parts = urlsplit(gateway)
    target = parts.path.rstrip("/") + path + (f"?{urlencode(params, doseq=True)}" if params else "")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{auth}Accept: */*\r\nConnection: close\r\n\r\n"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # An ASCII host name goes as bytes: as text, the resolver would load the idna codec (~1 ms) to encode it.
    host = parts.hostname.encode() if parts.hostname.isascii() else parts.hostname
    with _reaching(gateway):
        conn = socket.create_connection((host, port), timeout=TIMEOUT)
        try:
            if parts.scheme == "https":
                conn = _tls().wrap_socket(conn, server_hostname=parts.hostname)
            conn.sendall(request.encode())
            status, reason, fields, rest = _head(conn)
            conn.settimeout(timeout)
        except BaseException:
            conn.close()
            raise
    body = _reaching_each(gateway, _body(conn, fields, rest))
    if status >= 400:
        raise answer_error(status, b"".join(body), reason)
    return fields, body


@contextmanager
def _reaching(gateway: str) -> Iterator[None]:
    """A failure to reach the gateway or to read its answer as the FxError fx.Client raises for it."""
    try:
        yield
    except TimeoutError as exc:
        raise unreachable(gateway.rstrip("/"), exc, timed_out=True) from exc
    except OSError as exc:  # refused, reset, no such host, a TLS failure (ssl.SSLError is one), a malformed answer
        raise unreachable(gateway.rstrip("/"), exc, timed_out=False) from exc


def _reaching_each(gateway: str, pieces: Iterator[bytes]) -> Iterator[bytes]:
    with _reaching(gateway):  # around the reads alone: what the caller does with a piece is not in here
        yield from pieces


def _head(conn: Any) -> tuple[int, str, dict[str, str], bytes]:
    """Status, reason and fields of the answer's head, and what came of its body with it."""
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0 and len(data) <= MAX_HEAD and (piece := conn.recv(65536)):
        data += piece
    if end < 0 and len(data) > MAX_HEAD:
        raise ConnectionError(f"the answer's head is over {MAX_HEAD} bytes")
    lines = data[: max(end, 0)].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if end < 0 or not version.startswith("HTTP/") or not code.isdigit():
        first = data.split(b"\r\n", 1)[0].decode("latin-1")
        raise ConnectionError(f"not an HTTP answer: {first[:80]!r}")
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(code), reason, fields, data[end + 4 :]


def _body(conn: Any, fields: dict[str, str], data: bytes) -> Iterator[bytes]:
    """The body's pieces as they come, framed as the head says: chunked, by Content-Length, else to the end; the
    connection closed after."""
    try:
        if "chunked" in fields.get("transfer-encoding", "").lower():
            yield from _dechunked(conn, data)
        elif (length := fields.get("content-length", "")).isdigit():
            yield from _counted(conn, data, int(length))
        else:
            yield data
            while piece := conn.recv(65536):
                yield piece
    finally:
        conn.close()


def _counted(conn: Any, data: bytes, length: int) -> Iterator[bytes]:
    got = 0
    while True:
        piece = data[: length - got]
        got += len(piece)
        yield piece
        if got == length:
            return
        if not (data := conn.recv(65536)):
            raise ConnectionError(f"the answer ended after {got} of its {length} bytes")


def _dechunked(conn: Any, data: bytes) -> Iterator[bytes]:
    buffer = bytearray(data)

    def more() -> None:
        if not (piece := conn.recv(65536)):
            raise ConnectionError("the answer's chunked body is cut or malformed")
        buffer.extend(piece)

    while True:
        while (line_end := buffer.find(b"\r\n")) < 0:
            if len(buffer) > MAX_CHUNK_LINE:
                raise ConnectionError(f"a chunk's size line of the answer is over {MAX_CHUNK_LINE} bytes")
            more()
        try:
            size = int(bytes(buffer[:line_end]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ConnectionError("the answer's chunked body is cut or malformed") from None
        del buffer[: line_end + 2]
        if size == 0:
            return
        while len(buffer) < size + 2:
            more()
        yield bytes(buffer[:size])
        del buffer[: size + 2]


def _lines(pieces: Iterator[bytes]) -> Iterator[str]:
    """UTF-8 text, line by line as it comes; a line's end may be any of str.splitlines', "\r\n" among them."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for piece in pieces:
        lines = (pending + decoder.decode(piece)).splitlines(keepends=True)
        # The last line waits for more unless it has ended: a "\r" may be the first half of "\r\n".
        pending = lines.pop() if lines and (lines[-1].endswith("\r") or lines[-1] == lines[-1].rstrip(_ENDS)) else ""
        yield from (line.splitlines()[0] for line in lines)
    yield from (pending + decoder.decode(b"", final=True)).splitlines()


_ENDS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # the line ends of str.splitlines


def _tls() -> Any:
    """The TLS context httpx makes for verify=True: $SSL_CERT_FILE, else $SSL_CERT_DIR, else certifi's bundle."""
    import ssl

    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
