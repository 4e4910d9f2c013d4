"""The `fx` command line: one module per group of commands, each adding its own parsers.

Exit codes: 0 success, 1 the server or a function failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from fx.cli import deploy, functions, invoke, login, logs, secrets, traffic, up
from fx.cli.common import CONNECTION, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, AddCommand, Run, err
from fx.errors import FunctionError, FxError, InputError
from fx.platform import PlatformError
from fx.state_dir import StateDirError


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args) or EXIT_OK
    except InputError as exc:
        err(f"fx: {exc}")
        return EXIT_BAD_INPUT
    except FunctionError as exc:
        err(json.dumps(exc.payload, indent=2) if isinstance(exc.payload, dict | list) else str(exc.payload))
        return EXIT_FAILED
    except FxError as exc:
        who = f"{exc.function}: " if exc.function else ""
        err(f"fx: {who}{exc}")
        return EXIT_BAD_INPUT if exc.status in (400, 409) else EXIT_FAILED
    except StateDirError as exc:  # in use by another fx up, read-only, full: the user picks another
        err(f"fx: {exc}")
        return EXIT_BAD_INPUT
    except PlatformError as exc:
        err(f"fx: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fx", description="fx: Lambda-style functions on your own machines.")
    parser.add_argument("--gateway", default=None, help="gateway URL (env FX_GATEWAY; default http://127.0.0.1:8080)")
    parser.add_argument("--token", default=None, help="admin token (env FX_TOKEN; default from the fx config)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    add = _adder(commands)
    for module in (up, deploy, invoke, functions, traffic, logs):
        module.register(add)
    secret = commands.add_parser("secret", help=secrets.HELP)
    secrets.register(_adder(secret.add_subparsers(title="commands", metavar="COMMAND", required=True)))
    login.register(add)
    return parser


def _adder(commands: argparse._SubParsersAction) -> AddCommand:
    def add(name: str, run: Run, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[CONNECTION, *parents])
        sub.set_defaults(run=run)
        return sub

    return add
