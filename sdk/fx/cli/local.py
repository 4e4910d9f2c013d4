"""`fx local invoke|api`: an fx.yaml function run on this machine by fx's own runtime, with no platform."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, err
from fx.cli.invoke import event_from
from fx.errors import InputError
from fx.local_runtime import READY_TIMEOUT_S
from fx.paths import MANIFEST

if TYPE_CHECKING:
    from fx.local_api import Functions

HELP = "run fx.yaml functions on this machine, no platform: invoke one with an event, or serve them over HTTP"
DEFAULT_PORT = 3000  # sam local start-api's


def cmd_invoke(args: argparse.Namespace) -> int:
    from fx import manifest, sam
    from fx.local_runtime import LocalReplica

    defs = sam.functions(Path(args.manifest))
    if args.name is None and len(defs) > 1:
        names = ", ".join(d.name for d in defs)
        raise InputError(f"{args.manifest} has {len(defs)} functions ({names}): name the one to invoke")
    fn = manifest.select(defs, [args.name] if args.name else [], args.manifest)[0]
    event = event_from(args)
    with LocalReplica(fn, _env(args.env), err, _init_timeout(args)) as replica:
        result = replica.invoke(event)
    if args.output == "json" or not isinstance(result, str):
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(result)
    return EXIT_OK


def cmd_api(args: argparse.Namespace) -> int:
    from fx.local_api import Functions, serve

    functions = Functions(Path(args.manifest), args.names, _env(args.env), err, _init_timeout(args))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the replicas on SIGTERM as on Ctrl-C
    with contextlib.suppress(KeyboardInterrupt):
        serve(functions, args.host, args.port, err, lambda url: err(_served(url, functions)))
    return EXIT_OK


def _served(url: str, functions: Functions) -> str:
    lines = [f"serving {len(functions.code_dirs)} function(s) on {url} (Ctrl-C stops; code changes reload):"]
    lines += [f"  {url}/function/{name}/" for name in functions.code_dirs]
    return "\n".join(lines)


def _init_timeout(args: argparse.Namespace) -> float:
    if not args.init_timeout > 0:  # nor nan
        raise InputError(f"--init-timeout {args.init_timeout:g}: give a number of seconds above 0")
    return args.init_timeout


def _env(pairs: list[str]) -> dict[str, str]:
    from fx.models import ENV_NAME_RE

    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not ENV_NAME_RE.match(key):
            raise InputError(f"--env {pair!r}: give KEY=VALUE, KEY of letters, digits and '_'")
        env[key] = value
    return env


def register(add: AddCommand) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-f", "--file", dest="manifest", default=MANIFEST, help="the manifest (default fx.yaml)")
    common.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable beyond fx.yaml's env (repeatable), e.g. a secret's key",
    )
    common.add_argument(
        "--init-timeout",
        type=float,
        default=READY_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long the handler may take to load (default {READY_TIMEOUT_S:g})",
    )

    inv = add(
        "invoke",
        cmd_invoke,
        "run a function's handler once with an event; the log goes to stderr",
        common,
        OUTPUT,
        connects=False,
    )
    inv.add_argument("name", nargs="?", help="the function (may be left out when fx.yaml has one)")
    source = inv.add_mutually_exclusive_group()
    source.add_argument(
        "--event",
        "-e",
        dest="file",
        help="a JSON file holding the event ('-' for stdin), e.g. from `fx event generate`",
    )
    source.add_argument("--data", "-d", help="the event as JSON, or @FILE as curl reads it; else piped stdin, else {}")

    api = add(
        "api",
        cmd_api,
        "serve fx.yaml's functions over HTTP as the gateway does, restarting on code changes",
        common,
        connects=False,
    )
    api.add_argument("names", nargs="*", metavar="NAME", help="serve only these functions")
    api.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the port (default {DEFAULT_PORT}; 0: any free)")
