"""The gateway's Python cost to proxy one request, in-process and precise to a tenth of a µs.

A keep-alive GET for a function goes through the whole path — `ClientConnection` (parsing, limits), `Router`
(function, version, headers for the replica), `Exchange`, the version's dispatcher, a pooled
`UpstreamConnection` — and the replica's answer comes back through the same objects to the caller, with stub
transports: no syscalls, no event loop turns. What is left is the interpreter time the gateway's own rules
cost per request, the part of bench/gateway_nginx.py's figure that separates it from a minimal Python proxy
(/proc CPU ticks there are 10 ms and the load moves them; this does not). Compare two trees by putting one
first on PYTHONPATH:

    .venv/bin/python -m bench.gateway_path [--requests 100000]
    PYTHONPATH=/other/tree/gateway .venv/bin/python -m bench.gateway_path
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import fx_gateway.http.server
from fx.protocol import RouteTable, VersionRoute
from fx_gateway.config import Settings
from fx_gateway.gateway import Gateway
from fx_gateway.proxy.upstream import UpstreamConnection

from bench.gateway_parse import _Transport

ENDPOINT = "127.0.0.1:1"  # never connected: its pool holds the stub connection
REQUEST = b"GET /function/bench/ HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Wed, 02 Dec 2026 16:00:00 GMT\r\nContent-Length: 2\r\n\r\nok"
)


class _Counting(_Transport):
    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1


async def measure(requests: int, rounds: int) -> list[float]:
    """µs of CPU per proxied request, one figure per round."""
    gateway = Gateway(Settings())
    table = RouteTable("bench", time.time_ns(), {"1": 100}, {"1": VersionRoute([ENDPOINT], concurrency=0)})
    gateway.book.apply(table)
    replica = gateway.book.functions["bench"].dispatchers["1"].replicas[ENDPOINT]
    upstream, to_replica = UpstreamConnection(replica), _Counting()
    upstream.connection_made(to_replica)  # type: ignore[arg-type]
    replica.idle.append(upstream)
    client, to_caller = gateway.connection(), _Counting()
    client.connection_made(to_caller)  # type: ignore[arg-type]

    def run(n: int) -> float:
        started = time.process_time()
        for _ in range(n):
            client.data_received(REQUEST)
            upstream.data_received(ANSWER)
        return (time.process_time() - started) * 1e6 / n

    run(10_000)  # warm-up
    if not to_replica.writes == to_caller.writes == 10_000:
        raise SystemExit(
            f"requests were not proxied one for one: {to_replica.writes} sent, {to_caller.writes} answered"
        )
    return [run(requests) for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rounds = asyncio.run(measure(args.requests, args.rounds))
    print(
        f"{fx_gateway.http.server.__file__}: {statistics.median(rounds):.2f} µs CPU/request to proxy a request"
        f" (median of {args.rounds} rounds, min {min(rounds):.2f})"
    )


if __name__ == "__main__":
    main()
