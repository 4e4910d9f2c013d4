"""`fx version` (and `fx --version`): the CLI's release and, when it answers, the platform's."""

from __future__ import annotations

import argparse
from importlib.metadata import version

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, client, err, print_json
from fx.errors import FxError


def cli_version() -> str:
    return version("fx-sdk")


def cmd_version(args: argparse.Namespace) -> int:
    """Exit 0 even when the gateway cannot say: the CLI's version, the question asked, was answered."""
    with client(args) as fx:
        try:
            platform: str | None = fx.platform_version()
        except FxError as exc:
            platform = None
            err(f"fx: the platform's version is unknown: {exc}")
    if args.output == "json":
        print_json({"cli": cli_version(), "gateway": fx.gateway, "platform": platform})
        return EXIT_OK
    print(f"fx CLI:   {cli_version()}")
    if platform:
        print(f"platform: {platform} ({fx.gateway})")
    return EXIT_OK


def register(add: AddCommand) -> None:
    add("version", cmd_version, "show the CLI's version and the platform's (when its gateway answers)", OUTPUT)
