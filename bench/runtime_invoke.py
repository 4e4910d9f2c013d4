"""Runtime hot path and cold start: CPU per invocation of one replica, and fork-to-ready via the zygote.

    python bench/runtime_invoke.py [--requests 20000]

Baseline measured in the same run: a bare uvloop + httptools server answering a fixed response, i.e. the
cost of HTTP alone; the replica's figure minus it is what Lambda semantics (event, context, logs,
watchdog, marshalling) cost. The load generator runs in its own process so only the server's CPU counts.
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

ROOT = Path(__file__).resolve().parent
HANDLER = "def handler(event, context):\n    return {'ok': True}\n"
BASELINE = """
import asyncio, httptools, uvloop
ANSWER = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 11\\r\\n\\r\\n{\\"ok\\":true}"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.p = httptools.HttpRequestParser(self)
    def data_received(self, d): self.p.feed_data(d)
    def on_message_complete(self): self.t.write(ANSWER)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    print(f"ready on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_endpoint(log: Path, proc: subprocess.Popen, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "ready on " in line:
                return line.split("ready on ", 1)[1].split()[0]
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        time.sleep(0.01)
    raise TimeoutError("server did not become ready")


def drive(pid: int, url: str, concurrency: int, requests: int) -> dict:
    loadgen = [sys.executable, str(ROOT / "loadgen.py"), "--url", url, "--method", "POST", "--body", "{}"]
    subprocess.run([*loadgen, "--concurrency", str(concurrency), "--requests", "500"], check=True, capture_output=True)
    before = cpu_seconds(pid)
    out = subprocess.run(
        [*loadgen, "--concurrency", str(concurrency), "--requests", str(requests)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out)
    result["cpu_us_per_request"] = round((cpu_seconds(pid) - before) * 1e6 / max(result["requests"], 1), 1)
    return result


def measure_server(name: str, argv: list[str], env: dict, tmp: Path, path: str, requests: int) -> None:
    log = tmp / f"{name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        endpoint = wait_for_endpoint(log, proc)
        for concurrency in (16, 64):
            result = drive(proc.pid, f"http://{endpoint}{path}", concurrency, requests)
            print(json.dumps({"server": name, "concurrency": concurrency, **result}))
    finally:
        proc.terminate()
        proc.wait(10)


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
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "handler.py").write_text(HANDLER)
        (tmp / "baseline.py").write_text(BASELINE)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "_HANDLER": "handler.handler",
            "LAMBDA_TASK_ROOT": str(tmp),
            "FX_LISTEN": "127.0.0.1:0",
            "AWS_LAMBDA_FUNCTION_NAME": "bench",
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
        }
        measure_server("baseline-httptools", [sys.executable, str(tmp / "baseline.py")], env, tmp, "/", args.requests)
        measure_server("fx_runtime", [sys.executable, "-m", "fx_runtime"], env, tmp, "/_fx/invoke", args.requests)
        fork_to_ready(env, tmp)


if __name__ == "__main__":
    main()
