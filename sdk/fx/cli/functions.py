"""`fx ls`, `fx describe`, `fx versions` and `fx rm`: what is deployed, and removing it."""

from __future__ import annotations

import argparse
from typing import Any

from fx.cli.common import (
    EXIT_OK,
    OUTPUT,
    AddCommand,
    client,
    clock,
    fetch,
    gateway_url,
    local_time,
    print_json,
    print_table,
    segment,
    short,
    traffic_text,
)


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


def _split(traffic: dict[str, int]) -> dict[int, int]:
    """A traffic split as JSON has it (its versions are keys, so strings) by version number."""
    return {int(v): p for v, p in traffic.items()}


def cmd_describe(args: argparse.Namespace) -> int:
    fn = fetch(args, f"/system/functions/{segment(args.name)}")  # FunctionInfo's JSON (a light read)
    if args.output == "json":
        print_json(fn)
        return EXIT_OK
    # The configuration shown is the serving one: the version with the most traffic (else the latest). The fields
    # with a default in FunctionInfo and VersionInfo may be missing from an older server's answer.
    versions = fn["versions"]
    shown = max(versions, key=lambda v: (v.get("traffic", 0), v["version"]))
    spec = shown["spec"]
    sticky = fn.get("sticky")
    print(f"name:     {fn['name']}")
    print(f"status:   {fn.get('status', 'Ready')}")
    print(f"latest:   version {fn['latest']}")
    print(f"traffic:  {traffic_text(_split(fn['traffic']))}" + (f" (sticky by {sticky})" if sticky else ""))
    print(f"url:      {gateway_url(args)}/function/{fn['name']}/")
    print(f"config:   version {shown['version']} ({short(shown.get('config_digest', ''))})")
    print(f"memory:   {spec['memory']} MB")
    print(f"timeout:  {spec['timeout']:g} s")
    print(f"scale:    {scale_text(spec['scale'])}")
    print(f"env:      {', '.join(f'{k}=****' for k in sorted(spec['env'])) or '-'}")  # values never shown
    print(f"triggers: {'; '.join(trigger_text(t) for t in spec['triggers']) or '-'}")
    if secrets := spec.get("secrets"):
        print(f"secrets:  {', '.join(secrets)}")
    if aliases := fn.get("aliases"):
        splits = fn.get("alias_traffic", {})
        shown_aliases = (_alias(a, v, _split(splits[a]) if a in splits else None) for a, v in sorted(aliases.items()))
        print("aliases:  " + ", ".join(shown_aliases))
    if previous := fn.get("previous"):
        print(f"rollback: {traffic_text(_split(previous))}")
    if r := fn.get("rollout"):
        rate = r.get("max_error_rate")
        canary = f", rolls back above {rate:.1%} errors" if rate is not None else ""
        print(
            f"rollout:  version {r['version']} at {r['weight']}%, +{r['step']}% every {r['interval']:g} s"
            f" (next step {clock(r['next_step_at'])}){canary}"
        )
    if last := fn.get("last_rollout"):
        print(f"last rollout: {last}")
    print()
    rows = [["VERSION", "STATE", "DIGEST", "CONFIG", "CREATED", "TRAFFIC", "READY", "STARTING", "DESIRED"]]
    rows[0] += ["REQUESTS", "ERRORS", "HANDLER"]
    for v in versions:
        desired = v.get("replicas_desired", 0)
        desired = f"{desired} (panic)" if v.get("panic") else desired
        replicas = [v.get("replicas_ready", 0), v.get("replicas_starting", 0), desired]
        counts = [f"{v.get('traffic', 0)}%", *replicas, v.get("requests", 0), v.get("errors", 0)]
        rows.append([*_version_cells(v), *map(str, counts), v["spec"]["handler"]])
    print_table(rows)
    _init_errors(versions)
    return EXIT_OK


def _version_cells(v: dict[str, Any]) -> list[str]:
    """A version's first cells in `describe` and `versions` (VersionInfo's JSON): VERSION to CREATED."""
    digests = [short(v["digest"]), short(v.get("config_digest", ""))]
    return [str(v["version"]), v.get("state", "Ready"), *digests, local_time(v["created_at"])]


def _init_errors(versions: list[dict[str, Any]]) -> None:
    """The versions that failed to initialise (VersionInfo's JSON), and why."""
    for v in versions:
        if e := v.get("init_error"):
            print(f"version {v['version']} failed to initialise: {e['error_type']}: {e['message']}")


def scale_text(scale: dict[str, Any]) -> str:
    """The scale spec (ScaleSpec's JSON) in a line: bounds, targets, and the autoscaling knobs set (the others are
    the controller's)."""
    per_replica = f"{scale['concurrency']} in flight" if scale["concurrency"] else "unlimited concurrency"
    if scale.get("target_rps"):
        per_replica += f" or {scale['target_rps']:g} req/s"
    knobs = ("stable_window", "panic_window_percentage", "panic_threshold_percentage", "scale_down_delay")
    tuned = "".join(f", {k} {v:g}" for k in knobs if (v := scale.get(k)) is not None)
    bounds = f"{scale['min']}-{scale['max']} replicas"
    return f"{bounds}, {per_replica} per replica, idle {scale['idle_timeout']:g} s{tuned}"


def trigger_text(trigger: dict[str, Any]) -> str:
    """A trigger (TriggerSpec's JSON) as one short phrase: its kind and what it listens to, named as
    TriggerSpec.key names it."""
    if (stream := trigger.get("jetstream")) is not None:
        return f"jetstream {stream['stream']}/{stream.get('subject') or '>'}"
    if (bucket := trigger.get("kv")) is not None:
        return f"kv {bucket['bucket']}/{bucket.get('keys', '>')}"
    if trigger.get("schedule") is not None:
        from fx.schedule import schedule_key  # cronsim and zoneinfo: only for a function with a schedule

        return schedule_key(trigger["schedule"], trigger.get("timezone")).replace(":", " ", 1)
    return f"nats {trigger['nats']}"


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
        rows.append([*_version_cells(v), f"{v.get('traffic', 0)}%", aliases, *counts, warm])
    print_table(rows)
    _init_errors(versions)
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
