"""Replica CPU per invocation against a bare uvloop + httptools server in the same run; fork-to-ready via the zygote.

    .venv/bin/python -m bench.runtime_invoke [--requests 20000] [--rounds 3] [--before /other/checkout]

Servers, each its own process, its stdout on a log file as a replica's is:
- bare: uvloop + httptools answering a fixed response, the cost of HTTP alone (the reference);
- fx_runtime: the real runtime (`python -m fx_runtime`) with a trivial handler and a replica token, called as the
  gateway calls it (its X-Forwarded-* headers and token): GET /_fx/http/ (an API Gateway 2.0 event, the function
  path) and POST /_fx/invoke (the Invoke API);
- with --before: the runtime of another checkout (its runtime-images first on PYTHONPATH), for before/after.

bench/loadgen.py runs in its own process. CPU µs per request = the server's user + system time (/proc) over a
run / its requests; each round runs every server once, interleaved, so load elsewhere on the host hits them
alike; the median of the rounds counts. The headline is the function path at 16 callers (what bench/run.py and the
issue measured); 64 callers and the Invoke API are printed beside it. One caller is left out: every request then
wakes the server from epoll, and that wake-up's cost, which varies with load elsewhere on the host more than
with the server, drowns what the server itself spends (measured: 28-32 µs for the bare server alone).

A before/after of a change: `git archive main runtime-images | tar -x -C /tmp/before`, then --before /tmp/before.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.measure import load

HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
TOKEN = "5d1c" * 16
# What the gateway adds to a caller's request (http/router.py, proxy/dispatch.py).
GATEWAY_HEADERS = (
    "User-Agent: bench",
    "Accept: */*",
    "X-Forwarded-For: 127.0.0.1",
    "X-Forwarded-Proto: http",
    "X-Forwarded-Host: 127.0.0.1:8080",
    f"X-Fx-Replica-Token: {TOKEN}",
)
BARE = """
import asyncio, httptools, uvloop
ANSWER = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 2\\r\\n\\r\\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.p = httptools.HttpRequestParser(self)
    def data_received(self, d): self.p.feed_data(d)
    def on_message_complete(self): self.t.write(ANSWER)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    print(f"fx-runtime ready on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""
# (label, method, path, concurrency); the first is the headline.
RUNS = (
    ("http c16", "GET", "/_fx/http/", 16),
    ("http c64", "GET", "/_fx/http/", 64),
    ("invoke c16", "POST", "/_fx/invoke", 16),
)


class Server:
    """One server process on a free port; `url` once it printed that it is ready."""

    def __init__(self, name: str, argv: list[str], env: dict, tmp: Path) -> None:
        self.name = name
        self.log = tmp / f"{name}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        deadline = time.monotonic() + 15
        while not (endpoint := self._endpoint()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {self.log.read_text()}")
            time.sleep(0.01)
        self.url = f"http://{endpoint}"

    def _endpoint(self) -> str:
        for line in self.log.read_text().splitlines():
            if line.startswith("fx-runtime ready on "):
                return line.split()[3]
        return ""

    def cpu_us(self, method: str, path: str, concurrency: int, requests: int) -> float:
        result = load(self.url + path, concurrency, requests, {"s": self.proc.pid}, method, headers=GATEWAY_HEADERS)
        if result["errors"]:
            raise RuntimeError(f"{self.name}: {result['errors']} errors on {method} {path}")
        return result["s_cpu_us"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def replica_cpu(tmp: Path, env: dict, requests: int, rounds: int, before: Path | None) -> None:
    (tmp / "bare.py").write_text(BARE)
    runtime = [sys.executable, "-m", "fx_runtime"]
    servers = [
        Server("bare", [sys.executable, str(tmp / "bare.py")], env, tmp),
        Server("fx_runtime", runtime, env, tmp),
    ]
    if before is not None:
        before_env = {**env, "PYTHONPATH": str(before / "runtime-images")}
        servers.append(Server("before", runtime, before_env, tmp))
    figures: dict[tuple[str, str], list[float]] = {}
    try:
        for server in servers:  # warm-up: first calls, first allocations
            server.cpu_us("GET", "/_fx/http/", 16, 2000)
        for _ in range(rounds):
            for label, method, path, concurrency in RUNS:
                for server in servers:
                    cpu = server.cpu_us(method, path, concurrency, requests)
                    figures.setdefault((server.name, label), []).append(cpu)
    finally:
        for server in servers:
            server.stop()
    median = {key: statistics.median(values) for key, values in figures.items()}
    for label, *_ in RUNS:
        row = {server.name: round(median[server.name, label], 1) for server in servers}
        print(json.dumps({"run": label, "cpu_us_per_request": row}))
    headline = RUNS[0][0]
    bare, fx = median["bare", headline], median["fx_runtime", headline]
    if before is not None:
        report.figure(
            "replica CPU per invocation, before (--before)",
            median["before", headline],
            "µs",
            reference=bare,
            reference_name="uvloop+httptools fixed reply",
        )
    report.figure(
        "replica CPU per invocation (trivial handler)",
        fx,
        "µs",
        reference=bare,
        reference_name="uvloop+httptools fixed reply",
        at_most=20,
    )
    report.figure("replica Lambda-semantics overhead (replica - bare)", fx - bare, "µs")
    report.figure(
        "replica CPU per Invoke API call (/_fx/invoke)",
        median["fx_runtime", "invoke c16"],
        "µs",
        reference=median["bare", "invoke c16"],
        reference_name="uvloop+httptools fixed reply",
    )


def fork_to_ready(env: dict, tmp: Path, count: int = 20) -> None:
    """Spawn-to-ready through the zygote; as root also through a sandboxed zygote, spawns alternating."""
    zygotes = {"plain": _zygote(tmp, [])}
    sandbox: dict | None = None
    if os.geteuid() == 0:
        tmp.chmod(0o755)  # the code (LAMBDA_TASK_ROOT) must be readable by the function's uid
        (tmp / "run" / "fn").mkdir(parents=True)
        config = {"run_dir": str(tmp / "run"), "cgroup_parent": f"fx-bench-{os.getpid()}"}
        zygotes["sandboxed"] = _zygote(tmp, ["--sandbox"])
        assert zygotes["sandboxed"].stdin is not None and zygotes["sandboxed"].stdout is not None
        zygotes["sandboxed"].stdin.write(json.dumps(config).encode() + b"\n")
        zygotes["sandboxed"].stdin.flush()
        json.loads(zygotes["sandboxed"].stdout.readline())  # its report on what this host allows
        sandbox = {"uid": 100999, "gid": 100999, "private_dir": str(tmp / "run" / "fn"), "memory_mb": 128}
    walls: dict[str, list[float]] = {name: [] for name in zygotes}
    inits: dict[str, list[float]] = {name: [] for name in zygotes}
    try:
        for i in range(count):
            for name, zygote in zygotes.items():
                assert zygote.stdin is not None and zygote.stdout is not None
                time.sleep(0.05)  # what a zygote does after a spawn (a new spare) is not the next spawn's cost
                started = time.perf_counter()
                command = {"op": "spawn", "id": f"r{i}", "env": env, "log": str(tmp / "zygote.log")}
                if name == "sandboxed":
                    command["sandbox"] = sandbox
                zygote.stdin.write((json.dumps(command) + "\n").encode())
                zygote.stdin.flush()
                while True:
                    event = json.loads(zygote.stdout.readline())
                    if event["event"] == "ready":
                        walls[name].append((time.perf_counter() - started) * 1000)
                        inits[name].append(event["init_ms"])
                        break
                    if event["event"] == "init_error":
                        raise RuntimeError(event)
    finally:
        for zygote in zygotes.values():
            assert zygote.stdin is not None
            zygote.stdin.close()
            zygote.wait(15)
    for name in zygotes:
        figures = {
            "zygote_spawns": count,
            "spawn_to_ready_ms_median": round(statistics.median(walls[name]), 2),
            "init_ms_median": round(statistics.median(inits[name]), 2),
        }
        print(json.dumps({"zygote": name, **figures}))


def _zygote(tmp: Path, args: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "fx_runtime.zygote", *args]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per server and path; the median counts")
    parser.add_argument("--before", type=Path, help="a checkout whose runtime is measured too, for before/after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "handler.py").write_text(HANDLER)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "_HANDLER": "handler.handler",
            "LAMBDA_TASK_ROOT": str(tmp),
            "FX_LISTEN": "127.0.0.1:0",
            "FX_REPLICA_TOKEN": TOKEN,
            "AWS_LAMBDA_FUNCTION_NAME": "bench",
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
        }
        replica_cpu(tmp, env, args.requests, args.rounds, args.before)
        fork_to_ready(env, tmp)


if __name__ == "__main__":
    main()
