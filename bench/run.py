"""The data-plane benchmark of the issue: direct to a replica vs through the gateway, and cold starts.

Starts the real embedded platform (nats-server, controller, gateway) on free ports in a
temporary state directory, deploys a trivial handler, and prints, at 16 and 64 concurrent
callers: requests/s, p50/p99 and the CPU µs per request of the gateway and of the replica,
for requests sent straight to the replica and through the gateway, in the same run. Then
bench/cold_start.py: cold starts from zero through the gateway with templates, without them, and with --sandbox
off, against a template's own fork → first 200, the p99 with a CPU burner per core, and a heavy init's second
start. Last, bench/deploy.py: deploy times of a function needing pandas, code and dependency layer apart vs one
zip. And bench/map.py: f.map()'s tasks/s vs an `fx invoke` loop, and the SDK's overhead per task.

    make bench    (or: .venv/bin/python -m bench.run [--requests 20000])
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fx.platform import Platform
from fx.protocol import KV_ROUTES, RouteTable

from bench import cold_start
from bench import deploy as deploy_bench
from bench import map as map_bench
from bench.cold_start import FX, at_zero, deploy  # noqa: F401  (at_zero and FX: other benchmarks import them here)
from bench.measure import load, pid_listening_on, replica_target

COLD = 20  # functions called cold on each platform (bench/cold_start.py)


async def endpoint_of(p: Platform, function: str) -> str:
    nc = await p.admin_nats()
    try:
        kv = await (nc.jetstream()).key_value(KV_ROUTES)
        table = RouteTable.from_json((await kv.get(function)).value)
        return next(ep for v in table.versions.values() for ep in v.endpoints)
    finally:
        await nc.close()


def row(label: str, result: dict, keys: tuple[str, ...]) -> str:
    cpu = "  ".join(f"{k.removesuffix('_cpu_us')} {result[k]:7.1f} µs" for k in keys)
    return (
        f"{label:<24} {result['rps']:9.0f} req/s  p50 {result['p50_ms']:7.3f} ms  p99 {result['p99_ms']:7.3f} ms"
        f"  CPU/request: {cpu}  errors {result['errors']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per measured run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fx-bench-") as tmp, Platform(Path(tmp) / "state", ports="free") as p:
        # One replica, no per-replica limit in the gateway: both paths queue at the same runtime.
        deploy(
            Path(tmp) / "bench",
            p,
            "functions:\n  bench:\n    scale: {min: 1, max: 1, concurrency: 0, idle_timeout: 3600}\n",
        )
        gateway_url = f"{p.gateway_url}/function/bench/"
        httpx.get(gateway_url, timeout=30).raise_for_status()
        replica = asyncio.run(endpoint_of(p, "bench"))
        replica_url, unix, replica_pid = replica_target(replica)
        direct_url = f"{replica_url}/_fx/http/"
        pids = {"gateway": pid_listening_on(urlsplit(p.gateway_url).port), "replica": replica_pid}
        load(direct_url, 16, 2000, pids, unix=unix)  # warm-up
        load(gateway_url, 16, 2000, pids)
        print(f"fx data plane, {os.cpu_count()} CPUs, {args.requests} requests per run, trivial handler")
        for concurrency in (16, 64):
            direct = load(direct_url, concurrency, args.requests, {"replica": pids["replica"]}, unix=unix)
            via = load(gateway_url, concurrency, args.requests, pids)
            print(f"-- {concurrency} concurrent")
            print(row("direct to replica", direct, ("replica_cpu_us",)))
            print(row("through the gateway", via, ("gateway_cpu_us", "replica_cpu_us")))
            print(
                f"{'gateway cost':<24} {via['gateway_cpu_us']:.1f} µs CPU/request (target ≤ 40);"
                f" added p50 {via['p50_ms'] - direct['p50_ms']:.3f} ms (target ≤ 0.5 at 16);"
                f" throughput ratio {via['rps'] / direct['rps']:.2f}"
            )

        cold_start.report(Path(tmp), COLD)
        deploy_bench.report(p, Path(tmp))
        map_bench.report(p, Path(tmp))


if __name__ == "__main__":
    main()
