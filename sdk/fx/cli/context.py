"""`fx context ls/use/rm`: the named gateways the CLI knows (saved by `fx login` and `fx up`), and the current one."""

from __future__ import annotations

import argparse

from fx import config
from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, print_json, print_table
from fx.paths import config_path

HELP = "list, switch and remove the named gateways (contexts) the CLI knows"


def cmd_ls(args: argparse.Namespace) -> int:
    path = config_path()
    file = config.load(path)
    # Tokens are never shown: whether a context has one is all a listing needs.
    rows = [
        {"name": n, "gateway": s.gateway, "token": bool(s.token), "current": n == file.current}
        for n, s in sorted(file.contexts.items())
    ]
    if args.output == "json":
        print_json(rows)
        return EXIT_OK
    if not rows:
        print(f"no contexts in {path}: `fx login --gateway URL --token TOKEN` or `fx up` adds one")
        return EXIT_OK
    table = [["CURRENT", "NAME", "GATEWAY", "TOKEN"]]
    table += [["*" if r["current"] else "", r["name"], r["gateway"], "set" if r["token"] else "-"] for r in rows]
    print_table(table)
    return EXIT_OK


def cmd_use(args: argparse.Namespace) -> int:
    with config.update() as (file, path):
        file.use(args.name, path)
        gateway = file.contexts[args.name].gateway
    print(f"the CLI now uses context {args.name!r} ({gateway})")
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    with config.update() as (file, path):
        was_current = file.current == args.name
        file.remove(args.name, path)
    print(f"removed context {args.name!r}")
    if was_current:
        print("no context is current now: `fx context use NAME` picks one")
    return EXIT_OK


def register(add: AddCommand) -> None:
    # These edit the config file: no gateway is contacted, so no connection flags.
    add("ls", cmd_ls, "list the contexts; * marks the current one (tokens are never shown)", OUTPUT, connects=False)
    add("use", cmd_use, "make a context the current one", connects=False).add_argument("name", metavar="NAME")
    add("rm", cmd_rm, "remove a context (and its saved token)", connects=False).add_argument("name", metavar="NAME")
