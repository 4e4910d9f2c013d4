"""`fx logs`: a function's replica logs, whole invocations, once or followed."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, client, err, seconds, segment
from fx.errors import InputError


def cmd_logs(args: argparse.Namespace) -> int:
    since = _since(args.since) if args.since else None
    as_json = args.output == "json"
    try:
        for line in _lines(args, since, timestamps=args.timestamps or as_json):
            print(_json(args.name, line) if as_json else line, flush=args.follow)
    except KeyboardInterrupt:
        pass  # the usual way to stop following
    return EXIT_OK


def _lines(args: argparse.Namespace, since: datetime | None, timestamps: bool) -> Iterator[str]:
    """The log lines asked for, through fx.reads (no httpx), or fx.Client where a proxy is set (as common.fetch)."""
    from fx import config, reads

    def on_cut(kept: int) -> None:
        err(f"(last {kept} lines; --tail N or --since 10m for more)")

    settings = config.resolve(args.gateway, args.token, args.context)
    if not reads.usable(settings.gateway):
        with client(args) as fx:
            yield from fx.logs(args.name, args.follow, args.tail, since, timestamps, on_cut)
        return
    path = f"/system/functions/{segment(args.name)}/logs"
    params = reads.logs_params(args.follow, args.tail, since, timestamps)
    fields, lines = reads.get_lines(settings.gateway, settings.token, path, params, args.follow)
    if cut := fields.get("fx-logs-cut"):
        on_cut(int(cut))
    yield from lines


def _json(function: str, line: str) -> str:
    """One object per line: {"function", "time" (when its invocation began; null if unknown), "message"}."""
    stamp, _, message = line.partition(" ")
    return json.dumps({"function": function, "time": None if stamp == "-" else stamp, "message": message})


def _since(text: str) -> datetime:
    try:
        if (ago := seconds(text)) is not None:
            return datetime.now(UTC) - timedelta(seconds=ago)
        when = datetime.fromisoformat(text)
        return when if when.tzinfo else when.astimezone()  # without an offset: the local time, as the user reads it
    except ValueError:
        raise InputError(
            f"--since {text!r} is neither a duration (30s, 10m, 2h) nor a timestamp (2024-05-01T12:00:00)"
        ) from None
    except OverflowError:  # 99999999999h ago
        raise InputError(f"--since {text!r} is further back than the calendar goes") from None


def register(add: AddCommand) -> None:
    logs = add("logs", cmd_logs, "print a function's replica logs, whole invocations", OUTPUT)
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep streaming new lines")
    logs.add_argument(
        "--tail", type=int, metavar="N", help="only the last N lines (default 100, or every line with --since)"
    )
    logs.add_argument(
        "--since",
        metavar="DURATION|TIMESTAMP",
        help="only invocations begun since then: 10m, 2h ago, or a time such as 2024-05-01T12:00:00"
        " (local unless it ends in Z or +HH:MM)",
    )
    logs.add_argument(
        "--timestamps",
        action="store_true",
        help="put before each line the time (UTC) its invocation began; off by default, so lines read as the"
        " function wrote them (its logger lines carry their own time)",
    )
