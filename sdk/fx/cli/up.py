"""`fx up`: the embedded platform in the foreground, with the examples deployed."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from fx import config, deploy, manifest
from fx.cli.common import EXIT_FAILED, EXIT_OK, AddCommand, err
from fx.client import Client
from fx.errors import FxError, InputError
from fx.platform import Platform


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    platform = Platform(state_dir, gateway_port=args.port)
    # SIGTERM (e.g. from a service manager) stops as cleanly as Ctrl-C does, and Ctrl-C works even when
    # the shell started us with SIGINT ignored (a background job).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        err(f"starting fx (state in {state_dir}/) ...")
        platform.start()
        settings = config.Settings(platform.gateway_url, platform.token)
        err(f"gateway on {platform.gateway_url}; CLI config saved to {config.write_config(settings)}")
        if protections := platform.protections():
            err(protections)
        functions = _deploy_examples(Path(args.examples), settings) if args.examples else {}
        _print_welcome(platform, functions)
        while (dead := platform.exited()) is None:
            time.sleep(0.5)
        err(f"fx: {dead} stopped unexpectedly; the last lines of its log:\n{platform.log_tail(dead)}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err("\nstopping fx ...")
        return EXIT_OK
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        platform.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _deploy_examples(examples: Path, settings: config.Settings) -> dict[str, list[str]]:
    """The functions deployed, each with its event triggers (none: it is called over HTTP)."""
    manifests = [examples / manifest.MANIFEST] if (examples / manifest.MANIFEST).is_file() else []
    manifests += sorted(examples.glob(f"*/{manifest.MANIFEST}"))
    if not manifests:
        err(f"fx: no {manifest.MANIFEST} in {examples} or its subfolders; nothing to deploy")
    deployed: dict[str, list[str]] = {}
    with Client(settings.gateway, settings.token) as client:
        for path in manifests:
            try:
                results = deploy.deploy(client, path, progress=err)
            except (InputError, FxError) as exc:
                err(f"fx: {path}: not deployed: {exc}")
                continue
            triggers = {d.name: d.trigger_keys for d in manifest.load(path)}
            for result in results:
                err(deploy.describe_result(result))
                deployed[result.function] = triggers.get(result.function, [])
    return deployed


def _print_welcome(platform: Platform, functions: dict[str, list[str]]) -> None:
    print(f"\nfx is up on {platform.gateway_url}")
    for name, triggers in functions.items():
        if triggers:  # its events come from its triggers, not from a caller
            print(f"  {name} runs on events: {', '.join(triggers)}")
            continue
        print(f"  curl {platform.gateway_url}/function/{name}/any/path?x=1")
        print(f'  fx invoke {name} --data \'{{"name": "you"}}\'')
    print("  fx init NAME && cd NAME && fx deploy     # your own function")
    print("Ctrl-C stops fx; `fx up` again brings back what was deployed.", flush=True)


def register(add: AddCommand) -> None:
    up = add("up", cmd_up, "run the embedded platform (NATS, controller, gateway) in the foreground", connects=False)
    up.add_argument("--state-dir", default=".fx", help="where deployed functions, the token and logs live")
    up.add_argument("--port", type=int, default=8080, help="the gateway's port on 127.0.0.1")
    up.add_argument("--examples", metavar="DIR", help="deploy the functions found in DIR and its subfolders")
