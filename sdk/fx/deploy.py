"""A project's deploy: validate fx.yaml, build every function, upload the zips the server lacks, have the
server validate every spec (its dry run), then deploy each.

Nothing is deployed before every function of the manifest is valid locally, built, and accepted by the server's
dry run, so neither a bad manifest nor a refusal the server alone can see (a stream that does not exist, a
missing secret) leaves a project half-deployed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from fx import build, manifest
from fx.client import Client
from fx.errors import FxError, InputError
from fx.models import DeployResult, FunctionSpec


class DeployRefused(InputError):
    """The server's dry run refused functions of the manifest: nothing was deployed."""


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
    specs = []
    for fn, result in built:
        code = deps = None
        if result is not None:
            code = _upload(client, fn.name, "code", result.code, progress)
            if result.dependencies:
                deps = _upload(client, fn.name, "dependencies", result.dependencies, progress)
        specs.append(fn.spec(code, deps))
    validate(client, manifest_path, specs, traffic, progress)
    results = []
    for spec in specs:
        progress(f"{spec.name}: deploying")
        results.append(client.deploy(spec, traffic=traffic))
    return results


def validate(
    client: Client, manifest_path: Path, specs: list[FunctionSpec], traffic: bool, progress: Callable[[str], None]
) -> None:
    """The server's dry run of every spec; DeployRefused naming each refusal at its fx.yaml line.

    Only refusals of the specs are collected: a wrong token, a server failure or an unreachable gateway is
    raised as it comes."""
    progress(f"validating {len(specs)} function{'s' if len(specs) != 1 else ''} with the server")
    problems = []
    for spec in specs:
        try:
            client.validate(spec, traffic=traffic)
        except FxError as exc:
            if not 400 <= exc.status < 500 or exc.status in (401, 403):
                raise
            message = exc.message.removeprefix(f"{exc.field}: ") if exc.field else exc.message
            problems.append(f"{manifest.locate(manifest_path, spec.name, exc.field)}: {exc.code}: {message}")
    if problems:
        refused = f"{len(problems)} of {len(specs)}"
        raise DeployRefused("\n".join([*problems, f"nothing was deployed: the server refused {refused} functions"]))


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
