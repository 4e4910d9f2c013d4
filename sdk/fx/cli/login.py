"""`fx login`: a gateway URL and token checked, then saved as a named context and made the current one."""

from __future__ import annotations

import argparse
import os

from fx import config
from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, print_json
from fx.errors import InputError
from fx.paths import config_path


def cmd_login(args: argparse.Namespace) -> int:
    from fx.client import Client

    env = {k: v for k, v in os.environ.items() if k != "FX_CONTEXT"}  # here it names what to save
    known = config.load(config_path(env))
    name = args.context or os.environ.get("FX_CONTEXT")
    if not name and not (args.gateway or env.get("FX_GATEWAY")):
        name = known.current  # `fx login --token NEW` renews the current context's token
    # Logging in again to a known context may give only the new token: its gateway is kept.
    settings = config.resolve(args.gateway, args.token, name if name in known.contexts else None, env=env)
    name = config.check_name(name) if name else config.context_name_for(settings.gateway)
    if not settings.token:
        raise InputError("no token: pass --token TOKEN (fx up writes it to .fx/admin-token)")
    with Client(settings.gateway, settings.token) as client:
        count = len(client.list_functions())
    with config.update() as (file, path):
        file.put(name, settings)
        file.current = name
    if args.output == "json":
        print_json({"gateway": settings.gateway, "functions": count, "config": str(path), "context": name})
    else:
        print(f"logged in to {settings.gateway} ({count} functions); saved to {path} as context {name!r}, now current")
    return EXIT_OK


def register(add: AddCommand) -> None:
    add(
        "login",
        cmd_login,
        "check a gateway URL and token, then save them as a context (--context NAME) and use it",
        OUTPUT,
    )
