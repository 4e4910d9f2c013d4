"""The gateway's proxy cost: the same trivial replica called directly and through fx-gateway, in one run.

Starts nats-server, one replica (the real runtime, `python -m fx_runtime`, with a trivial handler; a minimal
httptools server if the runtime cannot start), puts a RouteTable pointing at it into fx_routes, starts
fx-gateway, then runs bench/loadgen.py at 16 and 64 concurrent connections against both paths. Prints per
config: req/s, p50/p99, the gateway's CPU µs per request (/proc/<pid>/stat), the added p50 and the ratio.
A second runtime listens on a Unix socket (FX_LISTEN=unix:..., as the local backend's replicas may): the
gateway's cost to reach it is printed beside the TCP one.

    .venv/bin/python -m bench.gateway_proxy [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import nats
from fx.protocol import KV_ROUTES, RouteTable, VersionRoute

from bench.measure import load

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


def start(stack: ExitStack, args: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stack.callback(stop)
    return proc


def start_replica(stack: ExitStack, tmp: Path) -> tuple[subprocess.Popen, int, str]:
    code = tmp / "code"
    code.mkdir(exist_ok=True)
    (code / "handler.py").write_text(HANDLER)
    port = free_port()
    env = {**os.environ, "_HANDLER": "handler.handler", "LAMBDA_TASK_ROOT": str(code), "FX_LISTEN": f"127.0.0.1:{port}"}
    proc = start(stack, [sys.executable, "-m", "fx_runtime"], env)
    if wait_http(f"http://127.0.0.1:{port}/_fx/health", 10):
        return proc, port, "fx_runtime"
    proc.terminate()
    port = free_port()
    proc = start(stack, [sys.executable, "-m", "bench.gateway_proxy", "--upstream", str(port)], cwd=ROOT)
    if not wait_http(f"http://127.0.0.1:{port}/_fx/health", 10):
        raise SystemExit("no upstream replica could be started")
    return proc, port, "minimal httptools upstream"


def start_unix_replica(stack: ExitStack, tmp: Path) -> tuple[subprocess.Popen, str] | None:
    """The same runtime on a Unix socket (FX_LISTEN=unix:...), as the local backend runs replicas; None if
    the runtime cannot start here."""
    code, sock = tmp / "code", tmp / "http.sock"
    env = {**os.environ, "_HANDLER": "handler.handler", "LAMBDA_TASK_ROOT": str(code), "FX_LISTEN": f"unix:{sock}"}
    proc = start(stack, [sys.executable, "-m", "fx_runtime"], env)
    deadline = time.monotonic() + 10
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=1) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("http://replica/_fx/health").status_code == 200:
                    return proc, str(sock)
            except httpx.TransportError:
                time.sleep(0.05)
    return None


async def put_routes(nats_url: str, endpoints: dict[str, str]) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        kv = await js.create_key_value(bucket=KV_ROUTES, history=1)
        for function, endpoint in endpoints.items():
            # concurrency 0: the gateway holds nothing back, so both paths queue at the same replica.
            table = RouteTable(function, 1, {"1": 100}, {"1": VersionRoute([endpoint], concurrency=0)})
            await kv.put(function, table.to_json())
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per measured run")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)  # internal: serve the minimal upstream
    args = parser.parse_args()
    if args.upstream:
        serve_minimal_upstream(args.upstream)
        return
    with tempfile.TemporaryDirectory(prefix="fx-gw-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        nats_port = free_port()
        nats_url = f"nats://127.0.0.1:{nats_port}"
        start(stack, [str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", str(tmp / "js")])
        replica, replica_port, kind = start_replica(stack, tmp)
        unix_replica = start_unix_replica(stack, tmp) if kind == "fx_runtime" else None
        routes = {"bench": f"127.0.0.1:{replica_port}"}
        if unix_replica is not None:
            routes["bench-unix"] = f"unix:{unix_replica[1]}"
        for _ in range(100):
            try:
                asyncio.run(put_routes(nats_url, routes))
                break
            except (OSError, nats.errors.Error):
                time.sleep(0.1)
        gw_port = free_port()
        gateway = start(
            stack,
            [
                str(BIN / "fx-gateway"),
                "--nats",
                nats_url,
                "--listen",
                f"127.0.0.1:{gw_port}",
                "--controller",
                "http://127.0.0.1:9",
            ],
        )
        if not wait_http(f"http://127.0.0.1:{gw_port}/healthz"):
            raise SystemExit("fx-gateway did not become healthy")
        direct_url = f"http://127.0.0.1:{replica_port}/_fx/http/"
        gateway_url = f"http://127.0.0.1:{gw_port}/function/bench/"
        pids = {"gateway": gateway.pid, "replica": replica.pid}
        print(f"replica: {kind}; {args.requests} requests per run; CPU from /proc/<pid>/stat")
        load(direct_url, 16, 2000, {})  # warm-up: imports, connection pools
        load(gateway_url, 16, 2000, {})
        if unix_replica is not None:
            load(f"http://127.0.0.1:{gw_port}/function/bench-unix/", 16, 2000, {})
        for concurrency in (16, 64):
            direct = load(direct_url, concurrency, args.requests, {"replica": replica.pid})
            through = load(gateway_url, concurrency, args.requests, pids)
            added = through["p50_ms"] - direct["p50_ms"]
            print(
                f"c={concurrency:<3} direct   {direct['rps']:8.0f} req/s  p50 {direct['p50_ms']:6.3f} ms"
                f"  p99 {direct['p99_ms']:6.3f} ms  replica {direct['replica_cpu_us']:5.1f} µs/req"
                f"  errors {direct['errors']}"
            )
            print(
                f"c={concurrency:<3} gateway  {through['rps']:8.0f} req/s  p50 {through['p50_ms']:6.3f} ms"
                f"  p99 {through['p99_ms']:6.3f} ms  replica {through['replica_cpu_us']:5.1f} µs/req"
                f"  gateway {through['gateway_cpu_us']:5.1f} µs/req  errors {through['errors']}"
            )
            rps_ratio, p50_ratio = through["rps"] / direct["rps"], through["p50_ms"] / direct["p50_ms"]
            print(f"c={concurrency:<3} added p50 {added:+.3f} ms; rps x{rps_ratio:.2f}, p50 x{p50_ratio:.2f}")
            if unix_replica is not None:
                unix_pids = {"gateway": gateway.pid, "replica": unix_replica[0].pid}
                unix = load(f"http://127.0.0.1:{gw_port}/function/bench-unix/", concurrency, args.requests, unix_pids)
                print(
                    f"c={concurrency:<3} gateway→unix {unix['rps']:5.0f} req/s  p50 {unix['p50_ms']:6.3f} ms"
                    f"  p99 {unix['p99_ms']:6.3f} ms  replica {unix['replica_cpu_us']:5.1f} µs/req"
                    f"  gateway {unix['gateway_cpu_us']:5.1f} µs/req  errors {unix['errors']}"
                )


def serve_minimal_upstream(port: int) -> None:
    """A trivial keep-alive HTTP/1.1 server answering 200 "ok" (used only when fx_runtime cannot start)."""
    import httptools
    import uvloop

    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

    class Conn(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data):
            self.parser.feed_data(data)

        def on_message_complete(self):
            self.transport.write(answer)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
