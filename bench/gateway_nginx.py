"""The gateway's CPU per proxied request against nginx's, and the full chain's req/s, with wrk as the load.

Proxy cost: a tiny Go upstream (bench/upstream/main.go: 200 "ok" on every path, so it answers the replica
protocol's /_fx/http/ path too) is proxied by nginx (1 worker, `upstream { keepalive 64; }`, HTTP/1.1 to the
upstream, access_log off, X-Forwarded-For/-Proto set as the gateway sets them), by fx-gateway (a route table
in NATS pointing at it) and by a minimal Python proxy (uvloop and httptools, nothing else: what the language and
its event loop cost, beside what the gateway's own rules add). wrk (Debian's, one thread, its own process pinned
to the last CPU) runs c16 and c64 for --duration s against each in turn, --rounds times; each figure is the
median CPU µs per request of the proxy's process (nginx: its worker), from /proc/<pid>/stat around each run.
`--baseline DIR` also measures the gateway of another checkout (DIR/.venv) in the same run: before/after.

Full chain: wrk c64 through the gateway to a real replica (`python -m fx_runtime`, trivial handler) on a Unix
socket, as the local backend runs them, against the same replica called directly over TCP (wrk cannot use a
Unix socket); the gateway to a TCP replica is printed for context.

Installs wrk and nginx-light with apt-get when missing; builds the Go upstream into .venv/.

    .venv/bin/python -m bench.gateway_nginx [--duration 5] [--rounds 3] [--baseline /path/to/main]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench import report
from bench.gateway_proxy import BIN, ROOT, free_port, put_routes, start, start_replica, start_unix_replica, wait_http
from bench.measure import cpu_seconds

_TICKS = os.sysconf("SC_CLK_TCK")

GO = Path("/usr/local/go/bin/go")
UPSTREAM_SRC = ROOT / "bench" / "upstream"
UPSTREAM_BIN = BIN.parent / "bench-upstream"
NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream bench {{
        server 127.0.0.1:{upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def ensure_tools() -> None:
    """wrk and nginx from Debian when missing (as root); the Go upstream built when its source is newer."""
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if not find(tool)]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, stdout=subprocess.DEVNULL)
    source = UPSTREAM_SRC / "main.go"
    if not UPSTREAM_BIN.exists() or UPSTREAM_BIN.stat().st_mtime < source.stat().st_mtime:
        subprocess.run([str(GO), "-C", str(UPSTREAM_SRC), "build", "-o", str(UPSTREAM_BIN), "."], check=True)


def find(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")


def user_seconds(pid: int) -> float:
    """User-space CPU time of `pid` so far: what the proxy's own code costs, beside the kernel's socket work."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11]) / _TICKS


def wrk(url: str, connections: int, duration: float, pids: dict[str, int]) -> dict[str, float]:
    """One wrk run (1 thread, on the last CPU): req/s and each of `pids`' CPU µs per request (NAME: all,
    NAME_user: user space only)."""
    before = {name: (cpu_seconds(pid), user_seconds(pid)) for name, pid in pids.items()}
    cpu = str((os.cpu_count() or 1) - 1)
    args = ["taskset", "-c", cpu, find("wrk"), "-t1", f"-c{connections}", f"-d{duration:g}s", url]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=duration + 60).stdout
    after = {name: (cpu_seconds(pid), user_seconds(pid)) for name, pid in pids.items()}
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if errors or done == 0:
        raise SystemExit(f"wrk against {url} saw errors:\n{out}")
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for name in pids:
        result[name] = (after[name][0] - before[name][0]) * 1e6 / done
        result[f"{name}_user"] = (after[name][1] - before[name][1]) * 1e6 / done
    return result


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def start_nginx(stack: ExitStack, tmp: Path, upstream: int) -> tuple[int, int]:
    """nginx with one worker in its own prefix; (its port, the worker's PID)."""
    prefix = tmp / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, upstream=upstream, port=port))
    master = start(stack, [find("nginx"), "-p", str(prefix), "-c", str(conf)])
    if not wait_http(f"http://127.0.0.1:{port}/"):
        raise SystemExit(f"nginx did not start: {(prefix / 'error.log').read_text()}")
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    if len(children) != 1:
        raise SystemExit(f"nginx: expected one worker, found {children}")
    return port, int(children[0])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def start_nats(stack: ExitStack, tmp: Path, endpoints: dict[str, str]) -> str:
    """nats-server with a route table per function in `endpoints`; its URL."""
    nats_port = free_port()
    nats_url = f"nats://127.0.0.1:{nats_port}"
    start(stack, [str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(nats_port), "-js", "-sd", str(tmp / "js")])
    wait_port(nats_port)
    asyncio.run(put_routes(nats_url, endpoints))
    return nats_url


