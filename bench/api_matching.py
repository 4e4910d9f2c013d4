"""The front door's route matching, in-process: µs per request against the number of routes, and the cost of
compiling the tries when an API changes. Matching walks the path's segments (api.matching), so its cost should
follow the path's depth, not the route count.

    .venv/bin/python -m bench.api_matching [--requests 200000]
"""

from __future__ import annotations

import argparse
import time

from fx_gateway.api.matching import RouteIndex
from fx_gateway.api.metrics import ApiMetrics
from fx_gateway.api.table import parse

from tests.api_wire import api_wire

# (method, path, what it lands on): a literal route, one with variables, a greedy one, $default
REQUESTS = (
    ("GET", "/res7/items/42", "GET /res{n}/items/{id}"),
    ("GET", "/res7/items/42/parts/9", "GET /res{n}/items/{id}/parts/{part}"),
    ("GET", "/res7/files/a/b/c", "GET /res{n}/files/{proxy+}"),
    ("POST", "/nothing/here", "$default"),
)


def api(routes: int) -> bytes:
    """An API of about `routes` routes: per resource a list, an item, a nested item and a greedy route."""
    keys = ["$default"]
    for n in range(routes // 4):
        keys += [
            f"GET /res{n}/items",
            f"GET /res{n}/items/{{id}}",
            f"GET /res{n}/items/{{id}}/parts/{{part}}",
            f"GET /res{n}/files/{{proxy+}}",
        ]
    return api_wire("bench", {key: {"function": "f"} for key in keys})


def measure(routes: int, requests: int) -> None:
    text = api(routes)
    started = time.perf_counter()
    index = RouteIndex([parse("bench", text, ApiMetrics())])
    compiled = time.perf_counter() - started
    groups = index.groups("api.example.com")
    cells = []
    for method, path, _ in REQUESTS:
        assert index.match(groups, method, path) is not None
        started = time.perf_counter()
        for _ in range(requests):
            index.match(groups, method, path)
        cells.append(f"{(time.perf_counter() - started) / requests * 1e6:{len(path)}.2f}")
    print(f"{routes:>6}  {compiled * 1000:9.2f}  " + "  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000, help="matches per cell")
    args = parser.parse_args()
    print("µs per match (groups looked up once); compile = parse + tries, per API change")
    print("routes  compile ms  " + "  ".join(path for _, path, _ in REQUESTS))
    for routes in (40, 300, 3000):
        measure(routes, args.requests)


if __name__ == "__main__":
    main()
