"""The gateway's per-request cost of reading a request, in-process and precise to a tenth of a µs.

Feeds keep-alive requests (a typical head of 7 headers) through `fx_gateway.http.server.ClientConnection` with a
stub gateway that answers each at once, so what is measured is the parsing, the limits and the bookkeeping of
the caller's connection, not the proxying. `/proc` CPU ticks (bench/gateway_proxy.py) are 10 ms, too coarse
to see a change of a µs; this is not. Compare two trees by putting one first on PYTHONPATH:

    .venv/bin/python -m bench.gateway_parse [--requests 200000]
    PYTHONPATH=/other/tree/gateway .venv/bin/python -m bench.gateway_parse
"""

from __future__ import annotations

import argparse
import statistics
import time

import fx_gateway.http.server
from fx_gateway.config import Settings
from fx_gateway.http.connections import Connections
from fx_gateway.http.server import ClientConnection

REQUEST = (
    b"GET /function/bench/items?id=42 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\nAccept-Encoding: gzip\r\nX-Request-Id: 3f2b6c1e-8a4d-4e2b-9c1f-5d6e7f8a9b0c\r\n"
    b"Authorization: Bearer abcdef\r\nCookie: uid=1234\r\n\r\n"
)


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 50000)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _Answer:
    streaming = False
    keep_alive = True

    def __init__(self, client: ClientConnection) -> None:
        self.client = client

    def feed(self, chunk: bytes) -> None:
        pass

    def begin(self) -> None:
        self.client.done(True)

    def client_gone(self) -> None:
        pass


class _Router:
    def open(self, client, method, url, headers):
        return _Answer(client)


def run(requests: int) -> float:
    """µs of CPU per request."""
    conn = ClientConnection(_Router(), Connections(Settings()))
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    started = time.process_time()
    for _ in range(requests):
        conn.data_received(REQUEST)
    return (time.process_time() - started) * 1e6 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    run(10_000)  # warm-up
    rounds = [run(args.requests) for _ in range(args.rounds)]
    print(
        f"{fx_gateway.http.server.__file__}: {statistics.median(rounds):.2f} µs CPU/request to read a request"
        f" (median of {args.rounds} rounds, min {min(rounds):.2f})"
    )


if __name__ == "__main__":
    main()
