"""`fx dlq ls|show|redrive`: the dead letters of async calls and durable triggers, through the admin API."""

from __future__ import annotations

import argparse
from typing import Any

from fx.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    OUTPUT,
    AddCommand,
    checked,
    client,
    err,
    fetch,
    local_time,
    print_json,
    print_table,
    printable,
)
from fx.errors import InputError
from fx.protocol import DLQ_LIST_DEFAULT

HELP = "dead letters: async calls and stream records that failed every attempt (list, show, redrive)"
MESSAGE_WIDTH = 60


def _origin(letter: dict[str, Any]) -> str:
    """Where a letter (DeadLetter's JSON) came from."""
    if letter["source"] == "async":
        return printable(f"async call {letter['call_id']}") if letter.get("call_id") else "async call"
    return printable(f"{letter['source']} record from {letter.get('stream')} ({letter.get('subject')})")


def cmd_dlq_ls(args: argparse.Namespace) -> int:
    from fx.names import check_name

    function = checked(check_name, args.function) if args.function else None
    params = {k: v for k, v in (("function", function), ("limit", args.limit)) if v is not None}
    letters = fetch(args, "/system/dlq", params)  # DeadLetter's JSON (a light read)
    if args.output == "json":
        print_json(letters)
        return EXIT_OK
    if not letters:
        print("no dead letters" + (f" of {function}" if function else ""))
        return EXIT_OK
    rows = [["ID", "FUNCTION", "SOURCE", "ERROR", "ATTEMPTS", "TIME", "MESSAGE"]]
    for letter in letters:
        message = printable(letter["message"])
        message = message if len(message) <= MESSAGE_WIDTH else message[: MESSAGE_WIDTH - 1] + "…"
        when, error, attempts = local_time(letter["time"]), printable(letter["error"]), str(letter["attempts"])
        rows.append([str(letter["id"]), letter["function"], letter["source"], error, attempts, when, message])
    print_table(rows)
    if len(letters) == args.limit:
        err(f"(the oldest {args.limit}; --limit N shows more)")
    return EXIT_OK


def cmd_dlq_show(args: argparse.Namespace) -> int:
    letter = fetch(args, f"/system/dlq/{args.id}")  # DeadLetterDetail's JSON (a light read)
    if args.output == "json":
        print_json(letter)
        return EXIT_OK
    print(f"id:        {letter['id']}")
    print(f"function:  {letter['function']}")
    print(f"source:    {_origin(letter)}")
    print(f"error:     {printable(letter['error'])}: {printable(letter['message'])}")
    print(f"status:    {letter['status']}")
    print(f"attempts:  {letter['attempts']}")
    print(f"time:      {local_time(letter['time'])}")
    print("headers:")
    for name, value in sorted(letter["headers"].items()):
        print(f"  {printable(name)}: {printable(value)}")
    print("body (base64):" if letter.get("body_base64") else "body:")
    print(printable(letter["body"]))
    return EXIT_OK


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    from fx.event_models import RedriveSpec
    from fx.models import check_name

    chosen = [bool(args.ids), args.function is not None, args.all]
    if sum(chosen) != 1:
        raise InputError("name the letters to redrive: IDs (see `fx dlq ls`), --function NAME, or --all")
    if args.ids:
        spec = RedriveSpec(ids=args.ids)
    elif args.all:
        spec = RedriveSpec(all=True)
    else:
        spec = RedriveSpec(function=checked(check_name, args.function))
    with client(args) as fx:
        result = fx.redrive(spec)
        while result.next is not None:  # more letters than one call takes: the rest, batch by batch
            more = fx.redrive(result.next)
            result = more.model_copy(
                update={"redriven": result.redriven + more.redriven, "failed": result.failed + more.failed}
            )
    if args.output == "json":
        print_json(result)
    else:
        for letter in result.redriven:
            print(f"{letter.id} {letter.function}: redriven ({_origin(letter.model_dump())})")
        for failure in result.failed:
            err(f"{failure.id}: left in the DLQ: {failure.reason}")
        if not result.redriven and not result.failed:
            print("no dead letters to redrive")
    return EXIT_FAILED if result.failed else EXIT_OK


def register(add: AddCommand) -> None:
    ls = add("ls", cmd_dlq_ls, "list dead letters, oldest first: function, error, attempts, time", OUTPUT)
    ls.add_argument("--function", "-f", help="only this function's")
    ls.add_argument("--limit", type=int, default=DLQ_LIST_DEFAULT, help=f"at most N (default {DLQ_LIST_DEFAULT})")

    show = add("show", cmd_dlq_show, "one dead letter: its error, headers and body", OUTPUT)
    show.add_argument("id", type=int, help="its ID, from `fx dlq ls`")

    redrive = add(
        "redrive",
        cmd_dlq_redrive,
        "run dead letters again: each is re-enqueued where it came from and leaves the DLQ once stored",
        OUTPUT,
    )
    redrive.add_argument("ids", nargs="*", type=int, metavar="ID", help="these letters (IDs from `fx dlq ls`)")
    redrive.add_argument("--function", "-f", help="every letter of this function")
    redrive.add_argument("--all", action="store_true", help="every letter")
