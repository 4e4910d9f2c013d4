"""`fx event generate KIND`: a sample of an event fx sends a handler, to edit and feed to `fx local invoke`."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime

from fx.cli.common import EXIT_OK, AddCommand, print_json
from fx.errors import InputError
from fx.sample_events import KINDS, Options, generate

HELP = "sample events of each kind fx sends (HTTP, NATS, JetStream, KV, schedule), for `fx local invoke`"


def cmd_generate(args: argparse.Namespace) -> int:
    headers = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise InputError(f"--header {header!r}: give NAME:VALUE, e.g. 'content-type: text/plain'")
        headers.append((name.strip(), value.strip()))
    when = None
    if args.time:
        try:
            when = datetime.fromisoformat(args.time.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(f"--time {args.time!r}: give an ISO time, e.g. 2026-11-28T09:00:00Z") from exc
        if when.tzinfo is None:
            raise InputError(f"--time {args.time!r}: give the zone too, e.g. {args.time}Z")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Options) if hasattr(args, f.name)}
    opts = Options(**{**given, "headers": headers, "time": when})
    print_json(generate(args.kind, opts))
    return EXIT_OK


def register(add: AddCommand) -> None:
    gen = add("generate", cmd_generate, "print a sample event of KIND as JSON", connects=False)
    gen.add_argument(
        "kind", choices=KINDS, help="apigw-v2 (fx's HTTP default), apigw-v1, alb, nats, jetstream, kv, schedule"
    )
    gen.add_argument("--function", default="function", help="the function's name (alb's target group, schedule ids)")
    http = gen.add_argument_group("HTTP kinds (apigw-v2, apigw-v1, alb)")
    http.add_argument("--method", default="GET")
    http.add_argument("--path", default="/", help="the path after /function/NAME (default /)")
    http.add_argument("--query", default="", help="a query string, e.g. 'name=you&n=1'")
    http.add_argument("--body", default="", help="the request body (JSON gets content-type application/json)")
    http.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a header (repeatable); NATS kinds: a message header",
    )
    msg = gen.add_argument_group("NATS kinds (nats, jetstream, kv)")
    msg.add_argument("--subject", default="orders.created", help="the message's subject (nats, jetstream)")
    msg.add_argument("--trigger", help="the trigger's subject pattern, jetstream filter or KV key pattern")
    msg.add_argument("--data", default="{}", help="the message's data as text, or base64:... for binary data")
    msg.add_argument("--stream", default="ORDERS", help="jetstream: the stream")
    msg.add_argument("--bucket", default="users", help="kv: the bucket")
    msg.add_argument("--key", default="eu.ann", help="kv: the key that changed")
    msg.add_argument("--operation", default="PUT", help="kv: PUT, DEL or PURGE")
    msg.add_argument("--sequence", type=int, default=1, help="the stream sequence (messageId, revision)")
    tick = gen.add_argument_group("schedule")
    tick.add_argument("--schedule", default="rate(5 minutes)", help="the trigger's expression")
    tick.add_argument("--timezone", help="its IANA zone (cron forms)")
    tick.add_argument("--time", help="the tick (ISO, with zone; default now); jetstream/kv: when stored")
