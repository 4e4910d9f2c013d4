"""The replica's per-request cost of reading a request, in-process and precise to a tenth of a µs.

Feeds keep-alive `POST /_fx/invoke` requests as the gateway sends them (a caller's headers, X-Forwarded-*,
X-Fx-Replica-Token when the replica has a token) through `fx_runtime.server.Connection` with a stub server
whose dispatch answers nothing, so what is measured is parsing and the token check, not the handler.
bench/runtime_invoke.py's /proc CPU ticks are too coarse to see a µs. Compare two trees as bench/gateway_parse:

    .venv/bin/python -m bench.runtime_parse [--requests 200000]
    PYTHONPATH=/other/tree/runtime-images .venv/bin/python -m bench.runtime_parse
"""

from __future__ import annotations

import argparse
import inspect
import json
import time

from fx_runtime.server import Connection

TOKEN = b"5d1c" * 16
HEAD = (
    b"POST /_fx/invoke HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
    b"Content-Type: application/json\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
    b"X-Forwarded-Host: 127.0.0.1:8080\r\n"
)
BODY = b"Content-Length: 2\r\n\r\n{}"


class _Socket:
    def fileno(self) -> int:
        return -1


class _Transport:
    def get_extra_info(self, name: str):
        return _Socket() if name == "socket" else None

    def is_closing(self) -> bool:
        return False


class _Server:
    def __init__(self) -> None:
        self.connections: set = set()
        self.served = 0

    def dispatch(self, conn: Connection) -> None:
        self.served += conn.authorized if hasattr(conn, "authorized") else 1


def run(requests: int, token: bytes | None) -> float:
    """µs per request, best of 5 rounds."""
    server = _Server()
    takes_token = "token" in inspect.signature(Connection.__init__).parameters
    conn = Connection(server, 6 * 1024 * 1024, token) if takes_token else Connection(server, 6 * 1024 * 1024)  # type: ignore[arg-type]
    conn.connection_made(_Transport())  # type: ignore[arg-type]
    request = HEAD + (b"X-Fx-Replica-Token: %s\r\n" % token if token else b"") + BODY
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(requests):
            conn.data_received(request)
        rounds.append((time.perf_counter() - started) * 1e6 / requests)
    assert server.served == 5 * requests, "a request was refused"
    return min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200000)
    args = parser.parse_args()
    figures = {"no token": run(args.requests, None)}
    if "token" in inspect.signature(Connection.__init__).parameters:
        figures["with token"] = run(args.requests, TOKEN)
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
