"""A bounded HTTP/1.1 keep-alive load generator, light enough not to be the bottleneck.

Run it in its own process so that its CPU is not counted against the server measured:

    python bench/loadgen.py --url http://127.0.0.1:8080/function/x --concurrency 16 --requests 20000

Prints one JSON line: {"requests", "errors", "seconds", "rps", "p50_ms", "p99_ms"}.
Each connection sends its next request only after the previous answer (no pipelining).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlsplit

import httptools
import uvloop


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `request()` resolves with the status of its answer."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("connection closed"))

    async def request(self, raw: bytes) -> int:
        self.done = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(raw)
        return await self.done


def build_request(url: str, method: str, body: bytes, headers: tuple[str, ...] = ()) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = "".join(f"{header}\r\n" for header in headers)
    head = f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    return parts.hostname or "127.0.0.1", parts.port or 80, head.encode() + body


async def run(
    url: str,
    method: str,
    body: bytes,
    concurrency: int,
    requests: int,
    timeout: float,
    unix: str | None = None,
    headers: tuple[str, ...] = (),
) -> dict:
    host, port, raw = build_request(url, method, body, headers)
    loop = asyncio.get_running_loop()

    async def connect() -> tuple[asyncio.BaseTransport, _Connection]:
        if unix:
            return await loop.create_unix_connection(_Connection, unix)
        return await loop.create_connection(_Connection, host, port)

    latencies: list[float] = []
    errors = 0
    remaining = requests

    async def worker() -> None:
        nonlocal errors, remaining
        _, conn = await connect()
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(conn.request(raw), timeout)
            except (OSError, TimeoutError):
                errors += 1
                _, conn = await connect()
                continue
            latencies.append(time.perf_counter() - started)
            if status >= 400:
                errors += 1
        assert conn.transport is not None
        conn.transport.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(seconds, 3),
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default="", help="request body (text)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--unix", help="connect to this Unix socket instead of the URL's host and port")
    parser.add_argument("--header", action="append", default=[], help="'Name: value' added to every request")
    args = parser.parse_args()
    if not args.unix and urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("load is only ever sent to this machine's loopback")
    body = args.body.encode()
    headers = tuple(args.header)
    result = uvloop.run(
        run(args.url, args.method, body, args.concurrency, args.requests, args.timeout, args.unix, headers)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
