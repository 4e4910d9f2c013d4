"""The gateway's CPU per request on API routes, against `/function/NAME` measured in the same run.

Starts nats-server, one replica (the real runtime with a trivial handler, as bench/gateway_proxy.py), a trivial
keep-alive upstream (gateway_proxy's minimal httptools server), puts the replica's RouteTable in fx_routes and
one API in fx_apis (any host), starts fx-gateway, then runs bench/loadgen.py against each path in turn, a few
rounds interleaved, and prints the gateway's CPU µs per request (median of the rounds, /proc/<pid>/stat) and
its ratio to the baseline:

    /function/bench/      the baseline: a function call as before APIs
    GET /fn               an API function route to the same function (route match, X-Fx-Route context)
    GET /up               an API upstream route to the trivial upstream (api.http_upstream)
    GET /mock             a mock route (answered by the gateway)
    GET /jwt              the function route behind a JWT authorizer (tests/jwt_issuer.py: a local issuer and
                          JWKS), its key held: with the verified-token cache (the default), and on a second
                          gateway with --jwt-cache-entries 0, so every request is verified
    GET /fn + bearer      the plain function route sent the same token, which no authorizer looks at: what
                          carrying a JWT costs (a ~1 KiB header read, and passed on to the replica as API Gateway
                          does), so that `api jwt` minus this is what the check itself costs

The issue's bounds: an upstream route within 1.1x the function route's gateway cost; a JWT route with a cached key
within 1.5x a plain function route.

    .venv/bin/python -m bench.api_routes [--requests 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import nats
from fx.protocol import KV_APIS

from bench.gateway_proxy import BIN, ROOT, free_port, put_routes, start, start_replica, wait_http
from bench.measure import load
from tests import jwt_issuer
from tests.api_wire import api_wire


def api(upstream_port: int, issuer: str) -> bytes:
    routes = {
        "GET /fn": {"function": "bench"},
        "GET /up": {"upstream": {"url": f"http://127.0.0.1:{upstream_port}", "timeout": 29}},
        "GET /mock": {"mock": {"status": 200, "headers": {}, "body": "ok"}},
        "GET /jwt": {"function": "bench", "auth": "local"},
    }
    source = "$request.header.Authorization"
    authorizer = {"jwt": {"issuer": issuer, "audience": ["fx-api"], "identity_source": source, "jwks_uri": None}}
    return api_wire("bench", routes, authorizers={"local": authorizer})


def gateway(stack: ExitStack, nats_url: str, *flags: str) -> tuple[int, str]:
    """An fx-gateway serving the bench API: (its PID, its base URL)."""
    port = free_port()
    listen = ["--nats", nats_url, "--listen", f"127.0.0.1:{port}", "--controller", "http://127.0.0.1:9", *flags]
    proc = start(stack, [str(BIN / "fx-gateway"), *listen])
    base = f"http://127.0.0.1:{port}"
    if not wait_http(f"{base}/healthz") or not wait_http(f"{base}/mock"):
        raise SystemExit("fx-gateway did not become healthy with the API")
    return proc.pid, base


async def put_api(nats_url: str, wire: bytes) -> None:
    nc = await nats.connect(nats_url)
    try:
        kv = await nc.jetstream().create_key_value(bucket=KV_APIS, history=1)
        await kv.put("bench", wire)
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per path, interleaved")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fx-api-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        issuer = stack.enter_context(jwt_issuer.serving())
        token = issuer.token(exp=int(time.time()) + 3600)
        nats_port = free_port()
        nats_url = f"nats://127.0.0.1:{nats_port}"
        start(stack, [str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", str(tmp / "js")])
        _, replica_port, kind = start_replica(stack, tmp)
        upstream_port = free_port()
        start(stack, [sys.executable, "-m", "bench.gateway_proxy", "--upstream", str(upstream_port)], cwd=ROOT)
        if not wait_http(f"http://127.0.0.1:{upstream_port}/", 10):
            raise SystemExit("the trivial upstream did not start")
        for _ in range(100):
            try:
                asyncio.run(put_routes(nats_url, {"bench": f"127.0.0.1:{replica_port}"}))
                asyncio.run(put_api(nats_url, api(upstream_port, issuer.url)))
                break
            except (OSError, nats.errors.Error):
                time.sleep(0.1)
        main_gw, verifying_gw = gateway(stack, nats_url), gateway(stack, nats_url, "--jwt-cache-entries", "0")
        bearer = (f"Authorization: Bearer {token}",)
        cases = {  # name: (gateway, path, headers)
            "function": (main_gw, "/function/bench/", ()),
            "api function": (main_gw, "/fn", ()),
            "api upstream": (main_gw, "/up", ()),
            "mock": (main_gw, "/mock", ()),
            "api jwt": (main_gw, "/jwt", bearer),
            "api jwt, no token cache": (verifying_gw, "/jwt", bearer),
            "api function + bearer": (main_gw, "/fn", bearer),
        }
        for (_, base), path, headers in cases.values():  # warm-up: imports, connection pools, the JWKS
            load(base + path, args.concurrency, 2000, {}, headers=headers)
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        errors = dict.fromkeys(cases, 0)
        for _ in range(args.rounds):
            for name, ((pid, base), path, headers) in cases.items():
                run = load(base + path, args.concurrency, args.requests, {"gateway": pid}, headers=headers)
                cpu[name].append(run["gateway_cpu_us"])
                errors[name] += run["errors"]
        print(f"replica: {kind}; c={args.concurrency}; {args.rounds} x {args.requests} requests per path")
        median = {name: statistics.median(values) for name, values in cpu.items()}
        baseline = median["function"]
        for name, value in median.items():
            spread = f"{min(cpu[name]):.1f}..{max(cpu[name]):.1f}"
            print(
                f"{name:<24} gateway {value:6.1f} µs/req ({spread})  x{value / baseline:.2f} of /function/"
                f"  errors {errors[name]}"
            )
        plain = median["api function"]
        for name, bound in (("api upstream", 1.1), ("api jwt", 1.5), ("api jwt, no token cache", 1.5)):
            ratio = median[name] / plain
            print(f"{name} / api function: x{ratio:.2f} ({'within' if ratio <= bound else 'OVER'} the {bound}x bound)")
        check = median["api jwt"] - median["api function + bearer"]
        print(f"the JWT check itself (api jwt - api function + bearer): {check:.1f} µs/req")


if __name__ == "__main__":
    main()
