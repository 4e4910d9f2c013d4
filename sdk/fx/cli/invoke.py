"""`fx invoke`: a raw event to a function through the Lambda Invoke API."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, client, print_json
from fx.errors import InputError

# An event read from a file or stdin is refused above this, before it is held (three times: read, parsed,
# sent) in memory: far above the gateway's default request limit (6 MiB), far below what would exhaust a laptop.
EVENT_MAX_BYTES = 64 * 1024 * 1024


def cmd_invoke(args: argparse.Namespace) -> int:
    event = event_from(args)
    with client(args) as fx:
        result = fx.invoke(args.name, event, qualifier=args.qualifier)
    if args.output == "json":
        print(json.dumps(result))
    elif isinstance(result, str):
        print(result)
    else:
        print_json(result)
    return EXIT_OK


def event_from(args: argparse.Namespace) -> Any:
    """The event from --data (text, or @FILE as curl reads it), --file, or piped stdin; {} when none is given."""
    text: str | bytes
    if args.file:
        source = f"--file {args.file}"
        text = _read(args.file, source)
    elif args.data is not None:
        source = f"--data {args.data}" if args.data.startswith("@") else "--data"
        text = _read(args.data[1:], source) if args.data.startswith("@") else args.data
    elif not sys.stdin.isatty():
        text, source = _read("-", "stdin"), "stdin"
    else:
        text, source = "", ""
    if not text.strip() and source in ("", "stdin"):  # nothing piped in (e.g. < /dev/null): the default event
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{source} is not valid JSON: {exc}") from exc


def _read(path: str, source: str) -> bytes:
    """A file's bytes (a FIFO's until its writer closes), or stdin's for '-', at most EVENT_MAX_BYTES; `source`
    names the flag in an error. Bytes, not text: json.loads decodes them, and a binary file is then bad JSON."""
    too_big = False
    try:
        if path == "-":
            data = sys.stdin.buffer.read(EVENT_MAX_BYTES + 1)
        else:
            with Path(path).open("rb") as f:  # a regular file's size says it is too big before it is read
                info = os.fstat(f.fileno())
                too_big = stat.S_ISREG(info.st_mode) and info.st_size > EVENT_MAX_BYTES
                data = b"" if too_big else f.read(EVENT_MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{source}: cannot read {path}: {exc.strerror}") from exc
    if too_big or len(data) > EVENT_MAX_BYTES:
        raise InputError(f"{source}: the event is over {EVENT_MAX_BYTES // 2**20} MiB; send a reference to the data")
    return data


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
