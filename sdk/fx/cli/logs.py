"""`fx logs`: a function's replica logs, once or followed."""

from __future__ import annotations

import argparse

from fx.cli.common import EXIT_OK, AddCommand, client


def cmd_logs(args: argparse.Namespace) -> int:
    with client(args) as fx:
        try:
            for line in fx.logs(args.name, follow=args.follow, tail=args.tail):
                print(line, flush=True)
        except KeyboardInterrupt:
            pass  # the usual way to stop following
    return EXIT_OK


def register(add: AddCommand) -> None:
    logs = add("logs", cmd_logs, "print a function's replica logs")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep streaming new lines")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
