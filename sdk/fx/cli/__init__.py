"""The `fx` command line: one module per group of commands, each adding its own parsers.

Every command exits by one convention (EXIT_CODES, shown by `fx --help`); the platform's refusals map to it by
their HTTP status, here, so no command decides it alone.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Sequence

from fx.cli import version
from fx.cli.common import (
    CONNECTION,
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAUTHORISED,
    AddCommand,
    Run,
    err,
)
from fx.errors import FunctionError, FxError, InputError, PlatformError
from fx.state_dir import StateDirError

# argparse passes each of its strings through gettext, which looks for a catalogue on disk at every call (~200
# calls, 5 ms of `fx --help`); the strings and the locale are fixed for the run, so the answers are too.
argparse._ = functools.cache(argparse._)  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> int:
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        # Answered as the parser's --version action would, without importing and building every command's parser
        print(f"fx {version.cli_version()}")
        return EXIT_OK
    args = _parser(command_named(sys.argv[1:] if argv is None else argv)).parse_args(argv)
    try:
        code = args.run(args) or EXIT_OK
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: the Python docs' recipe, so the exit flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except InputError as exc:
        err(f"fx: {exc}")
        return EXIT_BAD_INPUT
    except FunctionError as exc:
        err(json.dumps(exc.payload, indent=2) if isinstance(exc.payload, dict | list) else str(exc.payload))
        return EXIT_FAILED
    except FxError as exc:
        who = f"{exc.function}: " if exc.function else ""
        err(f"fx: {who}{exc}")
        return exit_code(exc.status)
    except StateDirError as exc:  # in use by another fx up, read-only, full: the user picks another
        err(f"fx: {exc}")
        return EXIT_BAD_INPUT
    except PlatformError as exc:
        err(f"fx: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def exit_code(status: int) -> int:
    """The exit code of a call the platform refused, by its HTTP status (0: the gateway was not reached)."""
    if status in (401, 403):
        return EXIT_UNAUTHORISED
    if 400 <= status < 500 and status not in (408, 429):  # a timeout or throttling is not the caller's mistake
        return EXIT_BAD_INPUT
    return EXIT_FAILED


# Each module of commands, how it adds them, and the top-level commands it adds, in `fx --help`'s order; GROUP
# adds the group named (`fx secret ...`) with the module's commands under it. A command line naming one of these
# builds that module's parser alone: `fx ls` imports fx.cli.functions, not the twenty other modules.
GROUP = "group"
MODULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("up", "register", ("up",)),
    ("deploy", "register", ("init", "deploy")),
    ("invoke", "register", ("invoke",)),
    ("functions", "register", ("ls", "describe", "versions", "rm")),
    ("traffic", "register", ("traffic", "alias", "promote", "rollback")),
    ("logs", "register", ("logs",)),
    ("publish", "register", ("publish",)),
    ("status", "register", ("status",)),
    ("usage", "register", ("usage",)),
    ("graph", "register", ("graph",)),
    ("top", "register", ("top",)),
    ("apis", "register_routes", ("routes",)),
    ("secrets", GROUP, ("secret",)),
    ("apis", GROUP, ("apis",)),
    ("credentials", GROUP, ("credentials",)),
    ("apikeys", GROUP, ("apikey",)),
    ("dlq", GROUP, ("dlq",)),
    ("streams", GROUP, ("stream",)),
    ("kv", GROUP, ("kv",)),
    ("local", GROUP, ("local",)),
    ("event", GROUP, ("event",)),
    ("login", "register", ("login",)),
    ("context", GROUP, ("context",)),
    ("version", "register", ("version",)),
)
_GLOBAL_FLAGS = ("--gateway", "--token", "--context")  # the top-level options that take a value


def command_named(argv: Sequence[str]) -> str | None:
    """The command of a command line, after its global flags, when one of MODULES adds it; None for anything else
    (--help, a flag argparse would complete or refuse, `fx completion`, a typo), which needs every parser."""
    args = iter(argv)
    for arg in args:
        if arg in _GLOBAL_FLAGS:
            next(args, None)
        elif not arg.startswith(tuple(f"{flag}=" for flag in _GLOBAL_FLAGS)):
            known = not arg.startswith("-") and any(arg in names for _, _, names in MODULES)
            return arg if known else None
    return None


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser: every command's, or, given `command`, only the commands of the module that adds it."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="fx",
        description="fx: Lambda-style functions on your own machines.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=version.VersionAction)
    parser.add_argument("--gateway", default=None, help="gateway URL (env FX_GATEWAY; default http://127.0.0.1:8080)")
    parser.add_argument("--token", default=None, help="admin token (env FX_TOKEN; default from the fx config)")
    parser.add_argument("--context", default=None, help="the fx context to use (env FX_CONTEXT; see `fx context`)")
    _help_by_default(parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add = _adder(commands)
    for name, how, names in MODULES:
        if command is not None and command not in names:
            continue
        module = importlib.import_module(f"fx.cli.{name}")  # imported here: `fx --version` needs none of them
        if how == GROUP:
            group_parser = commands.add_parser(names[0], help=module.HELP, description=module.HELP)
            _help_by_default(group_parser)
            module.register(_adder(group_parser.add_subparsers(title="commands", metavar="COMMAND")))
        else:
            getattr(module, how)(add)
    if command is None:
        from fx.cli import completion

        completion.register(add, parser)
    return parser


def _help_by_default(parser: argparse.ArgumentParser) -> None:
    """A command group given no command prints its help and exits 0, as kubectl does (git exits 1)."""

    def show_help(_: argparse.Namespace) -> int:
        parser.print_help()
        return EXIT_OK

    parser.set_defaults(run=show_help)


def _adder(commands: argparse._SubParsersAction) -> AddCommand:
    def add(
        name: str, run: Run, help: str, *parents: argparse.ArgumentParser, connects: bool = True
    ) -> argparse.ArgumentParser:
        inherited = [CONNECTION, *parents] if connects else list(parents)
        sub = commands.add_parser(name, help=help, description=help, parents=inherited)
        sub.set_defaults(run=run)
        return sub

    return add
