"""`fx login`: a gateway URL and token checked, then saved for the CLI."""

from __future__ import annotations

import argparse

from fx import config
from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, print_json
from fx.client import Client
from fx.errors import InputError


def cmd_login(args: argparse.Namespace) -> int:
    settings = config.resolve(args.gateway, args.token)
    if not settings.token:
        raise InputError("no token: pass --token TOKEN (fx up writes it to .fx/admin-token)")
    with Client(settings.gateway, settings.token) as client:
        count = len(client.list_functions())
    path = config.write_config(settings)
    if args.output == "json":
        print_json({"gateway": settings.gateway, "functions": count, "config": str(path)})
    else:
        print(f"logged in to {settings.gateway} ({count} functions); saved to {path}")
    return EXIT_OK


def register(add: AddCommand) -> None:
    add("login", cmd_login, "check a gateway URL and token, then save them for the CLI", OUTPUT)
