"""`fx apikey create|ls|rm`: keys callers send as `x-api-key` to API routes with `api_key: true`."""

from __future__ import annotations

import argparse
from typing import Any

from fx.cli.common import (
    EXIT_OK,
    OUTPUT,
    AddCommand,
    built,
    checked,
    client,
    fetch,
    local_time,
    print_json,
    print_table,
)

HELP = "manage API keys of API routes (x-api-key): throttles and quotas per key"


def _limits(key: dict[str, Any]) -> str:
    """A key's limits (ApiKeyInfo's JSON, or an issued key's) in a few words."""
    parts = []
    if key["rate"] is not None:
        parts.append(f"{key['rate']:g}/s burst {key['burst']}")
    if (quota := key["quota"]) is not None:
        parts.append(f"quota {quota['limit']}/{quota['period']}")
    return ", ".join(parts) or "-"


def cmd_apikey_create(args: argparse.Namespace) -> int:
    from fx.api_key_models import ApiKeySpec, QuotaSpec

    quota = checked(QuotaSpec.parse, args.quota) if args.quota is not None else None
    spec = built(ApiKeySpec, name=args.name, api=args.api, rate=args.rate, burst=args.burst, quota=quota)
    with client(args) as fx:
        issued = fx.create_api_key(spec.name, spec.api, spec.rate, spec.burst, spec.quota)
    if args.output == "json":
        print_json(issued)
        return EXIT_OK
    print(f"API key {issued.name} (id {issued.id}) for API {issued.api}, limits: {_limits(issued.model_dump())}")
    print(f"key: {issued.value}")
    print("The key is shown this once (fx stores its sha256 only). Callers send it as the x-api-key header.")
    return EXIT_OK


def cmd_apikey_ls(args: argparse.Namespace) -> int:
    keys = fetch(args, "/system/apikeys")  # ApiKeyInfo's JSON (a light read)
    if args.output == "json":
        print_json(keys)
        return EXIT_OK
    rows = [["NAME", "ID", "API", "LIMITS", "TODAY", "THIS MONTH", "CREATED"]]
    for key in keys:
        today, month = str(key["used_today"]), str(key["used_month"])
        created = local_time(key["created_at"])
        rows.append([key["name"], key["id"], key["api"], _limits(key), today, month, created])
    print_table(rows)
    return EXIT_OK


def cmd_apikey_rm(args: argparse.Namespace) -> int:
    with client(args) as fx:
        fx.delete_api_key(args.name)
    print(f"{args.name}: removed; requests with it are refused (403) once the gateways have the change")
    return EXIT_OK


def register(add: AddCommand) -> None:
    create = add("create", cmd_apikey_create, "issue a key for an API (the key is shown once)", OUTPUT)
    create.add_argument("name", metavar="NAME", help="the key's name (lower-case letters, digits, '-')")
    create.add_argument("--api", required=True, help="the API whose routes with `api_key: true` take it")
    create.add_argument("--rate", type=float, help="requests per second, all gateways together (token bucket)")
    create.add_argument("--burst", type=int, help="the bucket's size (default: the rate, rounded up)")
    create.add_argument("--quota", metavar="N/day|N/month", help="requests per UTC day or month, e.g. 1000/day")
    add("ls", cmd_apikey_ls, "list keys: limits, usage today and this month (UTC), never their values", OUTPUT)
    add("rm", cmd_apikey_rm, "remove a key: requests with it are refused").add_argument("name", metavar="NAME")
