"""Cold starts per runtime: is a function on another Python (its own zygote) as quick to start as one on the
controller's own (python3.11, the baseline, measured in the same run)?

Starts the real embedded platform, deploys COLD trivial functions per Python runtime this host has, and
prints for each runtime: the first call (for a runtime other than the controller's own, its zygote starts
then: that is the one-time cost), and the p50 / max cold start from zero of the others (request in to
response out), the runtimes taking turns call by call. Also how long finding the interpreters takes.

    .venv/bin/python -m bench.runtimes
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx
from fx import interpreters
from fx.platform import Platform

from bench.run import deploy

COLD = 10


def main() -> None:
    started = time.perf_counter()
    found = interpreters.discover()
    print(f"finding the interpreters: {(time.perf_counter() - started) * 1000:.0f} ms ({', '.join(found)})")
    runtimes = list(found)
    with tempfile.TemporaryDirectory(prefix="fx-bench-") as tmp, Platform(Path(tmp) / "state", ports="free") as p:
        names = {r: [f"{r.replace('.', '')}-{i}" for i in range(COLD + 1)] for r in runtimes}
        for runtime, functions in names.items():
            manifest = "functions:\n" + "".join(f"  {n}: {{path: ., runtime: {runtime}}}\n" for n in functions)
            deploy(Path(tmp) / runtime, p, manifest)
        first: dict[str, float] = {}
        cold: dict[str, list[float]] = {r: [] for r in runtimes}
        with httpx.Client(timeout=60) as client:
            for i in range(COLD + 1):
                for runtime in runtimes if i % 2 else reversed(runtimes):  # none always goes first
                    time.sleep(0.1)
                    started = time.perf_counter()
                    client.get(f"{p.gateway_url}/function/{names[runtime][i]}/").raise_for_status()
                    ms = (time.perf_counter() - started) * 1000
                    if i == 0:
                        first[runtime] = ms
                    else:
                        cold[runtime].append(ms)
    own = interpreters.own_runtime()
    print(f"cold start from zero, {COLD} functions per runtime (baseline: {own}, the controller's own Python)")
    for runtime in runtimes:
        p50 = statistics.median(cold[runtime])
        print(
            f"{runtime:<11} first call {first[runtime]:7.1f} ms  cold p50 {p50:6.1f} ms"
            f"  max {max(cold[runtime]):6.1f} ms  vs baseline p50 {p50 - statistics.median(cold[own]):+.1f} ms"
        )


if __name__ == "__main__":
    main()
