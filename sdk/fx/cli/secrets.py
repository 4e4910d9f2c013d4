"""`fx secret set|ls|rm`: values a function gets as environment variables, never shown."""

from __future__ import annotations

import argparse
import sys

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, checked, client, fetch, local_time, print_json, print_table

HELP = "manage secrets: values a function gets as environment variables, never shown"


def cmd_secret_set(args: argparse.Namespace) -> int:
    from fx import secret_args
    from fx.models import check_secret_name

    name = checked(check_secret_name, args.name)
    values = secret_args.values_from(args.values, args.from_env_file, sys.stdin)
    with client(args) as fx:
        info = fx.set_secret(name, values)
    if args.output == "json":
        print_json(info)
        return EXIT_OK
    print(f"{info.name}: set, keys {', '.join(info.keys)}")
    if info.used_by:
        print(f"new replicas of {', '.join(info.used_by)} get these values; running ones keep theirs until replaced")
    return EXIT_OK


def cmd_secret_ls(args: argparse.Namespace) -> int:
    secrets = fetch(args, "/system/secrets")  # SecretInfo's JSON (a light read)
    if args.output == "json":
        print_json(secrets)
        return EXIT_OK
    rows = [["NAME", "KEYS", "UPDATED", "USED BY"]]
    for info in secrets:
        updated = local_time(info["updated_at"])
        rows.append([info["name"], ",".join(info["keys"]), updated, ",".join(info.get("used_by", [])) or "-"])
    print_table(rows)
    return EXIT_OK


def cmd_secret_rm(args: argparse.Namespace) -> int:
    from fx.models import check_secret_name

    name = checked(check_secret_name, args.name)
    with client(args) as fx:
        fx.delete_secret(name)
    print(f"{name}: removed")
    return EXIT_OK


def register(add: AddCommand) -> None:
    secret_set = add(
        "set",
        cmd_secret_set,
        "create or replace a secret: it becomes exactly the keys given (functions name it in fx.yaml `secrets:`)",
        OUTPUT,
    )
    secret_set.add_argument("name", help="secret name (DNS-1123: lower-case letters, digits, '-')")
    secret_set.add_argument(
        "values", nargs="*", metavar="KEY=VALUE", help="KEY=- reads that value from stdin (a trailing newline dropped)"
    )
    secret_set.add_argument("--from-env-file", metavar="FILE", help="read KEY=VALUE lines (dotenv syntax) from FILE")
    add("ls", cmd_secret_ls, "list secrets: names, keys, when updated, which functions use them", OUTPUT)
    add("rm", cmd_secret_rm, "remove a secret no function uses").add_argument("name")