def start_gateway(stack: ExitStack, nats_url: str, program: Path) -> tuple[int, int]:
    """fx-gateway (`program`) on the route tables in `nats_url`; (its port, its PID)."""
    port = free_port()
    listen = f"127.0.0.1:{port}"
    args = [str(program), "--nats", nats_url, "--listen", listen, "--controller", "http://127.0.0.1:9"]
    gateway = start(stack, args)
    if not wait_http(f"http://127.0.0.1:{port}/healthz"):
        raise SystemExit(f"{program} did not become healthy")
    return port, gateway.pid


def proxy_cost(
    args: argparse.Namespace,
    stack: ExitStack,
    tmp: Path,
    gateways: dict[str, tuple[int, int]],
    minimal: tuple[int, int],
    up: int,
) -> None:
    """nginx, the minimal Python proxy and each gateway ("fx", and "baseline" if given) in turn at c16 and c64,
    `args.rounds` times."""
    nginx_port, nginx_pid = start_nginx(stack, tmp, up)
    targets = {"nginx": (f"http://127.0.0.1:{nginx_port}/", nginx_pid)}
    targets["minimal"] = (f"http://127.0.0.1:{minimal[0]}/", minimal[1])
    targets |= {name: (f"http://127.0.0.1:{port}/function/go/", pid) for name, (port, pid) in gateways.items()}
    for url, _ in targets.values():
        wrk(url, 64, 1, {})  # warm-up: connection pools, code paths
    for connections in (16, 64):
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, pid) in targets.items():
                runs[name].append(wrk(url, connections, args.duration, {"cpu": pid}))
        nginx, fx = medians(runs["nginx"]), medians(runs["fx"])
        report.figure(
            f"gateway CPU per proxied request (c{connections})",
            fx["cpu"],
            "µs",
            reference=nginx["cpu"],
            reference_name="nginx 1 worker keepalive",
            ratio_at_most=1.0,
        )
        if "baseline" in runs:
            before = medians(runs["baseline"])
            name = f"gateway CPU per proxied request (c{connections}) vs baseline"
            report.figure(name, fx["cpu"], "µs", reference=before["cpu"], reference_name=f"{args.baseline}")
        minimal = medians(runs["minimal"])
        for what, figure, unit, reference, reference_name in (
            ("minimal Python proxy CPU per request", minimal["cpu"], "µs", nginx["cpu"], "nginx 1 worker keepalive"),
            ("gateway user-space CPU per request", fx["cpu_user"], "µs", nginx["cpu_user"], "nginx's"),
            ("gateway req/s, Go upstream", fx["rps"], "req/s", nginx["rps"], "nginx"),
        ):
            report.figure(f"{what} (c{connections})", figure, unit, reference=reference, reference_name=reference_name)


def full_chain(args: argparse.Namespace, gw_port: int, gw_pid: int, tcp: tuple[int, int], unix_pid: int) -> None:
    tcp_port, tcp_pid = tcp
    direct_url = f"http://127.0.0.1:{tcp_port}/_fx/http/"
    unix_url, tcp_url = (f"http://127.0.0.1:{gw_port}/function/{name}/" for name in ("unix", "tcp"))
    for url in (direct_url, unix_url, tcp_url):
        wrk(url, 64, 1, {})
    runs: dict[str, list[dict[str, float]]] = {"direct": [], "unix": [], "tcp": []}
    for _ in range(args.rounds):
        runs["direct"].append(wrk(direct_url, 64, args.duration, {"replica": tcp_pid}))
        runs["unix"].append(wrk(unix_url, 64, args.duration, {"gateway": gw_pid, "replica": unix_pid}))
        runs["tcp"].append(wrk(tcp_url, 64, args.duration, {"gateway": gw_pid, "replica": tcp_pid}))
    direct, unix, tcp_ = (medians(runs[k]) for k in ("direct", "unix", "tcp"))
    for name, m in (("direct", direct), ("gateway → unix replica", unix), ("gateway → tcp replica", tcp_)):
        cpu = "  ".join(f"{k} {v:.1f} µs/req" for k, v in m.items() if k != "rps" and not k.endswith("_user"))
        print(f"full chain c64 {name:<24} {m['rps']:8.0f} req/s  {cpu}")
    chain = "full chain req/s, gateway → replica (c64)"
    report.figure(
        chain, unix["rps"], "req/s", reference=direct["rps"], reference_name="same replica direct (TCP)", at_least=30000
    )
    report.figure("gateway CPU per request, full chain (c64)", unix["gateway"], "µs")
    replica = "replica CPU per request, full chain (c64)"
    report.figure(replica, unix["replica"], "µs", reference=direct["replica"], reference_name="direct")


