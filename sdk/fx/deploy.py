"""A project's deploy: validate fx.yaml, build every zip, upload what the server lacks, deploy each spec.

Nothing is sent before every function of the manifest is valid and built, so a bad
manifest never leaves a project half-deployed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fx import build, manifest
from fx.client import Client
from fx.models import DeployResult


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


def describe_result(result: DeployResult) -> str:
    """The line a user reads: the words "version N" and "unchanged" are relied upon by scripts."""
    if result.created:
        return f"{result.function}: version {result.version} deployed ({short(result.digest)})"
    return f"{result.function}: unchanged, still version {result.version}"


def short(code: str) -> str:
    """A zip's digest cut to a readable prefix; an image reference as it is."""
    return code[: len("sha256:") + 12] + "…" if code.startswith("sha256:") else code
