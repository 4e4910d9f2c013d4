"""`fx up`: the embedded platform in the foreground, with the examples deployed."""

from __future__ import annotations

import argparse
import os
import re
import signal
import time
from pathlib import Path

from fx import config, interpreters, log_files
from fx.cli.common import EXIT_OK, AddCommand, err
from fx.errors import FxError, InputError
from fx.flags import option
from fx.paths import MANIFEST
from fx.platform import PLATFORM_LOGS, Platform, Restarts


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    try:  # the controller looks for the others itself; a named one that is not that Python stops us here
        named = interpreters.parse([*interpreters.from_env(os.environ), *args.interpreter])
        interpreters.discover(named, wanted=named)
    except ValueError as e:
        raise InputError(f"{e}; see `fx up --help`") from None
    restarts = Restarts(args.restart_delay, args.restart_delay_max, args.restart_stable)
    if not 0 < restarts.first <= restarts.limit or restarts.stable <= 0:
        raise InputError(
            "--restart-delay must be above 0 and at most --restart-delay-max, and --restart-stable above 0"
        )
    try:
        platform_logs = log_files.Limit(args.platform_log_max_bytes, args.platform_log_keep)
        function_logs = log_files.Limit(args.log_max_bytes, args.log_keep)
    except ValueError:
        raise InputError(
            "--log-max-bytes and --platform-log-max-bytes must be at least 1, --log-keep and"
            " --platform-log-keep at least 0"
        ) from None
    platform = Platform(
        state_dir,
        gateway_port=args.port,
        interpreters=named,
        restarts=restarts,
        on_restart=lambda message: err(f"fx: {message}"),
        platform_logs=platform_logs,
        function_logs=function_logs,
        controller_metrics=_controller_metrics(args.controller_metrics) if args.controller_metrics else None,
    )
    # SIGTERM (e.g. from a service manager) stops as cleanly as Ctrl-C does, and Ctrl-C works even when
    # the shell started us with SIGINT ignored (a background job).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        err(f"starting fx (state in {state_dir}/) ...")
        platform.start()
        settings = config.Settings(platform.gateway_url, platform.token)
        err(f"gateway on {platform.gateway_url}")
        context = _save_context(args.context or config.LOCAL_CONTEXT, settings, args.use_context)
        if protections := platform.protections():
            err(protections)
        examples = _deploy_examples(Path(args.examples), settings) if args.examples else {}
        _print_welcome(platform, examples, context)
        while True:  # the platform's supervisor restarts what crashes; only a signal ends this
            time.sleep(3600)
    except KeyboardInterrupt:
        err("\nstopping fx ...")
        return EXIT_OK
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        platform.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _controller_metrics(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--controller-metrics {value!r} is not HOST:PORT, e.g. 127.0.0.1:9091")
    return host, int(port)


def _save_context(name: str, settings: config.Settings, use: bool) -> str | None:
    """Save this platform as a context; switch to it only when asked or when none is current.

    Returns the context the printed commands must name (None: the CLI uses this one already).
    """
    with config.update() as (file, path):
        previous = file.current
        file.put(name, settings)
        if use or previous is None:
            file.current = name
        current = file.current
    if current == name:
        back = (
            f" (it used {previous!r}: `fx context use {previous}` switches back)"
            if previous not in (None, name)
            else ""
        )
        err(f"CLI context {name!r} saved to {path}; the CLI uses it now{back}")
        return None
    err(
        f"CLI context {name!r} saved to {path}; the CLI still uses context {current!r}.\n"
        f"  `fx context use {name}` switches to this platform; `fx --context {name} ...` or FX_CONTEXT={name}"
        " uses it for one command; `fx up --use-context` switches at start"
    )
    return name


def _deploy_examples(examples: Path, settings: config.Settings) -> dict[Path, dict[str, list[str]]]:
    """The functions deployed, by the folder of their fx.yaml, each with its event triggers (none: HTTP)."""
    from fx import deploy, manifest
    from fx.client import Client

    manifests = [examples / MANIFEST] if (examples / MANIFEST).is_file() else []
    manifests += sorted(examples.glob(f"*/{MANIFEST}"))
    if not manifests:
        err(f"fx: no {MANIFEST} in {examples} or its subfolders; nothing to deploy")
    deployed: dict[Path, dict[str, list[str]]] = {}
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
                deployed.setdefault(path.parent, {})[result.function] = triggers.get(result.function, [])
    return deployed


def _print_welcome(platform: Platform, examples: dict[Path, dict[str, list[str]]], context: str | None) -> None:
    """How to try each example, as commands that work when typed: those its README marks, else a generic call.

    Every indented line is a command (or a shell comment); tests/integration/test_docs.py runs them.
    """
    from fx import docblocks

    url = platform.gateway_url
    lines = []
    for folder, functions in examples.items():
        try:
            declared = docblocks.try_commands(folder)
        except ValueError as exc:  # a README's marking is broken: say so, and fall back to the generic hints
            err(f"fx: {folder / docblocks.README}: {exc}")
            declared = []
        if declared:
            lines += [f"# {', '.join(functions)} ({folder}/{docblocks.README}):"]
            lines += [docblocks.localize(c, url) for c in declared]
            continue
        for name, triggers in functions.items():
            # A function run by events gets a hint only its README can give; an HTTP call shows any answer.
            lines.append(
                f"# {name} runs on events: {', '.join(triggers)}" if triggers else f"curl -i {url}/function/{name}/"
            )
    lines.append("fx init my-function && cd my-function && fx deploy     # your own function")
    print(f"\nfx is up on {url}; try:")
    for line in lines:
        for part in (_with_context(line, context) if context else line).splitlines():
            print(f"  {part}")
    print("Ctrl-C stops fx; `fx up` again brings back what was deployed.", flush=True)


def _with_context(command: str, context: str) -> str:
    """The command with every `fx` call naming the context, for when the CLI's current one is another."""
    return re.sub(r"(^|&&|\|\||;|\|)(\s*)fx ", rf"\1\2fx --context {context} ", command, flags=re.M)


def register(add: AddCommand) -> None:
    up = add("up", cmd_up, "run the embedded platform (NATS, controller, gateway) in the foreground", connects=False)
    up.add_argument("--state-dir", default=".fx", help="where deployed functions, the token and logs live")
    up.add_argument("--port", type=int, default=8080, help="the gateway's port on 127.0.0.1")
    up.add_argument("--examples", metavar="DIR", help="deploy the functions found in DIR and its subfolders")
    up.add_argument(
        "--controller-metrics",
        metavar="HOST:PORT",
        help="also serve the controller's /metrics here, alone and without the admin token, for a Prometheus"
        " (the controller's own port changes at each start)",
    )
    up.add_argument(
        "--use-context",
        action="store_true",
        help="make the CLI use this platform's context (named by --context, default local) even when another one"
        " is current (without it: only when none is)",
    )
    defaults = Restarts()
    up.add_argument(
        "--restart-delay",
        type=float,
        default=defaults.first,
        metavar="SECONDS",
        help="a component (nats-server, controller, gateway) that exits is restarted after this long, doubling"
        " with each restart in a row (default %(default)s)",
    )
    up.add_argument(
        "--restart-delay-max",
        type=float,
        default=defaults.limit,
        metavar="SECONDS",
        help="the longest wait before a restart (default %(default)s)",
    )
    up.add_argument(
        "--restart-stable",
        type=float,
        default=defaults.stable,
        metavar="SECONDS",
        help="a component that ran this long after a restart is restarted again after --restart-delay"
        " (default %(default)s)",
    )
    for flag, default, meaning in (
        ("--log-max-bytes", log_files.FUNCTION_LOGS.max_bytes, "a function's log rotates once over this size"),
        ("--log-keep", log_files.FUNCTION_LOGS.keep, "rotated files kept of each function's log"),
        (
            "--platform-log-max-bytes",
            PLATFORM_LOGS.max_bytes,
            "a component's log (logs/platform/) rotates once over this size",
        ),
        ("--platform-log-keep", PLATFORM_LOGS.keep, "rotated files kept of each component's log"),
    ):
        option(up, flag, int, default, f"{meaning} (default {default})")
    up.add_argument(
        "--interpreter",
        action="append",
        default=[],
        metavar="RUNTIME=PATH",
        help="run functions of RUNTIME (e.g. python3.12) on the Python at PATH; repeatable. Without it fx looks for"
        f" python3.X on PATH and in pyenv (~/.pyenv/versions) [{interpreters.ENV}]",
    )
