"""Delivering an async call's result to the caller's X-Callback-Url: one small HTTP/1.1 POST, no client library."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

TIMEOUT_S = 10.0


class CallbackError(Exception):
    pass


async def post(url: str, address: tuple[str, int], body: bytes, headers: dict[str, str]) -> int:
    """POST `body` to `url` (http or https) over a connection to `address`, the (IP, port) the callback
    policy checked; the status of the answer. Raises CallbackError."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    try:
        async with asyncio.timeout(TIMEOUT_S):
            reader, writer = await asyncio.open_connection(
                *address, ssl=https, server_hostname=parts.hostname if https else None
            )
            try:
                writer.write(request)
                status_line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise CallbackError(f"callback to {url} failed: {exc or type(exc).__name__}") from exc
    except ValueError as exc:  # readline's: a line over the stream's 64 KiB limit, whatever the receiver is
        raise CallbackError(f"callback to {url}: its answer's first line is over 64 KiB") from exc
    fields = status_line.split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise CallbackError(f"callback to {url}: not an HTTP answer ({status_line[:80]!r})")
    return int(fields[1])
