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


def register(add: AddCommand) -> None:
    inv = add("invoke", cmd_invoke, "invoke a function with a raw event (the Lambda Invoke API)", OUTPUT)
    inv.add_argument("name")
    source = inv.add_mutually_exclusive_group()
    source.add_argument("--data", "-d", help="the event as JSON (default {})")
    source.add_argument("--file", help="read the event from a JSON file ('-' for stdin)")
    inv.add_argument("--qualifier", "-q", help="a version number or alias")