def serve_minimal_proxy(port: int, upstream: int) -> None:
    """A keep-alive proxy with nothing of the gateway's but uvloop and httptools: no routing, limits, timeouts,
    metrics or header rules. What Python itself costs per proxied request, beside what the gateway adds."""
    import httptools
    import uvloop

    idle: list[Upstream] = []

    class Upstream(asyncio.Protocol):
        def __init__(self, caller: Caller) -> None:
            self.caller = caller
            self.parser = httptools.HttpResponseParser(self)

        def connection_made(self, transport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.caller.transport.write(data)
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            idle.append(self)

    class Caller(asyncio.Protocol):
        def connection_made(self, transport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.headers: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers += (name, b": ", value, b"\r\n")

        def on_message_complete(self) -> None:
            raw = b"".join([b"GET %s HTTP/1.1\r\n" % self.url, *self.headers, b"\r\n"])
            self.headers = []
            if idle:
                conn = idle.pop()
                conn.caller = self
                conn.transport.write(raw)
            else:
                self.connecting = asyncio.ensure_future(self.connect(raw))

        async def connect(self, raw: bytes) -> None:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(lambda: Upstream(self), "127.0.0.1", upstream)
            conn.transport.write(raw)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Caller, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(serve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per configuration; the median is reported")
    parser.add_argument("--skip-chain", action="store_true", help="measure the proxy cost only")
    parser.add_argument("--minimal-proxy", nargs=2, type=int, help=argparse.SUPPRESS)  # internal: PORT UPSTREAM
    parser.add_argument(
        "--baseline", type=Path, help="another checkout (with its .venv) whose gateway is measured in the same run"
    )
    args = parser.parse_args()
    if args.minimal_proxy:
        serve_minimal_proxy(*args.minimal_proxy)
        return
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="fx-gw-nginx-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        up = free_port()
        start(stack, [str(UPSTREAM_BIN), "-listen", f"127.0.0.1:{up}"])
        if not wait_http(f"http://127.0.0.1:{up}/"):
            raise SystemExit("the Go upstream did not start")
        replica, replica_port, kind = start_replica(stack, tmp)
        unix = start_unix_replica(stack, tmp) if kind == "fx_runtime" else None
        if unix is None:
            raise SystemExit("fx_runtime could not start here: no full chain to measure")
        endpoints = {"go": f"127.0.0.1:{up}", "tcp": f"127.0.0.1:{replica_port}", "unix": f"unix:{unix[1]}"}
        nats_url = start_nats(stack, tmp, endpoints)
        gateways = {"fx": start_gateway(stack, nats_url, BIN / "fx-gateway")}
        if args.baseline:
            gateways["baseline"] = start_gateway(stack, nats_url, args.baseline / ".venv" / "bin" / "fx-gateway")
        minimal_port = free_port()
        minimal = start(
            stack,
            [str(BIN / "python"), "-m", "bench.gateway_nginx", "--minimal-proxy", str(minimal_port), str(up)],
            cwd=ROOT,
        )
        wait_port(minimal_port)
        gw_port, gw_pid = gateways["fx"]
        print(f"{report.machine()}; wrk -t1 on CPU {(os.cpu_count() or 1) - 1}, {args.duration:g} s x {args.rounds}")
        proxy_cost(args, stack, tmp, gateways, (minimal_port, minimal.pid), up)
        if not args.skip_chain:
            full_chain(args, gw_port, gw_pid, (replica_port, replica.pid), unix[0].pid)


if __name__ == "__main__":
    main()
