"""`fx credentials create|ls|rm`: access keys the AWS CLI and boto3 sign the Lambda API's requests with."""

from __future__ import annotations

import argparse
from datetime import datetime

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, client, local_time, print_json, print_table
from fx.errors import InputError

HELP = "manage access keys for the Lambda API (the AWS CLI and boto3 sign with them)"
NAME_MAX = 64


def cmd_credentials_create(args: argparse.Namespace) -> int:
    if len(args.name) > NAME_MAX:
        raise InputError(f"--name is {len(args.name)} characters; at most {NAME_MAX}")
    with client(args) as fx:
        issued = fx.create_credential(args.name)
    if args.output == "json":
        print_json(issued)
        return EXIT_OK
    key_id, secret = issued["access_key_id"], issued["secret_access_key"]
    print(f"access key id:     {key_id}")
    print(f"secret access key: {secret}")
    print("The secret is shown this once. A profile for the AWS CLI and boto3 (~/.aws/credentials):\n")
    print(f"[fx]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}")
    return EXIT_OK


def cmd_credentials_ls(args: argparse.Namespace) -> int:
    with client(args) as fx:
        keys = fx.list_credentials()
    if args.output == "json":
        print_json(keys)
        return EXIT_OK
    rows = [["ACCESS KEY ID", "NAME", "CREATED"]]
    for key in keys:
        created = local_time(datetime.fromisoformat(key["created_at"]))
        rows.append([key["access_key_id"], key["name"] or "-", created])
    print_table(rows)
    return EXIT_OK


def cmd_credentials_rm(args: argparse.Namespace) -> int:
    with client(args) as fx:
        fx.delete_credential(args.key_id)
    print(f"{args.key_id}: removed; requests signed with it are refused from now on")
    return EXIT_OK


def register(add: AddCommand) -> None:
    what = "issue an access key id and secret (the secret is shown once)"
    create = add("create", cmd_credentials_create, what, OUTPUT)
    create.add_argument("--name", default="", help="a label: who or what uses the key")
    add("ls", cmd_credentials_ls, "list access keys (never their secrets)", OUTPUT)
    add("rm", cmd_credentials_rm, "revoke an access key").add_argument("key_id", metavar="KEY_ID")
