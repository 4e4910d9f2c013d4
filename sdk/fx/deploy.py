"""A project's deploy: validate fx.yaml, build every function, upload the zips the server lacks, have the
server validate every spec (its dry run), then deploy each; then the same for its APIs.

Nothing is deployed before every function of the manifest is valid locally, built, and accepted by the server's
dry run, so neither a bad manifest nor a refusal the server alone can see (a stream that does not exist, a
missing secret) leaves a project half-deployed. The APIs are dry-run before any function is deployed too (a
route conflict refuses the whole deploy), a route's function being one the deploy is about to create; then once
more after the functions, and only when all pass is each one stored.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

from fx import build, manifest
from fx.api_models import ApiSpec
from fx.cli.common import short
from fx.client import Client
from fx.errors import FxError, InputError
from fx.models import DeployResult, FunctionSpec


class DeployRefused(InputError):
    """The server's dry run refused functions of the manifest: nothing was deployed."""


POLL_S = 0.1  # how often a waiting deploy asks for its versions' state
PROGRESS_EVERY_S = 5.0


def deploy(
    client: Client,
    manifest_path: Path,
    names: list[str] | None = None,
    progress: Callable[[str], None] = print,
    traffic: bool = True,
) -> list[DeployResult]:
    """traffic=False: each new version starts warm with no traffic, reachable only when pinned. The APIs of the
    manifest are deployed after its functions, unless `names` picks some functions only."""
    project = manifest.load_project(manifest_path)
    functions = manifest.select(project.functions, names or [], str(manifest_path))
    apis = [] if names else project.apis
    return deploy_functions(client, manifest_path, functions, progress, {fn.name: traffic for fn in functions}, apis)


def deploy_functions(
    client: Client,
    manifest_path: Path,
    functions: list[manifest.FunctionDef],
    progress: Callable[[str], None],
    traffic: dict[str, bool],
    apis: list[ApiSpec] | None = None,
) -> list[DeployResult]:
    """Build and upload every function, have the server validate every one (and every API), then deploy each
    (`traffic` by name), then the APIs."""
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
            code = upload(client, fn.name, "code", result.code, progress)
            if result.dependencies:
                deps = upload(client, fn.name, "dependencies", result.dependencies, progress)
        specs.append(fn.spec(code, deps))
    validate(client, manifest_path, specs, traffic, progress)
    apis = apis or []
    validate_apis(client, manifest_path, apis, progress, deploying=[spec.name for spec in specs])
    results = []
    for spec in specs:
        progress(f"{spec.name}: deploying")
        results.append(client.deploy(spec, traffic=traffic[spec.name]))
    if apis:
        validate_apis(client, manifest_path, apis, progress)
        for api in apis:
            stored = client.put_api(api)
            hosts = ", ".join(stored.hosts) or "any host"
            progress(
                f"API {stored.name}: {len(stored.routes)} route{'s' if len(stored.routes) != 1 else ''} on {hosts}"
            )
    return results


def validate_apis(
    client: Client,
    manifest_path: Path,
    apis: list[ApiSpec],
    progress: Callable[[str], None],
    deploying: list[str] | None = None,
) -> None:
    """The server's dry run of every API; DeployRefused naming each refusal at its fx.yaml line. `deploying`:
    functions about to be deployed, whose absence is no refusal yet; None: the functions are deployed already."""
    if not apis:
        return
    progress(f"validating {len(apis)} API{'s' if len(apis) != 1 else ''} with the server")
    problems = []
    for api in apis:
        try:
            client.put_api(api, dry_run=True, deploying=deploying)
        except FxError as exc:
            if not 400 <= exc.status < 500 or exc.status in (401, 403):
                raise
            message = exc.message.removeprefix(f"{exc.field}: ") if exc.field else exc.message
            problems.append(f"{manifest.locate_api(manifest_path, api.name, exc.field)}: {exc.code}: {message}")
    if problems:
        done = "nothing was deployed" if deploying is not None else "the functions were deployed, no API was changed"
        raise DeployRefused("\n".join([*problems, f"{done}: the server refused {len(problems)} API(s)"]))


def validate(
    client: Client,
    manifest_path: Path,
    specs: list[FunctionSpec],
    traffic: dict[str, bool],
    progress: Callable[[str], None],
) -> None:
    """The server's dry run of every spec; DeployRefused naming each refusal at its fx.yaml line.

    Only refusals of the specs are collected: a wrong token, a server failure or an unreachable gateway is
    raised as it comes."""
    if not specs:  # a project of APIs alone
        return
    progress(f"validating {len(specs)} function{'s' if len(specs) != 1 else ''} with the server")
    problems = []
    for spec in specs:
        try:
            client.validate(spec, traffic=traffic[spec.name])
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


def upload(client: Client, name: str, what: str, package: build.Package, progress: Callable[[str], None]) -> str:
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
