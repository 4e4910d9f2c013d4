"""The deploy benchmark of issue 19: a function with ~28 MB of zipped dependencies (pandas), deployed
four times (first, unchanged, code-only change, one added requirement) the way `fx deploy` does it now
(code zip + dependency layer, digests remembered, uploads only of what the server lacks), and the way it
did before (one zip of code and dependencies, made on every deploy to learn its digest), in the same run
against the same platform. After the first deploy and the code change: the first call (a cold start that
extracts what is new and imports pandas) and that replica's Init Duration.

pip's cache is filled first (untimed), so neither path pays PyPI downloads the other one saved it.

    .venv/bin/python -m bench.deploy     (also the last part of `make bench`)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fx import build, deploy, ignore, manifest
from fx.client import Client
from fx.platform import Platform

REQUIREMENTS = ["pandas"]
ADDED = "idna"  # small, no dependencies of its own, not one of pandas'
HANDLER = "import pandas\n\n\ndef handler(event, context):\n    return {{'statusCode': 200, 'body': '{tag}'}}\n"
STEPS = ("first deploy", "unchanged", "code-only change", "one added requirement")
Deploy = Callable[[Client, Path], None]


def single_zip_deploy(client: Client, manifest_path: Path) -> None:
    """The deploy before issue 19: code and installed dependencies in one zip, zipped to learn its digest."""
    [fn] = manifest.load(manifest_path)
    files = ignore.select(fn.code_dir, top_excludes=build.EXCLUDED_TOP_FILES).files
    requirements = fn.code_dir / "requirements.txt"
    files = {**build._walk(build.dependencies(requirements, fn.runtime)), **files}
    data = build._zip(files, build.CODE_LEVEL)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if not client.has_artifact(digest):
        client.upload_artifact(digest, data)
    client.deploy(fn.spec(digest))


def layered_deploy(client: Client, manifest_path: Path) -> None:
    deploy.deploy(client, manifest_path, progress=lambda line: None)


def run_step(client: Client, platform: Platform, root: Path, name: str, how: Deploy, step: str) -> dict[str, float]:
    """Wall time of one step of one path, which has its own fx cache (empty at first, as on a new machine)."""
    project = root / name
    if step == STEPS[0]:
        project.mkdir(parents=True)
        (project / "fx.yaml").write_text(f"functions:\n  {name}:\n    timeout: 60\n    memory: 1024\n")
        (project / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n")
        (project / "handler.py").write_text(HANDLER.format(tag="v1"))
    elif step == "code-only change":
        (project / "handler.py").write_text(HANDLER.format(tag="v2"))
    elif step == "one added requirement":
        (project / "requirements.txt").write_text("\n".join([*REQUIREMENTS, ADDED]) + "\n")
    os.environ["FX_CACHE_DIR"] = str(root / f"cache-{name}")
    started = time.perf_counter()
    how(client, project / "fx.yaml")
    times = {step: time.perf_counter() - started}
    if step in ("first deploy", "code-only change"):
        seen = len(inits(platform, name))
        times[f"{step}: first call"] = first_call(platform, name)
        times[f"{step}: its init"] = next_init(platform, name, seen)
    return times


def first_call(platform: Platform, name: str) -> float:
    started = time.perf_counter()
    httpx.get(f"{platform.gateway_url}/function/{name}/", timeout=120).raise_for_status()
    return time.perf_counter() - started


def inits(platform: Platform, name: str) -> list[float]:
    """The Init Durations (code ready on disk, pandas imported) of the function's REPORT lines, in seconds."""
    log = platform.state_dir / "logs" / f"{name}.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [float(line.split("Init Duration: ")[1].split(" ms")[0]) / 1000 for line in lines if "Init Duration" in line]


def next_init(platform: Platform, name: str, seen: int) -> float:
    """The Init Duration of the cold start just made: its REPORT line may follow the answer by a moment."""
    deadline = time.monotonic() + 10
    while len(found := inits(platform, name)) <= seen and time.monotonic() < deadline:
        time.sleep(0.05)
    return found[-1]


def report(platform: Platform, root: Path) -> None:
    pip = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(root / "warm")]
    subprocess.run([*pip, *REQUIREMENTS, ADDED], check=True)
    saved = os.environ.get("FX_CACHE_DIR")
    paths: dict[str, Deploy] = {"layered": layered_deploy, "single-zip": single_zip_deploy}
    times: dict[str, dict[str, float]] = {name: {} for name in paths}
    try:
        with Client(platform.gateway_url, platform.token, timeout=300) as client:
            for i, step in enumerate(STEPS):  # step by step, taking turns to go first: both see the same load
                for name, how in list(paths.items())[:: 1 if i % 2 else -1]:
                    times[name].update(run_step(client, platform, root, name, how, step))
    finally:
        if saved is None:
            os.environ.pop("FX_CACHE_DIR", None)
        else:
            os.environ["FX_CACHE_DIR"] = saved
    layer = min((root / "cache-layered" / "deps").glob("*.zip"), key=lambda p: p.stat().st_size)
    installed = sum(p.stat().st_size for p in build._walk(layer.with_suffix("")).values())
    print(
        f"-- deploy of a function needing {' '.join(REQUIREMENTS)} ({installed / 2**20:.0f} MB installed, a"
        f" {layer.stat().st_size / 2**20:.1f} MB layer), wall time, {os.cpu_count()} CPUs (then + {ADDED})"
    )
    print(f"{'':<40} {'layered':>9} {'one zip':>9} {'ratio':>6}")
    calls = [f"{STEPS[0]}: first call", f"{STEPS[0]}: its init"]
    changed = [f"{STEPS[2]}: first call", f"{STEPS[2]}: its init"]
    for step in [STEPS[0], *calls, *STEPS[1:3], *changed, STEPS[3]]:
        new, old = times["layered"][step], times["single-zip"][step]
        print(f"{step:<40} {new:8.2f}s {old:8.2f}s {old / new:6.1f}x")


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="fx-bench-deploy-") as tmp,
        Platform(Path(tmp) / "state", ports="free") as platform,
    ):
        report(platform, Path(tmp))


if __name__ == "__main__":
    main()
