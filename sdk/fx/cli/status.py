"""`fx status`: where the platform's parts are and whether they answer, for an operator or a curious user."""

from __future__ import annotations

import argparse

from fx.cli.common import EXIT_FAILED, EXIT_OK, OUTPUT, AddCommand, client, print_json
from fx.cli.version import cli_version
from fx.errors import FxError

UNAVAILABLE = (502, 503, 504)  # the gateway answered for a controller it could not reach


def cmd_status(args: argparse.Namespace) -> int:
    with client(args) as fx:
        gateway = fx.gateway
        try:
            status = fx.status()
        except FxError as exc:
            if exc.status not in UNAVAILABLE:
                raise
            status, problem = None, str(exc)
    cli = cli_version()
    if args.output == "json":
        controller = status.model_dump() if status else {"error": problem}
        print_json({"gateway": gateway, "controller": controller, "cli": cli})
        return EXIT_OK if status else EXIT_FAILED
    print(f"gateway:     {gateway} (answering)")
    if status is None:
        print(f"controller:  not answering: {problem}")
        return EXIT_FAILED
    print(f"controller:  ok ({status.backend} backend, version {status.version})")
    print(f"functions:   {status.functions}")
    print(f"nats:        {status.nats_url}")
    if status.state_bytes:
        parts = ", ".join(f"{kind} {size / 2**20:.1f} MB" for kind, size in status.state_bytes.items())
        print(f"state dir:   {sum(status.state_bytes.values()) / 2**20:.1f} MB on disk ({parts})")
    if status.nats_creds:
        print(f"nats creds:  {status.nats_creds} (the platform's admin user: handle with care)")
        print(f"             e.g. nats --server {status.nats_url} --creds {status.nats_creds} sub 'orders.>'")
    else:
        print("nats creds:  none for an admin on this platform (the embedded mode keeps <state>/nats-auth/admin.creds)")
    print(f"cli:         version {cli}")
    return EXIT_OK


def register(add: AddCommand) -> None:
    add("status", cmd_status, "the gateway, the controller's health and version, the NATS URL, functions count", OUTPUT)
