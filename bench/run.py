"""The data-plane benchmark of the issue: direct to a replica vs through the gateway, and cold starts.

Starts the real embedded platform (nats-server, controller, gateway) on free ports in a
temporary state directory, deploys a trivial handler, and prints, at 16 and 64 concurrent
callers: requests/s, p50/p99 and the CPU µs per request of the gateway and of the replica,
for requests sent straight to the replica and through the gateway, in the same run. Then
the cold start from zero (request in to response out, median of 20 functions at zero), with the function
sandbox and, in a second platform started with --sandbox off, without it. Last, bench/deploy.py: deploy times
of a function needing pandas, code and dependency layer apart vs one zip. And bench/map.py: f.map()'s tasks/s vs an
`fx invoke` loop, and the SDK's overhead per task.

    make bench    (or: .venv/bin/python -m bench.run [--requests 20000])
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fx.client import Client
from fx.models import FunctionInfo
from fx.platform import Platform
from fx.protocol import KV_ROUTES, RouteTable

from bench import deploy as deploy_bench
from bench import map as map_bench
from bench.measure import load, pid_listening_on, replica_target

FX = str(Path(sys.executable).with_name("fx"))
HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
COLD = 20


def deploy(project: Path, platform: Platform, manifest: str) -> None:
    project.mkdir(parents=True, exist_ok=True)
    (project / "handler.py").write_text(HANDLER)
    (project / "fx.yaml").write_text(manifest)
    env = {**os.environ, "FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token}
    subprocess.run([FX, "deploy"], cwd=project, env=env, check=True, capture_output=True, timeout=300)


COLD_IDLE = "{path: ., scale: {idle_timeout: 2}}"  # a cold-start function's spec: back at zero 2 s after its use


def at_zero(platform: Platform, names: list[str], timeout: float = 60.0) -> None:
    """Wait until none of `names` runs a replica: the readiness gate started one of each at deploy."""

    def running(fn: FunctionInfo) -> int:
        return sum(v.replicas_ready + v.replicas_starting for v in fn.versions)

    deadline = time.monotonic() + timeout
    with Client(platform.gateway_url, platform.token) as fx:
        while any(running(f) for f in fx.list_functions() if f.name in names):
            if time.monotonic() > deadline:
                raise SystemExit(f"the functions did not scale to zero within {timeout:g} s")
            time.sleep(0.2)


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

        # Cold starts with the function sandbox (on as root) and without it, in a second platform started
        # with --sandbox off; the two alternate call by call, so both see the same load on the host.
        names = [f"cold-{i}" for i in range(COLD)]
        manifest = "functions:\n" + "".join(f"  {n}: {COLD_IDLE}\n" for n in names)
        with unsandboxed(Path(tmp) / "state-off") as off:
            cold: dict[Platform, list[float]] = {p: [], off: []}
            for platform in cold:
                deploy(Path(tmp) / "cold", platform, manifest)
            for platform in cold:
                at_zero(platform, names)
            with httpx.Client(timeout=30) as client:
                for i, name in enumerate(names):
                    pair = list(cold.items())
                    for platform, times in pair if i % 2 else reversed(pair):  # neither always goes first
                        time.sleep(0.1)  # what one platform does after a cold start is not the other's cost
                        started = time.perf_counter()
                        client.get(f"{platform.gateway_url}/function/{name}/").raise_for_status()
                        times.append((time.perf_counter() - started) * 1000)
                client.get(f"{p.gateway_url}/function/{names[0]}/").raise_for_status()  # warm again
                started = time.perf_counter()
                for _ in range(COLD):
                    client.get(f"{p.gateway_url}/function/{names[0]}/").raise_for_status()
                warm_ms = (time.perf_counter() - started) * 1000 / COLD
            sandboxed = p.protections().startswith("function sandbox: ON")
        on_p50, off_p50 = statistics.median(cold[p]), statistics.median(cold[off])
        print(
            f"-- cold start from zero (request in to response out, {COLD} functions at zero):"
            f" p50 {on_p50:.1f} ms, max {max(cold[p]):.1f} ms (target p50 ≤ 20);"
            f" the same call warm: {warm_ms:.2f} ms"
        )
        print(
            f"{'sandbox cost':<24} p50 {on_p50 - off_p50:+.1f} ms (target ≤ 2): sandbox"
            f" {'on' if sandboxed else 'OFF (not root)'} {on_p50:.1f} ms, --sandbox off {off_p50:.1f} ms"
        )
        deploy_bench.report(p, Path(tmp))
        map_bench.report(p, Path(tmp))


@contextlib.contextmanager
def unsandboxed(state_dir: Path) -> Iterator[Platform]:
    """A second platform whose controller runs replicas without the function sandbox."""
    saved = os.environ.get("FX_SANDBOX")
    os.environ["FX_SANDBOX"] = "off"
    try:
        platform = Platform(state_dir, ports="free")
        platform.start()
    finally:
        if saved is None:
            del os.environ["FX_SANDBOX"]
        else:
            os.environ["FX_SANDBOX"] = saved
    try:
        yield platform
    finally:
        platform.stop()


if __name__ == "__main__":
    main()
