"""A SAM template's deploy: its functions as fx.yaml's (all or nothing), then AutoPublishAlias and gradual
traffic shifting (DeploymentPreference) once each new version is Ready."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fx import deploy, manifest, sam
from fx.client import Client
from fx.errors import FxError
from fx.models import DeployResult, PromoteSpec


def deploy_template(
    client: Client, path: Path, names: list[str], progress: Callable[[str], None], traffic: bool
) -> tuple[list[DeployResult], sam.Template]:
    template = sam.load(path)
    functions = manifest.select(template.functions, names, str(path))
    for note in template.notes:
        progress(note)
    # A gradual deploy starts the new version with no traffic, then steps; a new function has nothing to shift from.
    shifts = {fn.name: traffic and not (template.rollouts[fn.name].step and _live(client, fn.name)) for fn in functions}
    apis = [] if names else template.apis  # some functions only: their routes may be to the others
    return deploy.deploy_functions(client, path, functions, progress, shifts, apis), template


def finish(
    client: Client, template: sam.Template, results: list[DeployResult], progress: Callable[[str], None]
) -> None:
    """Each Ready version: its alias moved to it, and its stepped promote started when it took no traffic."""
    for result in results:
        rollout = template.rollouts[result.function]
        if result.state != "Ready":
            continue
        if rollout.step and result.created and not result.traffic.get(result.version):
            spec = PromoteSpec(version=result.version, step=rollout.step, interval=rollout.interval_s)
            client.promote(result.function, spec)
            every = f"{rollout.interval_s / 60:g} min"
            progress(f"{result.function}: shifting traffic to version {result.version}, {rollout.step} % every {every}")
        if rollout.alias:
            client.set_alias(result.function, rollout.alias, result.version)
            progress(f"{result.function}: alias {rollout.alias} -> version {result.version}")


def _live(client: Client, name: str) -> bool:
    try:
        return any(client.describe(name).traffic.values())
    except FxError as exc:
        if exc.status == 404:
            return False
        raise
