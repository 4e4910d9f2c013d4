"""Cold starts: a request to a function at zero, in to 200 out through the gateway, with function templates.

Three platforms run side by side (the real embedded platform, each in its own state directory), the functions
deployed with `snap_start: true`: templates on, templates off (FX_TEMPLATES_MAX=0: every cold start forks the zygote
and imports the handler, as a function without snap_start does), and --sandbox off. `--functions` functions, each
deployed then left to scale to zero (2 s idle), are called once each, the platforms alternating call by call so they
share the host's load. The reference is the floor of a cold start: the zygote's own fork of a template, straight to
the replica (spawn command in, first 200 out, no controller nor gateway), measured in this run. Last, a heavy-init
function (2 s of sleep at import, as a model load): its cold starts with templates, from the second start on,
against its first start (which has to run the init). And the p99 with the host loaded: each function called cold
once more on the templates platform while one busy-looping process per CPU runs (each bounded to 60 s), against
the quiet p99 of the same run.

    .venv/bin/python -m bench.cold_start [--functions 40]    (make bench runs it through bench/run.py)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from fx.client import Client
from fx.models import FunctionInfo
from fx.platform import Platform

from bench.report import figure

FX = str(Path(sys.executable).with_name("fx"))
HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
HEAVY = "import time\ntime.sleep(2)  # a model load\n" + HANDLER
IDLE = "{path: ., snap_start: true, scale: {idle_timeout: 2}}"  # templates; back at zero 2 s after its last call
HEAVY_STARTS = 3


def deploy(project: Path, platform: Platform, manifest: str, handler: str = HANDLER) -> None:
    """`fx deploy` of `manifest` with `handler` as handler.py."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "handler.py").write_text(handler)
    (project / "fx.yaml").write_text(manifest)
    env = {**os.environ, "FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token}
    subprocess.run([FX, "deploy"], cwd=project, env=env, check=True, capture_output=True, timeout=300)


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


@contextlib.contextmanager
def platform_with(state_dir: Path, **env: str) -> Iterator[Platform]:
    """A platform whose controller runs with these environment variables (FX_SANDBOX, FX_TEMPLATES_MAX)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        platform = Platform(state_dir, ports="free")
        platform.start()
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value
    try:
        yield platform
    finally:
        platform.stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fork_reference(root: Path, samples: int) -> list[float]:
    """ms from a spawn command to the first 200 of a replica forked from a ready template (no gateway)."""
    code = root / "fork-code"
    code.mkdir()
    (code / "handler.py").write_text(HANDLER)
    env = {"_HANDLER": "handler.handler", "LAMBDA_TASK_ROOT": str(code), "FX_LISTEN": "127.0.0.1:0"}
    log = str(root / "fork.log")
    zygote = subprocess.Popen(
        [sys.executable, "-m", "fx_runtime.zygote"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root
    )
    assert zygote.stdin and zygote.stdout

    def send(command: dict) -> None:
        zygote.stdin.write((json.dumps(command) + "\n").encode())  # type: ignore[union-attr]
        zygote.stdin.flush()  # type: ignore[union-attr]

    def event() -> dict:
        return json.loads(zygote.stdout.readline())  # type: ignore[union-attr]

    times = []
    try:
        send({"op": "template", "key": "ref", "env": env, "log": log})
        if event().get("state") != "ready":
            raise SystemExit("the reference template did not start")
        with httpx.Client(timeout=10) as client:
            for i in range(samples):
                started = time.perf_counter()
                send(
                    {
                        "op": "spawn",
                        "id": f"r{i}",
                        "env": env,
                        "log": log,
                        "template": {"key": "ref", "listen": env["FX_LISTEN"]},
                    }
                )
                spawned, ready = event(), event()
                client.post(f"http://{ready['endpoint']}/_fx/invoke", content=b"{}").raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
                os.kill(spawned["pid"], 15)
                event()  # its exit
                time.sleep(0.05)
    finally:
        zygote.kill()
        zygote.wait()
    return times


def cold_calls(platforms: dict[str, Platform], names: list[str]) -> dict[str, list[float]]:
    """One call to each function at zero on each platform, alternating which goes first."""
    times: dict[str, list[float]] = {label: [] for label in platforms}
    with httpx.Client(timeout=30) as client:
        for i, name in enumerate(names):
            order = list(platforms.items())
            for label, platform in order if i % 2 else reversed(order):
                time.sleep(0.1)  # what one platform does after a cold start is not the other's cost
                started = time.perf_counter()
                client.get(f"{platform.gateway_url}/function/{name}/").raise_for_status()
                times[label].append((time.perf_counter() - started) * 1000)
    return times


BURN_S = 60.0  # a burner's own bound: it stops by itself even if this bench dies


@contextlib.contextmanager
def burning(cpus: int) -> Iterator[None]:
    """One busy-looping process per CPU (as loaded a host as it gets), each ending within BURN_S."""
    code = f"import time\nend = time.monotonic() + {BURN_S}\nwhile time.monotonic() < end:\n    pass\n"
    burners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(cpus)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def loaded_calls(platform: Platform, names: list[str]) -> list[float]:
    """One call to each function at zero while every CPU of the host is busy with a burner."""
    at_zero(platform, names)
    times = []
    with httpx.Client(timeout=30) as client, burning(os.cpu_count() or 1):
        for name in names:
            time.sleep(0.1)
            started = time.perf_counter()
            client.get(f"{platform.gateway_url}/function/{name}/").raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


def heavy_starts(platform: Platform, root: Path) -> tuple[float, list[float]]:
    """The heavy-init function: its first start (through the deploy's readiness gate, which runs the init), then
    HEAVY_STARTS cold starts from zero through the gateway."""
    started = time.perf_counter()
    deploy(root / "heavy", platform, f"functions:\n  heavy: {IDLE}\n", HEAVY)
    first = (time.perf_counter() - started) * 1000
    times = []
    with httpx.Client(timeout=30) as client:
        for _ in range(HEAVY_STARTS):
            at_zero(platform, ["heavy"])
            started = time.perf_counter()
            client.get(f"{platform.gateway_url}/function/heavy/").raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return first, times


def report(root: Path, functions: int) -> None:
    names = [f"cold-{i}" for i in range(functions)]
    manifest = "functions:\n" + "".join(f"  {n}: {IDLE}\n" for n in names)
    fork = fork_reference(root, 20)
    with (
        platform_with(root / "state-templates") as on,
        platform_with(root / "state-classic", FX_TEMPLATES_MAX="0") as classic,
        platform_with(root / "state-off", FX_SANDBOX="off") as off,
    ):
        platforms = {"templates": on, "no templates": classic, "sandbox off": off}
        for platform in platforms.values():
            deploy(root / "cold", platform, manifest)
        for platform in platforms.values():
            at_zero(platform, names)
        times = cold_calls(platforms, names)
        loaded = loaded_calls(on, names)
        sandbox = "sandbox on" if on.protections().startswith("function sandbox: ON") else "sandbox OFF (not root)"
        first, heavy = heavy_starts(on, root)
    fork_p50 = statistics.median(fork)
    p50 = {label: statistics.median(t) for label, t in times.items()}
    p99 = {label: percentile(t, 0.99) for label, t in times.items()}
    print(f"-- cold start from zero through the gateway, {functions} functions, {sandbox}:")
    for label, t in times.items():
        print(f"   {label:<14} p50 {p50[label]:6.1f} ms  p90 {percentile(t, 0.9):6.1f} ms  p99 {p99[label]:6.1f} ms")
    loaded_p50, loaded_p99 = statistics.median(loaded), percentile(loaded, 0.99)
    print(f"   templates, host loaded (a CPU burner per core): p50 {loaded_p50:.1f} ms, p99 {loaded_p99:.1f} ms")
    print(f"   fork of a template → first 200, straight to the replica: p50 {fork_p50:.2f} ms, max {max(fork):.2f} ms")
    ref = "fork→200 (no gateway)"
    figure(
        "cold start through the gateway p50", p50["templates"], "ms", reference=fork_p50, reference_name=ref, at_most=5
    )
    figure(
        "cold start through the gateway p99",
        p99["templates"],
        "ms",
        reference=percentile(fork, 0.99),
        reference_name=ref,
        at_most=15,
    )
    figure(
        "cold start p99, host loaded (a burner per CPU)",
        loaded_p99,
        "ms",
        reference=p99["templates"],
        reference_name="quiet p99 (same run)",
        at_most=30,
    )
    figure(
        "cold start p50, templates vs none (before)",
        p50["templates"],
        "ms",
        reference=p50["no templates"],
        reference_name="no templates",
    )
    figure(
        "cold start p50, sandbox cost",
        p50["templates"],
        "ms",
        reference=p50["sandbox off"],
        reference_name="--sandbox off",
    )
    figure(
        "heavy init (2 s) cold start p50, 2nd start on",
        statistics.median(heavy),
        "ms",
        reference=first,
        reference_name="1st start (deploy)",
        at_most=50,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=40, help="functions called cold on each platform")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fx-cold-") as tmp:
        report(Path(tmp), args.functions)


if __name__ == "__main__":
    main()
