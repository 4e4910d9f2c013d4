"""`fx kv create|ls|rm`: the NATS KV buckets `kv` triggers watch, made by the controller."""

from __future__ import annotations

import argparse

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, built, checked, client, fetch, print_json, print_table

HELP = "KV buckets for kv triggers: create, list, put a key, remove (no NATS credentials needed)"


def cmd_kv_create(args: argparse.Namespace) -> int:
    from fx.event_models import BucketSpec, check_bucket_name

    name = checked(check_bucket_name, args.bucket)
    spec = built(BucketSpec, history=args.history, max_bytes=args.max_bytes)
    with client(args) as fx:
        info = fx.create_bucket(name, spec)
    if args.output == "json":
        print_json(info)
        return EXIT_OK
    print(f"{info.name}: {'created' if info.created else 'exists already'}")
    return EXIT_OK


def cmd_kv_ls(args: argparse.Namespace) -> int:
    buckets = fetch(args, "/system/kv")  # BucketInfo's JSON (a light read)
    if args.output == "json":
        print_json(buckets)
        return EXIT_OK
    rows = [["BUCKET", "VALUES", "BYTES", "HISTORY", "CONSUMERS"]]
    rows += [[b["name"], *(str(b[k]) for k in ("values", "bytes", "history", "consumers"))] for b in buckets]
    print_table(rows)
    return EXIT_OK


def cmd_kv_rm(args: argparse.Namespace) -> int:
    from fx.event_models import check_bucket_name

    name = checked(check_bucket_name, args.bucket)
    with client(args) as fx:
        fx.delete_bucket(name)
    print(f"{name}: removed, with its keys")
    return EXIT_OK


def cmd_kv_put(args: argparse.Namespace) -> int:
    from fx.event_models import check_bucket_name, check_kv_key

    name = checked(check_bucket_name, args.bucket)
    key = checked(check_kv_key, args.key)
    with client(args) as fx:
        result = fx.kv_put(name, key, args.value)
    if args.output == "json":
        print_json(result)
        return EXIT_OK
    print(f"{result.bucket}: {result.key} set (revision {result.revision})")
    return EXIT_OK


def register(add: AddCommand) -> None:
    create = add("create", cmd_kv_create, "create a KV bucket (again: no change)", OUTPUT)
    create.add_argument("bucket", help="bucket name, e.g. users (what fx.yaml's `kv: {bucket: ...}` names)")
    create.add_argument("--history", type=int, default=1, help="values kept per key (default 1, at most 64)")
    create.add_argument("--max-bytes", type=int, default=-1, help="bytes kept (default -1: no limit)")

    add("ls", cmd_kv_ls, "list KV buckets (fx's own are not shown)", OUTPUT)

    put = add("put", cmd_kv_put, "set a key, e.g. to try a kv trigger", OUTPUT)
    put.add_argument("bucket")
    put.add_argument("key", help="e.g. eu.ann")
    put.add_argument("value")

    rm = add("rm", cmd_kv_rm, "remove a bucket and its keys (refused while a trigger watches it)")
    rm.add_argument("bucket")
