"""`fx stream create|ls|rm`: the JetStream streams `jetstream` triggers read, made by the controller."""

from __future__ import annotations

import argparse

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, built, checked, client, fetch, print_json, print_table

HELP = "streams for jetstream triggers: create, list, remove (no NATS credentials needed)"


def cmd_stream_create(args: argparse.Namespace) -> int:
    from fx.event_models import StreamSpec, check_stream_name

    name = checked(check_stream_name, args.name)
    spec = built(StreamSpec, subjects=args.subjects, max_age=args.max_age, max_bytes=args.max_bytes)
    with client(args) as fx:
        info = fx.create_stream(name, spec)
    if args.output == "json":
        print_json(info)
        return EXIT_OK
    state = "created" if info.created else "exists already"
    print(f"{info.name}: {state}, subjects {', '.join(info.subjects)}")
    return EXIT_OK


def cmd_stream_ls(args: argparse.Namespace) -> int:
    streams = fetch(args, "/system/streams")  # StreamInfo's JSON (a light read)
    if args.output == "json":
        print_json(streams)
        return EXIT_OK
    rows = [["NAME", "SUBJECTS", "MESSAGES", "BYTES", "CONSUMERS"]]
    for s in streams:
        rows.append([s["name"], ",".join(s["subjects"]), *(str(s[k]) for k in ("messages", "bytes", "consumers"))])
    print_table(rows)
    return EXIT_OK


def cmd_stream_rm(args: argparse.Namespace) -> int:
    from fx.event_models import check_stream_name

    name = checked(check_stream_name, args.name)
    with client(args) as fx:
        fx.delete_stream(name)
    print(f"{name}: removed, with its messages")
    return EXIT_OK


def register(add: AddCommand) -> None:
    create = add("create", cmd_stream_create, "create a stream storing these subjects (again: no change)", OUTPUT)
    create.add_argument("name", help="stream name, e.g. ORDERS (what fx.yaml's `jetstream: {stream: ...}` names)")
    create.add_argument("subjects", nargs="+", metavar="SUBJECT", help="subjects it stores, e.g. 'orders.>'")
    create.add_argument("--max-age", type=float, default=0, help="seconds a message is kept (default 0: no limit)")
    create.add_argument("--max-bytes", type=int, default=-1, help="bytes kept, oldest dropped (default -1: no limit)")

    add("ls", cmd_stream_ls, "list streams (fx's own are not shown)", OUTPUT)

    rm = add("rm", cmd_stream_rm, "remove a stream and its messages (refused while a trigger reads it)")
    rm.add_argument("name")
