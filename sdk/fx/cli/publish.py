"""`fx publish`: a test message on a subject, to try a nats or jetstream trigger without the nats CLI."""

from __future__ import annotations

import argparse

from fx.cli.common import EXIT_FAILED, EXIT_OK, OUTPUT, AddCommand, built, client, print_json
from fx.errors import InputError
from fx.protocol import PUBLISH_TIMEOUT_DEFAULT, REPLY_FUNCTION_ERROR


def _headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InputError(f"--header {pair!r}: expected NAME=VALUE")
        headers[name] = value
    return headers


def cmd_publish(args: argparse.Namespace) -> int:
    from fx.event_models import PublishSpec

    spec = built(
        PublishSpec,
        subject=args.subject,
        data=args.data,
        headers=_headers(args.header),
        request=args.request,
        timeout=args.timeout,
    )
    with client(args) as fx:
        result = fx.publish(spec)
    failed = REPLY_FUNCTION_ERROR in result.reply_headers
    if args.output == "json":
        print_json(result)
    elif spec.request:
        print(result.reply)  # the answer as it came, like `nats req`
    elif result.stream:
        print(f"published to {result.subject}: stored in stream {result.stream} as message {result.seq}")
    else:
        print(f"published to {result.subject} (core NATS: delivered to whoever listens now, not stored)")
    return EXIT_FAILED if failed else EXIT_OK


def register(add: AddCommand) -> None:
    pub = add("publish", cmd_publish, "publish a test message on a NATS subject (--request: print its reply)", OUTPUT)
    pub.add_argument("subject", help="e.g. orders.new (fx's own subjects are refused)")
    pub.add_argument("data", nargs="?", default="", help="the payload (default empty)")
    pub.add_argument("--header", "-H", action="append", default=[], metavar="NAME=VALUE", help="a NATS header")
    pub.add_argument("--request", action="store_true", help="wait for one reply and print it, as `nats req` does")
    pub.add_argument(
        "--timeout", type=float, default=PUBLISH_TIMEOUT_DEFAULT, help=f"seconds (default {PUBLISH_TIMEOUT_DEFAULT:g})"
    )
