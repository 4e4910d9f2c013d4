"""`fx ls`, `fx describe`, `fx versions` and `fx rm`: what is deployed, and removing it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fx.cli.common import (
    EXIT_OK,
    OUTPUT,
    AddCommand,
    client,
    clock,
    fetch,
    local_time,
    print_json,
    print_table,
    segment,
    short,
    traffic_text,
)

if TYPE_CHECKING:
    from fx.models import ScaleSpec, TriggerSpec


def cmd_ls(args: argparse.Namespace) -> int:
    functions = fetch(args, "/system/functions")  # FunctionInfo's JSON, shown as it came (a light read)
    if args.output == "json":
        print_json(functions)
        return EXIT_OK
    rows = [["NAME", "LATEST", "TRAFFIC", "READY", "STATUS"]]
    for fn in functions:  # the fields with a default in FunctionInfo may be missing from an older server's
        ready = sum(v.get("replicas_ready", 0) for v in fn["versions"])
        traffic = {int(v): p for v, p in fn["traffic"].items()}
        rows.append([fn["name"], str(fn["latest"]), traffic_text(traffic), str(ready), fn.get("status", "Ready")])
    print_table(rows)
    return EXIT_OK


def _alias(alias: str, version: int, split: dict[int, int] | None) -> str:
    """An alias as `describe` shows it; one with its own split (the Lambda API's RoutingConfig) shows it."""
    return f"{alias} → version {version}" + (f" ({traffic_text(split)})" if split else "")


def cmd_describe(args: argparse.Namespace) -> int:
    with client(args) as fx:
        fn = fx.describe(args.name)
        url = f"{fx.gateway}/function/{fn.name}/"
    if args.output == "json":
        print_json(fn)
        return EXIT_OK
    # The configuration shown is the serving one: the version with the most traffic (else the latest).
    shown = max(fn.versions, key=lambda v: (v.traffic, v.version))
    spec = shown.spec
    print(f"name:     {fn.name}")
    print(f"status:   {fn.status}")
    print(f"latest:   version {fn.latest}")
    print(f"traffic:  {traffic_text(fn.traffic)}" + (f" (sticky by {fn.sticky})" if fn.sticky else ""))
    print(f"url:      {url}")
    print(f"config:   version {shown.version} ({short(shown.config_digest)})")
    print(f"memory:   {spec.memory} MB")
    print(f"timeout:  {spec.timeout:g} s")
    print(f"scale:    {scale_text(spec.scale)}")
    print(f"env:      {', '.join(f'{k}=****' for k in sorted(spec.env)) or '-'}")  # values never shown
    print(f"triggers: {'; '.join(trigger_text(t) for t in spec.triggers) or '-'}")
    if secrets := spec.secrets:
        print(f"secrets:  {', '.join(secrets)}")
    if fn.aliases:
        print("aliases:  " + ", ".join(_alias(a, v, fn.alias_traffic.get(a)) for a, v in sorted(fn.aliases.items())))
    if fn.previous:
        print(f"rollback: {traffic_text(fn.previous)}")
    if r := fn.rollout:
        canary = f", rolls back above {r.max_error_rate:.1%} errors" if r.max_error_rate is not None else ""
        next_at = clock(r.next_step_at)
        print(
            f"rollout:  version {r.version} at {r.weight}%, +{r.step}% every {r.interval:g} s"
            f" (next step {next_at}){canary}"
        )
    if fn.last_rollout:
        print(f"last rollout: {fn.last_rollout}")
    print()
    rows = [["VERSION", "STATE", "DIGEST", "CONFIG", "CREATED", "TRAFFIC", "READY", "STARTING", "DESIRED"]]
    rows[0] += ["REQUESTS", "ERRORS", "HANDLER"]
    for v in fn.versions:
        created = local_time(v.created_at)
        desired = f"{v.replicas_desired} (panic)" if v.panic else v.replicas_desired
        counts = [f"{v.traffic}%", v.replicas_ready, v.replicas_starting, desired, v.requests, v.errors]
        digests = [short(v.digest), short(v.config_digest)]
        rows.append([str(v.version), v.state, *digests, created, *map(str, counts), v.spec.handler])
    print_table(rows)
    for v in fn.versions:
        if e := v.init_error:
            print(f"version {v.version} failed to initialise: {e.error_type}: {e.message}")
    return EXIT_OK


def scale_text(scale: ScaleSpec) -> str:
    """The scale spec in a line: bounds, targets, and the autoscaling knobs set (the others are the controller's)."""
    per_replica = f"{scale.concurrency} in flight" if scale.concurrency else "unlimited concurrency"
    if scale.target_rps:
        per_replica += f" or {scale.target_rps:g} req/s"
    knobs = ("stable_window", "panic_window_percentage", "panic_threshold_percentage", "scale_down_delay")
    tuned = "".join(f", {k} {v:g}" for k in knobs if (v := getattr(scale, k)) is not None)
    return f"{scale.min}-{scale.max} replicas, {per_replica} per replica, idle {scale.idle_timeout:g} s{tuned}"


def trigger_text(trigger: TriggerSpec) -> str:
    """A trigger as one short phrase: its kind and what it listens to."""
    if trigger.jetstream is not None:
        return f"jetstream {trigger.key}"
    if trigger.kv is not None:
        return f"kv {trigger.key.removeprefix('kv:')}"
    if trigger.schedule is not None:
        return trigger.key.replace(":", " ", 1)
    return f"nats {trigger.key}"


def cmd_versions(args: argparse.Namespace) -> int:
    versions = fetch(args, f"/system/functions/{segment(args.name)}/versions")  # VersionInfo's JSON (a light read)
    if args.output == "json":
        print_json(versions)
        return EXIT_OK
    rows = [["VERSION", "STATE", "DIGEST", "CONFIG", "CREATED", "TRAFFIC", "ALIASES", "READY", "REQUESTS", "ERRORS"]]
    rows[0].append("WARM UNTIL")
    for v in versions:  # the fields with a default in VersionInfo may be missing from an older server's
        warm = clock(v["warm_until"]) if v.get("warm_until") else "-"
        aliases = ",".join(v.get("aliases", [])) or "-"
        counts = [str(v.get(k, 0)) for k in ("replicas_ready", "requests", "errors")]
        digests = [short(v["digest"]), short(v.get("config_digest", ""))]
        created = local_time(v["created_at"])
        rows.append([str(v["version"]), v.get("state", "Ready"), *digests, created, f"{v.get('traffic', 0)}%"])
        rows[-1] += [aliases, *counts, warm]
    print_table(rows)
    for v in versions:
        if e := v.get("init_error"):
            print(f"version {v['version']} failed to initialise: {e['error_type']}: {e['message']}")
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    with client(args) as fx:
        fx.delete(args.name)
    if args.output == "json":
        print_json({"function": args.name, "removed": True})
    else:
        print(f"{args.name}: removed")
    return EXIT_OK


def register(add: AddCommand) -> None:
    add("ls", cmd_ls, "list functions", OUTPUT)
    add("describe", cmd_describe, "show a function's versions, traffic and replicas", OUTPUT).add_argument("name")
    add("versions", cmd_versions, "list a function's versions: digest, time, traffic, aliases", OUTPUT).add_argument(
        "name"
    )
    add("rm", cmd_rm, "remove a function, its versions, replicas and logs", OUTPUT).add_argument("name")
