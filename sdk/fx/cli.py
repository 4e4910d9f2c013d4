"""The `fx` command line. Exit codes: 0 success, 1 the server or a function failed, 2 bad input."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from fx import config, deploy, manifest, scaffold, secret_args
from fx.client import Client
from fx.errors import FunctionError, FxError, InputError
from fx.models import (
    FunctionInfo,
    PromoteSpec,
    SecretInfo,
    VersionInfo,
    check_alias,
    check_secret_name,
    check_split,
    check_sticky,
)
from fx.platform import Platform, PlatformError
from fx.state_dir import StateDirError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
_FUNCTION_LIST = TypeAdapter(list[FunctionInfo])
_SECRET_LIST = TypeAdapter(list[SecretInfo])
_VERSION_LIST = TypeAdapter(list[VersionInfo])
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?\Z")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args) or EXIT_OK
    except InputError as exc:
        _err(f"fx: {exc}")
        return EXIT_BAD_INPUT
    except FunctionError as exc:
        _err(json.dumps(exc.payload, indent=2) if isinstance(exc.payload, dict | list) else str(exc.payload))
        return EXIT_FAILED
    except FxError as exc:
        who = f"{exc.function}: " if exc.function else ""
        _err(f"fx: {who}{exc}")
        return EXIT_BAD_INPUT if exc.status == 400 else EXIT_FAILED
    except StateDirError as exc:  # in use by another fx up, read-only, full: the user picks another
        _err(f"fx: {exc}")
        return EXIT_BAD_INPUT
    except PlatformError as exc:
        _err(f"fx: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


# --- commands --------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    project = scaffold.init(args.name, Path(args.dir))
    print(f"created {project}/: handler.py, requirements.txt, fx.yaml")
    print(f"next: cd {project} && fx deploy")
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    with _client(args) as client:
        results = deploy.deploy(client, Path(args.file), args.names, progress=_err, traffic=not args.no_traffic)
    if args.output == "json":
        _print_json([r.model_dump(mode="json") for r in results])
    else:
        for result in results:
            print(deploy.describe_result(result))
    return EXIT_OK


def cmd_invoke(args: argparse.Namespace) -> int:
    event = _event(args)
    with _client(args) as client:
        result = client.invoke(args.name, event, qualifier=args.qualifier)
    if args.output == "json":
        print(json.dumps(result))
    elif isinstance(result, str):
        print(result)
    else:
        _print_json(result)
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        functions = client.list_functions()
    if args.output == "json":
        print(_FUNCTION_LIST.dump_json(functions, indent=2).decode())
        return EXIT_OK
    rows = [["NAME", "LATEST", "TRAFFIC", "READY", "STATUS"]]
    for fn in functions:
        ready = sum(v.replicas_ready for v in fn.versions)
        rows.append([fn.name, str(fn.latest), _traffic(fn.traffic), str(ready), fn.status])
    _print_table(rows)
    return EXIT_OK


def cmd_describe(args: argparse.Namespace) -> int:
    with _client(args) as client:
        fn = client.describe(args.name)
    if args.output == "json":
        print(fn.model_dump_json(indent=2))
        return EXIT_OK
    print(f"name:     {fn.name}")
    print(f"status:   {fn.status}")
    print(f"latest:   version {fn.latest}")
    print(f"traffic:  {_traffic(fn.traffic)}" + (f" (sticky by {fn.sticky})" if fn.sticky else ""))
    if secrets := fn.versions[-1].spec.secrets:
        print(f"secrets:  {', '.join(secrets)}")
    if fn.aliases:
        print("aliases:  " + ", ".join(f"{a} → version {v}" for a, v in sorted(fn.aliases.items())))
    if fn.previous:
        print(f"rollback: {_traffic(fn.previous)}")
    if r := fn.rollout:
        canary = f", rolls back above {r.max_error_rate:.1%} errors" if r.max_error_rate is not None else ""
        next_at = r.next_step_at.astimezone().strftime("%H:%M:%S")
        print(
            f"rollout:  version {r.version} at {r.weight}%, +{r.step}% every {r.interval:g} s"
            f" (next step {next_at}){canary}"
        )
    if fn.last_rollout:
        print(f"last rollout: {fn.last_rollout}")
    print()
    rows = [["VERSION", "DIGEST", "CREATED", "TRAFFIC", "READY", "STARTING", "REQUESTS", "ERRORS", "HANDLER"]]
    for v in fn.versions:
        created = v.created_at.strftime("%Y-%m-%d %H:%M:%S")
        counts = [f"{v.traffic}%", v.replicas_ready, v.replicas_starting, v.requests, v.errors]
        rows.append([str(v.version), deploy.short(v.digest), created, *map(str, counts), v.spec.handler])
    _print_table(rows)
    return EXIT_OK


def cmd_versions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        versions = client.versions(args.name)
    if args.output == "json":
        print(_VERSION_LIST.dump_json(versions, indent=2).decode())
        return EXIT_OK
    rows = [["VERSION", "DIGEST", "CREATED", "TRAFFIC", "ALIASES", "READY", "REQUESTS", "ERRORS", "WARM UNTIL"]]
    for v in versions:
        created = v.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        warm = v.warm_until.astimezone().strftime("%H:%M:%S") if v.warm_until else "-"
        aliases = ",".join(v.aliases) or "-"
        counts = [str(v.replicas_ready), str(v.requests), str(v.errors)]
        rows.append([str(v.version), deploy.short(v.digest), created, f"{v.traffic}%", aliases, *counts, warm])
    _print_table(rows)
    return EXIT_OK


def cmd_traffic(args: argparse.Namespace) -> int:
    weights = _weights(args.weights)
    sticky = _sticky(args)
    with _client(args) as client:
        fn = client.set_traffic(args.name, weights, **sticky)
    return _changed(args, fn)


def cmd_alias(args: argparse.Namespace) -> int:
    try:
        alias = check_alias(args.alias)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if args.delete == (args.version is not None):
        raise InputError("give either a VERSION for the alias or --delete")
    with _client(args) as client:
        fn = client.delete_alias(args.name, alias) if args.delete else client.set_alias(args.name, alias, args.version)
    return _changed(args, fn)


def cmd_promote(args: argparse.Namespace) -> int:
    try:
        spec = PromoteSpec(
            version=args.version,
            step=args.step,
            interval=_seconds(args.interval),
            max_error_rate=args.max_error_rate,
            min_requests=args.min_requests,
        )
    except ValueError as exc:
        raise InputError(_first_error(exc)) from exc
    with _client(args) as client:
        fn = client.promote(args.name, spec)
    return _changed(args, fn)


def cmd_rollback(args: argparse.Namespace) -> int:
    with _client(args) as client:
        fn = client.rollback(args.name)
    return _changed(args, fn)


def cmd_logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            for line in client.logs(args.name, follow=args.follow, tail=args.tail):
                print(line, flush=True)
        except KeyboardInterrupt:
            pass  # the usual way to stop following
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete(args.name)
    print(f"{args.name}: removed")
    return EXIT_OK


def cmd_secret_set(args: argparse.Namespace) -> int:
    name = _secret_name(args.name)
    values = secret_args.values_from(args.values, args.from_env_file, sys.stdin)
    with _client(args) as client:
        info = client.set_secret(name, values)
    if args.output == "json":
        print(info.model_dump_json(indent=2))
        return EXIT_OK
    print(f"{info.name}: set, keys {', '.join(info.keys)}")
    if info.used_by:
        print(f"new replicas of {', '.join(info.used_by)} get these values; running ones keep theirs until replaced")
    return EXIT_OK


def cmd_secret_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        secrets = client.list_secrets()
    if args.output == "json":
        print(_SECRET_LIST.dump_json(secrets, indent=2).decode())
        return EXIT_OK
    rows = [["NAME", "KEYS", "UPDATED", "USED BY"]]
    for info in secrets:
        updated = info.updated_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        rows.append([info.name, ",".join(info.keys), updated, ",".join(info.used_by) or "-"])
    _print_table(rows)
    return EXIT_OK


def cmd_secret_rm(args: argparse.Namespace) -> int:
    name = _secret_name(args.name)
    with _client(args) as client:
        client.delete_secret(name)
    print(f"{name}: removed")
    return EXIT_OK


def cmd_login(args: argparse.Namespace) -> int:
    settings = config.resolve(args.gateway, args.token)
    if not settings.token:
        raise InputError("no token: pass --token TOKEN (fx up writes it to .fx/admin-token)")
    with Client(settings.gateway, settings.token) as client:
        count = len(client.list_functions())
    path = config.write_config(settings)
    print(f"logged in to {settings.gateway} ({count} functions); saved to {path}")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    platform = Platform(state_dir, gateway_port=args.port)
    # SIGTERM (e.g. from a service manager) stops as cleanly as Ctrl-C does, and Ctrl-C works even when
    # the shell started us with SIGINT ignored (a background job).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _err(f"starting fx (state in {state_dir}/) ...")
        platform.start()
        settings = config.Settings(platform.gateway_url, platform.token)
        _err(f"gateway on {platform.gateway_url}; CLI config saved to {config.write_config(settings)}")
        if protections := platform.protections():
            _err(protections)
        functions = _deploy_examples(Path(args.examples), settings) if args.examples else {}
        _print_welcome(platform, functions)
        while (dead := platform.exited()) is None:
            time.sleep(0.5)
        _err(f"fx: {dead} stopped unexpectedly; the last lines of its log:\n{platform.log_tail(dead)}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("\nstopping fx ...")
        return EXIT_OK
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        platform.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)


# --- helpers ---------------------------------------------------------------------


def _deploy_examples(examples: Path, settings: config.Settings) -> dict[str, list[str]]:
    """The functions deployed, each with its event triggers (none: it is called over HTTP)."""
    manifests = [examples / manifest.MANIFEST] if (examples / manifest.MANIFEST).is_file() else []
    manifests += sorted(examples.glob(f"*/{manifest.MANIFEST}"))
    if not manifests:
        _err(f"fx: no {manifest.MANIFEST} in {examples} or its subfolders; nothing to deploy")
    deployed: dict[str, list[str]] = {}
    with Client(settings.gateway, settings.token) as client:
        for path in manifests:
            try:
                results = deploy.deploy(client, path, progress=_err)
            except (InputError, FxError) as exc:
                _err(f"fx: {path}: not deployed: {exc}")
                continue
            triggers = {d.name: d.trigger_keys for d in manifest.load(path)}
            for result in results:
                _err(deploy.describe_result(result))
                deployed[result.function] = triggers.get(result.function, [])
    return deployed


def _print_welcome(platform: Platform, functions: dict[str, list[str]]) -> None:
    print(f"\nfx is up on {platform.gateway_url}")
    for name, triggers in functions.items():
        if triggers:  # its events come from its triggers, not from a caller
            print(f"  {name} runs on events: {', '.join(triggers)}")
            continue
        print(f"  curl {platform.gateway_url}/function/{name}/any/path?x=1")
        print(f'  fx invoke {name} --data \'{{"name": "you"}}\'')
    print("  fx init NAME && cd NAME && fx deploy     # your own function")
    print("Ctrl-C stops fx; `fx up` again brings back what was deployed.", flush=True)


def _client(args: argparse.Namespace) -> Client:
    settings = config.resolve(args.gateway, args.token)
    return Client(settings.gateway, settings.token)


def _event(args: argparse.Namespace) -> Any:
    if args.file:
        try:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        except OSError as exc:
            raise InputError(f"--file {args.file}: {exc.strerror}") from exc
        source = f"--file {args.file}"
    else:
        text, source = args.data or "{}", "--data"
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{source} is not valid JSON: {exc}") from exc


def _changed(args: argparse.Namespace, fn: FunctionInfo) -> int:
    """What a traffic command leaves behind: the split, aliases and any rollout in progress."""
    if args.output == "json":
        print(fn.model_dump_json(indent=2))
        return EXIT_OK
    line = f"{fn.name}: traffic {_traffic(fn.traffic)}"
    if fn.sticky:
        line += f" (sticky by {fn.sticky})"
    if fn.aliases:
        line += "; aliases " + ", ".join(f"{a}→v{v}" for a, v in sorted(fn.aliases.items()))
    if r := fn.rollout:
        line += f"; promoting version {r.version}: +{r.step}% every {r.interval:g} s"
    print(line)
    return EXIT_OK


def _weights(pairs: list[str]) -> dict[int, int]:
    """["3=90", "4=10"] -> {3: 90, 4: 10}, checked as the server will check it."""
    weights: dict[int, int] = {}
    for pair in pairs:
        version, sep, percent = pair.partition("=")
        if not sep or not version.strip().isdigit() or not percent.strip().isdigit():
            raise InputError(f"weight {pair!r} is not VERSION=PERCENT with whole numbers (e.g. 3=90 4=10)")
        if int(version) in weights:
            raise InputError(f"version {int(version)} is given twice")
        weights[int(version)] = int(percent)
    try:
        check_split(weights)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    return weights


def _sticky(args: argparse.Namespace) -> dict[str, str | None]:
    """The sticky argument of set_traffic: none leaves the setting as it is, None turns it off."""
    if args.no_sticky:
        return {"sticky": None}
    if args.sticky is None:
        return {}
    try:
        return {"sticky": check_sticky(args.sticky)}
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def _secret_name(name: str) -> str:
    try:
        return check_secret_name(name)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def _seconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise InputError(f"--interval {text!r} is not a duration such as 30s, 2m or 500ms")
    return float(match[1]) * _UNITS[match[2] or "s"]


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    first = errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ()))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{field.replace('_', '-')}: {message}" if field else message


def _traffic(traffic: dict[int, int]) -> str:
    return ", ".join(f"v{v}:{p}%" for v, p in sorted(traffic.items())) or "-"


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the parser ------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    # Global flags are accepted before or after the command; SUPPRESS keeps the earlier value.
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--gateway", default=argparse.SUPPRESS, help="gateway URL (env FX_GATEWAY)")
    connection.add_argument("--token", default=argparse.SUPPRESS, help="admin token (env FX_TOKEN)")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--output", "-o", choices=["text", "json"], default="text", help="output format")

    parser = argparse.ArgumentParser(prog="fx", description="fx: Lambda-style functions on your own machines.")
    parser.add_argument("--gateway", default=None, help="gateway URL (env FX_GATEWAY; default http://127.0.0.1:8080)")
    parser.add_argument("--token", default=None, help="admin token (env FX_TOKEN; default from the fx config)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, run, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[connection, *parents])
        sub.set_defaults(run=run)
        return sub

    up = command("up", cmd_up, "run the embedded platform (NATS, controller, gateway) in the foreground")
    up.add_argument("--state-dir", default=".fx", help="where deployed functions, the token and logs live")
    up.add_argument("--port", type=int, default=8080, help="the gateway's port on 127.0.0.1")
    up.add_argument("--examples", metavar="DIR", help="deploy the functions found in DIR and its subfolders")

    init = command("init", cmd_init, "scaffold a new function project")
    init.add_argument("name", help="function name (DNS-1123: lower-case letters, digits, '-')")
    init.add_argument("--dir", default=".", help="the folder to create the project in")

    dep = command("deploy", cmd_deploy, "build, upload and deploy the functions of fx.yaml", output)
    dep.add_argument("-f", "--file", default=manifest.MANIFEST, help="the manifest (default fx.yaml)")
    dep.add_argument("names", nargs="*", metavar="NAME", help="deploy only these functions")
    dep.add_argument(
        "--no-traffic",
        action="store_true",
        help="the new version gets no traffic: started warm, reachable only when pinned (NAME@N, an alias)",
    )

    inv = command("invoke", cmd_invoke, "invoke a function with a raw event (the Lambda Invoke API)", output)
    inv.add_argument("name")
    source = inv.add_mutually_exclusive_group()
    source.add_argument("--data", "-d", help="the event as JSON (default {})")
    source.add_argument("--file", help="read the event from a JSON file ('-' for stdin)")
    inv.add_argument("--qualifier", "-q", help="a version number or alias")

    command("ls", cmd_ls, "list functions", output)

    desc = command("describe", cmd_describe, "show a function's versions, traffic and replicas", output)
    desc.add_argument("name")

    ver = command("versions", cmd_versions, "list a function's versions: digest, time, traffic, aliases", output)
    ver.add_argument("name")

    traffic = command(
        "traffic", cmd_traffic, "split traffic between versions, e.g. `fx traffic hello 3=90 4=10`", output
    )
    traffic.add_argument("name")
    traffic.add_argument("weights", nargs="+", metavar="VERSION=PERCENT", help="percents summing to 100")
    sticky = traffic.add_mutually_exclusive_group()
    sticky.add_argument(
        "--sticky", metavar="header:NAME|cookie:NAME", help="callers with the same value always get the same version"
    )
    sticky.add_argument("--no-sticky", action="store_true", help="turn sticky cohorts off")

    alias = command("alias", cmd_alias, "point an alias (e.g. live, beta) at a version, or remove it", output)
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", type=int, nargs="?", help="the version the alias points to")
    alias.add_argument("--delete", action="store_true", help="remove the alias")

    promote = command("promote", cmd_promote, "give a version all traffic, at once or step by step", output)
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--step", type=int, metavar="PERCENT", help="add this percent every --interval")
    promote.add_argument("--interval", default="30s", help="time between steps, e.g. 30s, 2m (default 30s)")
    promote.add_argument(
        "--max-error-rate", type=float, metavar="RATE", help="roll back by itself when the 5xx share passes RATE"
    )
    promote.add_argument(
        "--min-requests", type=int, default=20, metavar="N", help="requests a step needs before its error rate counts"
    )

    rollback = command("rollback", cmd_rollback, "go back to the previous traffic split at once", output)
    rollback.add_argument("name")

    logs = command("logs", cmd_logs, "print a function's replica logs")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep streaming new lines")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")

    rm = command("rm", cmd_rm, "remove a function, its versions and replicas")
    rm.add_argument("name")

    secret = commands.add_parser(
        "secret", help="manage secrets: values a function gets as environment variables, never shown"
    )
    secret_commands = secret.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def secret_command(name: str, run, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub = secret_commands.add_parser(name, help=help, description=help, parents=[connection, *parents])
        sub.set_defaults(run=run)
        return sub

    secret_set = secret_command(
        "set",
        cmd_secret_set,
        "create or replace a secret: it becomes exactly the keys given (functions name it in fx.yaml `secrets:`)",
        output,
    )
    secret_set.add_argument("name", help="secret name (DNS-1123: lower-case letters, digits, '-')")
    secret_set.add_argument(
        "values", nargs="*", metavar="KEY=VALUE", help="KEY=- reads that value from stdin (a trailing newline dropped)"
    )
    secret_set.add_argument("--from-env-file", metavar="FILE", help="read KEY=VALUE lines (dotenv syntax) from FILE")
    secret_command("ls", cmd_secret_ls, "list secrets: names, keys, when updated, which functions use them", output)
    secret_rm = secret_command("rm", cmd_secret_rm, "remove a secret no function uses")
    secret_rm.add_argument("name")

    command("login", cmd_login, "check a gateway URL and token, then save them for the CLI")
    return parser


if __name__ == "__main__":
    sys.exit(main())
