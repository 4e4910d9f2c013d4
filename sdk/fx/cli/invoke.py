"""`fx invoke`: a raw event to a function through the Lambda Invoke API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, client, print_json
from fx.errors import InputError


def cmd_invoke(args: argparse.Namespace) -> int:
    event = _event(args)
    with client(args) as fx:
        result = fx.invoke(args.name, event, qualifier=args.qualifier)
    if args.output == "json":
        print(json.dumps(result))
    elif isinstance(result, str):
        print(result)
    else:
        print_json(result)
    return EXIT_OK


def _event(args: argparse.Namespace) -> Any:
    """The event from --data (text, or @FILE as curl reads it), --file, or piped stdin; {} when none is given."""
    if args.file:
        source = f"--file {args.file}"
        text = _read(args.file, source)
    elif args.data is not None:
        source = f"--data {args.data}" if args.data.startswith("@") else "--data"
        text = _read(args.data[1:], source) if args.data.startswith("@") else args.data
    elif not sys.stdin.isatty():
        text, source = sys.stdin.read(), "stdin"
    else:
        text, source = "", ""
    if not text.strip() and source in ("", "stdin"):  # nothing piped in (e.g. < /dev/null): the default event
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{source} is not valid JSON: {exc}") from exc


def _read(path: str, source: str) -> str:
    """A file's text, or stdin's for '-'; `source` names the flag in an error."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise InputError(f"{source}: cannot read {path}: {exc.strerror}") from exc


def register(add: AddCommand) -> None:
    inv = add("invoke", cmd_invoke, "invoke a function with a raw event (the Lambda Invoke API)", OUTPUT)
    inv.add_argument("name")
    source = inv.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        "-d",
        help="the event as JSON, or @FILE to read it from FILE (@- from stdin), as curl does;"
        " without --data or --file, piped stdin is the event; else {}",
    )
    source.add_argument("--file", help="read the event from a JSON file ('-' for stdin)")
    inv.add_argument("--qualifier", "-q", help="a version number or alias")
