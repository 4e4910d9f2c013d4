"""A replica's life: prepare the code, import the handler, listen, serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable

import uvloop

from . import artifact, context, faults, loader, logs, settings
from .faults import Fault
from .invoker import Invoker
from .server import Server

Report = Callable[[dict], None]  # how the replica tells its starter "ready" / "init_error"


def run(report: Report, started: float | None = None) -> int:
    """Serve until SIGTERM; returns the process exit code. `started` is a perf_counter() value."""
    started = time.perf_counter() if started is None else started
    logs.setup()
    logs.write(f"INIT_START Runtime Version: python:{sys.version_info.major}.{sys.version_info.minor}\n")
    try:
        try:
            config = settings.load()
        except ValueError as e:
            raise Fault("Runtime.InvalidConfiguration", str(e)) from None
        if config.artifact:
            artifact.prepare(config.artifact, config.artifact_sha256, config.code_dir)
        loader.add_task_root(config.code_dir)
        context.configure(os.environ, config.function_arn)
        handler = loader.load(config.handler)
    except Fault as fault:
        return _init_failed(report, faults.from_fault(fault), started)
    except Exception as e:
        return _init_failed(report, faults.from_exception(e), started)

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    invoker = Invoker(handler, config, 0.0)
    server = Server(invoker, config)
    try:
        endpoint = loop.run_until_complete(server.listen())
    except OSError as e:
        return _init_failed(
            report,
            faults.error(f"Cannot listen on {config.listen_host}:{config.listen_port}: {e}", "Runtime.ListenError", []),
            started,
        )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.shutdown)
    invoker.init_ms = (time.perf_counter() - started) * 1000
    logs.flush()
    # Report from inside the running loop: uvloop only watches for signals while it runs, so a
    # SIGTERM sent right after "ready" (a quick drain, a delete) would otherwise never be handled.
    loop.call_soon(report, {"event": "ready", "endpoint": endpoint, "init_ms": round(invoker.init_ms, 3)})
    loop.run_until_complete(server.closed)
    logs.flush()
    return server.exit_code


def _init_failed(report: Report, err: dict, started: float) -> int:
    init_ms = (time.perf_counter() - started) * 1000
    logs.write(faults.log_text(err))
    logs.write(
        f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: init\tStatus: error\tError Type: {err['errorType']}\n"
    )
    logs.flush()
    report({"event": "init_error", "errorType": err["errorType"], "errorMessage": err["errorMessage"]})
    return 1
