"""`fx status`: where the platform's parts are and whether they answer, for an operator or a curious user."""

from __future__ import annotations

import argparse

from fx.cli.common import EXIT_FAILED, EXIT_OK, OUTPUT, AddCommand, fetch, gateway_url, print_json
from fx.cli.version import cli_version
from fx.errors import FxError

UNAVAILABLE = (502, 503, 504)  # the gateway answered for a controller it could not reach


def cmd_status(args: argparse.Namespace) -> int:
    gateway = gateway_url(args)
    try:
        status = fetch(args, "/system/status")  # PlatformStatus's JSON (a light read)
    except FxError as exc:
        if exc.status not in UNAVAILABLE:
            raise
        status, problem = None, str(exc)
    cli = cli_version()
    if args.output == "json":
        controller = status or {"error": problem}
        print_json({"gateway": gateway, "controller": controller, "cli": cli})
        return EXIT_OK if status else EXIT_FAILED
    print(f"gateway:     {gateway} (answering)")
    if status is None:
        print(f"controller:  not answering: {problem}")
        return EXIT_FAILED
    print(f"controller:  ok ({status['backend']} backend, version {status['version']})")
    print(f"functions:   {status['functions']}")
    print(f"nats:        {(nats := status['nats_url'])}")
    if state := status.get("state_bytes"):
        parts = ", ".join(f"{kind} {size / 2**20:.1f} MB" for kind, size in state.items())
        print(f"state dir:   {sum(state.values()) / 2**20:.1f} MB on disk ({parts})")
    if creds := status.get("nats_creds"):
        print(f"nats creds:  {creds} (the platform's admin user: handle with care)")
        print(f"             e.g. nats --server {nats} --creds {creds} sub 'orders.>'")
    else:
        print("nats creds:  none for an admin on this platform (the embedded mode keeps <state>/nats-auth/admin.creds)")
    print(f"cli:         version {cli}")
    return EXIT_OK


def register(add: AddCommand) -> None:
    add("status", cmd_status, "the gateway, the controller's health and version, the NATS URL, functions count", OUTPUT)
