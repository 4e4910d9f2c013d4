"""The map benchmark of issue 16: f.map() of a tiny function by value against the same work through `fx invoke` in a
shell-style loop, and the SDK's overhead per task (pickling both ways, base64, the shim) against plain JSON invokes
of an equivalent handler, sequential and at the map's concurrency, in the same run on the same platform.

    .venv/bin/python -m bench.map [--tasks 2000]     (also the last part of `make bench`)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fx
from fx.client import Client
from fx.platform import Platform

FX = str(Path(sys.executable).with_name("fx"))
SCALE = {"max": 4, "concurrency": 2}
PLAIN = "def handler(event, context):\n    return event['x'] + 1\n"
CLI_CALLS = 30  # `fx invoke` starts a Python each time: a few dozen say its rate
SEQUENTIAL = 300


def report(platform: Platform, root: Path, tasks: int = 2000) -> None:
    env = {**os.environ, "FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token}
    with Client(platform.gateway_url, platform.token) as client:
        inc = fx.function(name="map-inc", scale=SCALE, client=client)(lambda x: x + 1)
        inc.deploy()
        plain = root / "map-plain"
        plain.mkdir(parents=True)
        (plain / "handler.py").write_text(PLAIN)
        (plain / "fx.yaml").write_text(f"functions:\n  map-plain:\n    scale: {SCALE}\n".replace("'", ""))
        subprocess.run([FX, "deploy"], cwd=plain, env=env, check=True, capture_output=True, timeout=300)
        concurrency = inc.default_concurrency()
        inc.map(range(200), progress=False)  # warm: every replica started, connections open
        invoke_plain = _pool(client, concurrency)
        invoke_plain(range(200))

        started = time.perf_counter()
        assert inc.map(range(tasks), progress=False) == [x + 1 for x in range(tasks)]
        map_s = time.perf_counter() - started
        started = time.perf_counter()
        invoke_plain(range(tasks))
        plain_s = time.perf_counter() - started

        started = time.perf_counter()
        for x in range(CLI_CALLS):
            done = subprocess.run([FX, "invoke", "map-plain", "-d", f'{{"x": {x}}}'], env=env, capture_output=True)
            assert done.returncode == 0 and done.stdout.strip() == str(x + 1).encode(), done.stderr
        cli_s = (time.perf_counter() - started) / CLI_CALLS

        remote_ms = _each_ms(lambda x: inc.remote(x))
        raw_ms = _each_ms(lambda x: client.invoke("map-plain", {"x": x}))
    print(f"-- f.map() of {tasks} tiny tasks, concurrency {concurrency} (scale {SCALE}), {os.cpu_count()} CPUs")
    print(f"{'f.map()':<34} {tasks / map_s:8.0f} tasks/s   ({map_s:.1f} s)")
    print(f"{'`fx invoke` in a loop':<34} {1 / cli_s:8.1f} tasks/s   (ratio {cli_s * tasks / map_s:.0f}x)")
    print(f"{'JSON invokes, same threads':<34} {tasks / plain_s:8.0f} tasks/s   (map takes {map_s / plain_s:.2f}x)")
    print(
        f"{'overhead per task, one at a time':<34} {(remote_ms - raw_ms) * 1000:8.0f} µs"
        f"   (f.remote {remote_ms:.2f} ms, client.invoke {raw_ms:.2f} ms)"
    )


def _pool(client: Client, concurrency: int):
    def run(xs: range) -> None:
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(lambda x: client.invoke("map-plain", {"x": x}), xs))
        assert results == [x + 1 for x in xs]

    return run


def _each_ms(call) -> float:
    started = time.perf_counter()
    for x in range(SEQUENTIAL):
        call(x)
    return (time.perf_counter() - started) * 1000 / SEQUENTIAL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per map")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fx-bench-map-") as tmp, Platform(Path(tmp) / "state", ports="free") as p:
        report(p, Path(tmp), args.tasks)


if __name__ == "__main__":
    main()
