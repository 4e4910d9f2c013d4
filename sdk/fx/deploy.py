"""A project's deploy: validate fx.yaml, build every zip, upload what the server lacks, deploy each spec.

Nothing is sent before every function of the manifest is valid and built, so a bad
manifest never leaves a project half-deployed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fx import build, manifest
from fx.client import Client
from fx.models import DeployResult

POLL_S = 0.1  # how often a waiting deploy asks for its versions' state
PROGRESS_EVERY_S = 5.0


def deploy(
    client: Client,
    manifest_path: Path,
    names: list[str] | None = None,
    progress: Callable[[str], None] = print,
    traffic: bool = True,
) -> list[DeployResult]:
    """traffic=False: each new version starts warm with no traffic, reachable only when pinned."""
    functions = manifest.select(manifest.load(manifest_path), names or [], str(manifest_path))
    built: list[tuple[manifest.FunctionDef, build.Artifact | None]] = []
    for fn in functions:
        if fn.image:
            progress(f"{fn.name}: code is the image {fn.image}")
            built.append((fn, None))
        else:
            progress(f"{fn.name}: building {fn.code_dir}")
            built.append((fn, build.build(fn.code_dir, fn.runtime)))
    results = []
    for fn, artifact in built:
        if artifact is not None and client.has_artifact(artifact.digest):
            progress(f"{fn.name}: code {short(artifact.digest)} is stored already")
        elif artifact is not None:
            progress(f"{fn.name}: uploading {len(artifact.data) / 1024:.1f} KB")
            client.upload_artifact(artifact.digest, artifact.data)
        progress(f"{fn.name}: deploying")
        results.append(client.deploy(fn.spec(artifact and artifact.digest), traffic=traffic))
    return results


def wait(
    client: Client, results: list[DeployResult], timeout: float, progress: Callable[[str], None] = print
) -> list[DeployResult]:
    """The results once the readiness gate has settled each Pending version (Ready or Failed), with the split
    that follows; a version still Pending after `timeout` s stays so."""
    results = list(results)
    pending = [i for i, r in enumerate(results) if r.state == "Pending"]
    for i in pending:
        progress(f"{results[i].function}: waiting for version {results[i].version} to initialise")
    started = time.monotonic()
    noted = started
    while pending:
        for i in list(pending):
            r = results[i]
            info = client.describe(r.function)
            version = next((v for v in info.versions if v.version == r.version), None)
            if version is None or version.state != "Pending":
                update = {"traffic": info.traffic}
                if version is not None:
                    update |= {"state": version.state, "init_error": version.init_error}
                results[i] = r.model_copy(update=update)
                pending.remove(i)
        now = time.monotonic()
        if not pending or now - started >= timeout:
            break
        if now - noted >= PROGRESS_EVERY_S:
            noted = now
            for r in (results[i] for i in pending):
                progress(f"{r.function}: version {r.version} still initialising ({now - started:.0f} s)")
        time.sleep(POLL_S)
    return results


def describe_result(result: DeployResult) -> str:
    """What a user reads: the words "version N", "deployed" and "unchanged" are relied upon by scripts.
    "deployed" only when the version is live (or Ready without traffic, when it was asked for none)."""
    fn, n = result.function, result.version
    if result.state == "Failed":
        lines = [f"{fn}: version {n} failed to initialise"]
        if e := result.init_error:
            lines = [f"{lines[0]}: {e.error_type}: {e.message}"]
            if e.stack_trace:
                lines += ["Traceback (most recent call last):", *(x.rstrip("\n") for x in e.stack_trace)]
        live = {v: p for v, p in result.traffic.items() if p and v != n}
        if live:
            stayed = ", ".join(f"version {v} ({p} %)" for v, p in sorted(live.items()))
            lines.append(f"{fn}: traffic stayed on {stayed}")
        else:
            lines.append(f"{fn}: no version serves it: deploy a fixed version")
        return "\n".join(lines)
    if result.state == "Pending":
        what = f"version {n} created ({short(result.digest)})" if result.created else f"unchanged, still version {n}"
        return f"{fn}: {what}, initialising: see `fx versions {fn}`"
    share = result.traffic.get(n, 0)
    if result.created:
        line = f"{fn}: version {n} deployed ({short(result.digest)})"
        if result.traffic and not share:
            line += f" with no traffic: call it pinned ({fn}@{n}), or make it live with `fx promote {fn} {n}`"
        return line
    line = f"{fn}: unchanged, still version {n}"
    if result.traffic and not share:
        others = {v: p for v, p in result.traffic.items() if p}
        line += (
            f"; {live_text(others)} of traffic; version {n} (this code) has none."
            f" Make it live with `fx promote {fn} {n}`"
        )
    return line


def live_text(traffic: dict[int, int]) -> str:
    """{3: 100} -> "version 3 has 100 %"; {3: 90, 4: 10} -> "version 3 has 90 %, version 4 has 10 %"."""
    return ", ".join(f"version {v} has {p} %" for v, p in sorted(traffic.items()))


def short(code: str) -> str:
    """A zip's digest cut to a readable prefix; an image reference as it is."""
    return code[: len("sha256:") + 12] + "…" if code.startswith("sha256:") else code
