"""`fx credentials create|ls|rm`: access keys the AWS CLI and boto3 sign the Lambda API's requests with."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, client, fetch, local_time, print_json, print_table
from fx.errors import InputError

HELP = "manage access keys for the Lambda API (the AWS CLI and boto3 sign with them)"
NAME_MAX = 64
PROFILE_RE = re.compile(r"^[\w.+-]+\Z")
REGION = "us-east-1"  # what a written profile gets when it names no region: fx's ARNs name it too


def _aws_file(variable: str, name: str) -> Path:
    return Path(os.environ.get(variable) or Path.home() / ".aws" / name)


def _update(path: Path, section: str, values: dict[str, str], replace: bool) -> None:
    """Set `values` in `section` of an AWS ini file (kept 0600, written whole); `replace` False keeps set keys."""
    import configparser
    import tempfile

    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise InputError(f"{path} is not an ini file the AWS CLI could read ({exc}); fix it, then retry") from None
    if not parser.has_section(section):
        parser.add_section(section)
    for key, value in values.items():
        if replace or not parser.has_option(section, key):
            parser.set(section, key, value)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # created 0600
    with os.fdopen(fd, "w") as f:
        parser.write(f)
    os.replace(tmp, path)


def write_profile(profile: str, key_id: str, secret: str) -> Path:
    """The key as an AWS CLI/boto3 profile (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials), with a region
    in its config (AWS_CONFIG_FILE or ~/.aws/config) unless it has one; the credentials file's path."""
    credentials = _aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
    keys = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    _update(credentials, profile, keys, replace=True)
    section = profile if profile == "default" else f"profile {profile}"
    _update(_aws_file("AWS_CONFIG_FILE", "config"), section, {"region": REGION}, replace=False)
    return credentials


def cmd_credentials_create(args: argparse.Namespace) -> int:
    if len(args.name) > NAME_MAX:
        raise InputError(f"--name is {len(args.name)} characters; at most {NAME_MAX}")
    if args.aws_profile is not None and not PROFILE_RE.match(args.aws_profile):
        message = f"--aws-profile {args.aws_profile!r} is not a profile name: use letters, digits, '.', '_', '-'"
        raise InputError(message)
    with client(args) as fx:
        issued = fx.create_credential(args.name)
    key_id, secret = issued["access_key_id"], issued["secret_access_key"]
    if args.aws_profile is not None:
        path = write_profile(args.aws_profile, key_id, secret)
        print(f"access key id {key_id}: written to profile {args.aws_profile} in {path}")
        return EXIT_OK
    if args.output == "json":
        print_json(issued)
        return EXIT_OK
    print(f"access key id:     {key_id}")
    print(f"secret access key: {secret}")
    print("The secret is shown this once. A profile for the AWS CLI and boto3 (~/.aws/credentials):\n")
    print(f"[fx]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}")
    return EXIT_OK


def cmd_credentials_ls(args: argparse.Namespace) -> int:
    keys = fetch(args, "/system/credentials")  # a light read
    if args.output == "json":
        print_json(keys)
        return EXIT_OK
    rows = [["ACCESS KEY ID", "NAME", "CREATED"]]
    for key in keys:
        created = local_time(key["created_at"])
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
    create.add_argument(
        "--aws-profile",
        metavar="PROFILE",
        help="write the key into this AWS CLI/boto3 profile (~/.aws/credentials, a region in ~/.aws/config)"
        " instead of printing it",
    )
    add("ls", cmd_credentials_ls, "list access keys (never their secrets)", OUTPUT)
    add("rm", cmd_credentials_rm, "revoke an access key").add_argument("key_id", metavar="KEY_ID")
