"""A replica's life: prepare the code, import the handler, listen, serve, drain on SIGTERM.

A template (template.py) stops after the import, runs the before-snapshot hooks and forks a replica per request:
each fork runs the after-restore hooks, then listens and serves as any replica."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvloop

from . import artifact, context, faults, loader, logs, runtime_api, settings, snapstart, template
from .faults import Fault
from .invoker import Invoker
from .server import Server

if TYPE_CHECKING:
    from .sandbox import Confinement

Report = Callable[[dict], None]  # how the replica tells its starter "ready" / "init_error"


def run(
    report: Report,
    started: float | None = None,
    confinement: Confinement | None = None,
    channel: int | None = None,
) -> int:
    """Serve until SIGTERM; returns the process exit code. `started` is a perf_counter() value.

    With a `confinement` (the zygote's sandbox), the code is verified and extracted with the zygote's
    rights, then the process is confined before anything of the function is imported. With a `channel` (the
    zygote's socket), this process becomes the function's template: `report` tells the template ready, and
    only the replicas it forks go on to serve."""
    started = time.perf_counter() if started is None else started
    logs.setup()
    logs.init_start()
    try:
        try:
            config = settings.load()
        except ValueError as e:
            raise Fault("Runtime.InvalidConfiguration", str(e)) from None
        for name in ("FX_ARTIFACT_URL", "FX_LAYER_URL"):  # read: the handler has no use for the artifact server
            os.environ.pop(name, None)
        if config.artifact:
            artifact.prepare(config.artifact, config.artifact_sha256, config.code_dir, config.artifact_url)
        if config.layer:
            artifact.prepare(config.layer, config.layer_sha256, config.layer_dir, config.layer_url)
        if confinement is not None:
            config = _confined(config, confinement)
        _drop_plumbing(os.environ)
        loader.add_task_root(config.code_dir, config.layer_dir if config.layer else None)
        if channel is not None and config.relays:
            raise Fault("Runtime.TemplateError", "a custom runtime (FX_BOOTSTRAP, FX_RUNTIME_API) has no template")
        if not config.relays:
            if channel is not None:
                os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"  # Lambda's value for a SnapStart init
            snapstart.install_alias()
            context.configure(os.environ, config.function_arn)
            handler = loader.load(config.handler)
            if channel is not None:
                snapstart.before_snapshot()
    except Fault as fault:
        return faults.init_failed(report, faults.from_fault(fault), started)
    except Exception as e:
        return faults.init_failed(report, faults.from_exception(e), started)
    if config.relays:
        return runtime_api.run(config, report, started)
    control_fd = confinement.control_fd if confinement else None
    if channel is None:
        loop, invoker, server = _prepare(config, handler, control_fd)
        listening = _listen(loop, server)
        if isinstance(listening, dict):
            return faults.init_failed(report, listening, started)
        return _serve(config, report, started, loop, invoker, server, listening)
    report({"event": "ready", "init_ms": round((time.perf_counter() - started) * 1000, 3)})
    # From here on in a spare forked from the template: made ready to serve before it is needed.
    fork = template.serve(channel)
    loop, invoker, server = _prepare(config, handler, fork.control_fd)
    server.settings = config = template.own_socket(config)
    prepared = _prepare_spare(fork, loop, server)
    # a prepared spare may be claimed by a caller (template.Fork.wait); an unprepared one is never named to any
    sockets = server.listener.sockets if server.listener and not isinstance(prepared, dict) else ()
    fork.wait(config.listen_path, [sock.fileno() for sock in sockets])
    if isinstance(prepared, dict):
        return faults.init_failed(fork.report, prepared, fork.started)
    return _serve(config, fork.report, fork.started, loop, invoker, server, prepared)


def _prepare_spare(fork: template.Fork, loop: asyncio.AbstractEventLoop, server: Server) -> str | dict:
    """All a spare's replica would do before serving, done while no request waits: listen, the after-restore
    hooks, one request to itself through its server and invoker (template.warm). The endpoint, told the zygote;
    or the init error its replica will report."""
    listening = _listen(loop, server)
    if isinstance(listening, dict):
        return listening
    try:
        settings.new_log_stream(os.environ, server.settings)
        snapstart.after_restore()
    except Exception as e:
        err = faults.from_exception(e)
        err["errorType"] = "Runtime.AfterRestoreError"
        return err
    template.warm(loop, server, listening)
    fork.prepared(listening)
    return listening


def _prepare(
    config: settings.Settings, handler: loader.Handler, control_fd: int | None
) -> tuple[asyncio.AbstractEventLoop, Invoker, Server]:
    # Not set as the thread's event loop: handlers must find none, as on Lambda (see Invoker.invoke).
    loop = uvloop.new_event_loop()
    invoker = Invoker(handler, config, 0.0, control_fd)
    if control_fd is not None:  # signal.signal, not the loop's: it must run while the handler runs
        from .sandbox import OOM_SIGNAL  # loaded already: a control fd comes with a confinement

        signal.signal(OOM_SIGNAL, lambda signum, frame: invoker.watchdog.alarm())
    return loop, invoker, Server(invoker, config, loop)


def _listen(loop: asyncio.AbstractEventLoop, server: Server) -> str | dict:
    """The endpoint the server listens on, or the init error saying why it cannot."""
    try:
        return loop.run_until_complete(server.listen())
    except OSError as e:
        return faults.error(f"Cannot listen on {server.settings.listen}: {e}", "Runtime.ListenError", [])


def _serve(
    config: settings.Settings,
    report: Report,
    started: float,
    loop: asyncio.AbstractEventLoop,
    invoker: Invoker,
    server: Server,
    endpoint: str,
) -> int:
    """Say ready (listening on `endpoint`), serve until SIGTERM; the exit code."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.shutdown)
    invoker.listen_fds = [sock.fileno() for sock in server.listener.sockets] if server.listener else []
    invoker.init_ms = (time.perf_counter() - started) * 1000
    logs.flush()
    # Report from inside the running loop: uvloop only watches for signals while it runs, so a
    # SIGTERM sent right after "ready" (a quick drain, a delete) would otherwise never be handled.
    loop.call_soon(report, {"event": "ready", "endpoint": endpoint, "init_ms": round(invoker.init_ms, 3)})
    loop.run_until_complete(server.closed)
    logs.flush()
    return server.exit_code


def _confined(config: settings.Settings, confinement: Confinement) -> settings.Settings:
    """Enter the sandbox; the code and layer directories (and a bootstrap in the code) as the replica now sees them."""
    try:
        code_dir, layer_dir = confinement.enter(config.code_dir, config.layer_dir if config.layer else None)
    except OSError as e:
        raise Fault("Runtime.SandboxError", f"Cannot enter the sandbox: {e}") from None
    bootstrap = config.bootstrap
    if bootstrap and bootstrap.startswith(config.code_dir + "/"):
        bootstrap = code_dir + bootstrap[len(config.code_dir) :]
    os.environ["LAMBDA_TASK_ROOT"] = code_dir
    return dataclasses.replace(config, code_dir=code_dir, layer_dir=layer_dir or "", bootstrap=bootstrap)


def _drop_plumbing(env: os._Environ[str]) -> None:
    """The backend's FX_* variables are read; the function sees none of them but its granted NATS ones."""
    for name in [n for n in env if n.startswith("FX_") and not n.startswith("FX_NATS_")]:
        del env[name]
