"""The gateway's per-request cost of an API key check and of the limits (`ApiKeys.check`, `Limits.admit`),
in-process, in µs of CPU, next to the cost of reading the request (bench/gateway_parse.py) for scale.

Cases: a route throttle alone; a route and an API throttle; a key check plus a key with a rate and a daily quota
(the most a request pays). The buckets never run dry (a rate far above the loop's), so what is measured is the
admitting path, the one every served request takes.

    .venv/bin/python -m bench.api_limits [--requests 200000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections.abc import Callable

from fx_gateway.api.api_keys import ApiKeys
from fx_gateway.api.limits import Limits
from fx_gateway.api.metrics import ApiMetrics
from fx_gateway.api.request import ApiRequest
from fx_gateway.api.table import parse
from fx_gateway.config import Settings
from fx_gateway.nats_link import NatsLink

from tests.api_wire import api_wire

VALUE = "k" * 40
HUGE = {"rate": 1e9, "burst": 1e9}


def _api(throttle: dict | None) -> bytes:
    return api_wire("shop", {"GET /items": {"function": "f", "api_key": True, "throttle": HUGE}}, throttle=throttle)


def _key() -> bytes:
    return json.dumps(
        {"id": "id-bench", "name": "bench", "api": "shop", "sha256": hashlib.sha256(VALUE.encode()).hexdigest(),
         "rate": 1e9, "burst": 10**9, "quota": {"limit": 10**12, "period": "day"}, "created_at": "2026-01-01T00:00:00Z"}
    ).encode()  # fmt: skip


def cases() -> dict[str, Callable[[], object]]:
    settings = Settings()
    keys = ApiKeys(settings, NatsLink(settings))
    keys.apply("bench", _key())
    limits = Limits(settings, keys.link, keys)
    request = ApiRequest("shop", "GET /items", "GET", "/items", "", {b"x-api-key": VALUE.encode()}, "127.0.0.1", "")
    route_only = parse("shop", _api(None), ApiMetrics()).routes[0]
    with_api = parse("shop", _api(HUGE), ApiMetrics()).routes[0]
    return {
        "route throttle": lambda: limits.admit(request, route_only, None),
        "route + API throttles": lambda: limits.admit(request, with_api, None),
        "key check + route, API, key throttles + quota": lambda: limits.admit(request, with_api, keys.check(request)),
    }


def run(case: Callable[[], object], requests: int) -> float:
    """µs of CPU per request."""
    started = time.process_time()
    for _ in range(requests):
        case()
    return (time.process_time() - started) * 1e6 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for name, case in cases().items():
        run(case, 10_000)  # warm-up
        rounds = [run(case, args.requests) for _ in range(args.rounds)]
        median, least = statistics.median(rounds), min(rounds)
        print(f"{name}: {median:.2f} µs CPU/request (median of {args.rounds}, min {least:.2f})")


if __name__ == "__main__":
    main()
