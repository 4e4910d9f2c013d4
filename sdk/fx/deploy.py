"""A project's deploy: validate fx.yaml, build every function, upload the zips the server lacks, deploy each spec.

Nothing is sent before every function of the manifest is valid and built, so a bad
manifest never leaves a project half-deployed.
"""

from __future__ import annotations

import functools
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
    built: list[tuple[manifest.FunctionDef, build.Build | None]] = []
    for fn in functions:
        if fn.image:
            progress(f"{fn.name}: code is the image {fn.image}")
            built.append((fn, None))
        else:
            progress(f"{fn.name}: building {fn.code_dir}")
            said = functools.partial(_said, progress, fn.name)
            result = build.build(fn.code_dir, fn.runtime, manifest_path.resolve().parent, said)
            if result.ignored:
                said(result.ignored)
            built.append((fn, result))
    results = []
    for fn, result in built:
        code = deps = None
        if result is not None:
            code = _upload(client, fn.name, "code", result.code, progress)
            if result.dependencies:
                deps = _upload(client, fn.name, "dependencies", result.dependencies, progress)
        progress(f"{fn.name}: deploying")
        results.append(client.deploy(fn.spec(code, deps), traffic=traffic))
    return results


def _said(progress: Callable[[str], None], name: str, line: str) -> None:
    progress(f"{name}: {line}")


def _upload(client: Client, name: str, what: str, package: build.Package, progress: Callable[[str], None]) -> str:
    """Send a zip the server lacks; one it has (same digest) is neither zipped again nor sent. Its digest."""
    if client.has_artifact(package.digest):
        progress(f"{name}: {what} {short(package.digest)} is stored already")
    else:
        data = package.data()
        progress(f"{name}: uploading {what}, {human_size(len(data))}")
        client.upload_artifact(package.digest, data)
    return package.digest


def human_size(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 / 10 else f"{size / 1024:.1f} KB"


def describe_result(result: DeployResult) -> str:
    """The line a user reads: the words "version N" and "unchanged" are relied upon by scripts."""
    if result.created:
        return f"{result.function}: version {result.version} deployed ({short(result.digest)})"
    return f"{result.function}: unchanged, still version {result.version}"


def short(code: str) -> str:
    """A zip's digest cut to a readable prefix; an image reference as it is."""
    return code[: len("sha256:") + 12] + "…" if code.startswith("sha256:") else code
