"""fx-controller: the admin API on uvicorn + uvloop, the controller loops, and a clean drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

import fx.state_dir as state_dir
import uvicorn
import uvloop
from fx.nats_auth import NatsAuthError
from fx.tokens import load_or_create_token

from . import settings as settings_mod
from .api.app import create_app
from .api.metrics_listener import metrics_listener
from .controller import Controller, local_backend
from .metrics import Metrics

# Open connections (a `fx logs -f`, a held call) get this long after SIGTERM; then the server closes them.
GRACEFUL_SHUTDOWN_S = 5
# From the stop's start (uvicorn done: at most 5 s after SIGTERM) to exit at the latest, whatever hangs (a thread
# the interpreter joins at exit, a task that ignores its cancellation): then the tasks still running and every
# thread's stack go to stderr and the process exits 1. The kubelet's SIGKILL at 60 s would say nothing of why.
EXIT_S = 50


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after serving, which would kill us before the replicas are drained."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exiting = asyncio.Event()  # set on SIGTERM/SIGINT, before the graceful shutdown begins

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._exit_requested, sig)
        yield

    def _exit_requested(self, sig: signal.Signals) -> None:
        logging.getLogger("fx_controller").info("%s: shutting down", signal.Signals(sig).name)
        self.should_exit = True
        self.exiting.set()


def _freeze_startup() -> None:
    """Exempt what start-up made (imports, stores, the app: ~100,000 objects) from garbage collection: a full
    collection walked them all, 40-70 ms with the event loop stopped, and an activation waiting meanwhile was a
    cold start's p99. Objects made later are still collected."""
    gc.freeze()


def _lost_lease() -> None:
    # Another controller may lead by now: stop at once rather than drain, which would fight it.
    logging.getLogger("fx_controller").error("lost leadership: exiting")
    os._exit(70)


async def _serve(s: settings_mod.Settings) -> None:
    s.token = s.token or load_or_create_token(s.token_file)  # type: ignore[arg-type]
    if s.backend == "kubernetes":  # imported only here: the local mode needs no Kubernetes client
        await _serve_kubernetes(s)
        return
    controller = Controller(s, local_backend)
    await controller.start()
    _freeze_startup()
    scrape = metrics_listener(s.metrics_listen, controller.metrics.render) if s.metrics_listen else None
    try:
        if scrape:
            await scrape.start()
        await _server(s, create_app(controller, s.token)).serve()
    finally:
        if scrape:
            await scrape.stop()
        await controller.stop()


async def _serve_kubernetes(s: settings_mod.Settings) -> None:
    """Ready at once as a standby (the admin port answers its health check), leading once the Lease is ours."""
    from .backends.kubernetes import backend as kubernetes
    from .backends.kubernetes.leader import Leadership, lead
    from .backends.kubernetes.standby import StandbyGate

    gate = StandbyGate()
    server = _server(s, gate)
    serving = asyncio.create_task(server.serve())
    leadership: Leadership | None = None
    controller: Controller | None = None
    standing_by = Metrics()  # the families, no function series: what a standby's scrape shows
    scrape = None
    if s.metrics_listen:
        scrape = metrics_listener(
            s.metrics_listen, lambda: (controller.metrics if controller else standing_by).render()
        )
        await scrape.start()

    async def take_over() -> None:
        nonlocal leadership, controller
        # Ahead of the Lease (the NATS identities are made once, race-free, then read): less to do on takeover.
        await kubernetes.prepare_nats(s)
        leadership = await lead(on_lost=_lost_lease)
        started = Controller(s, kubernetes.create)
        await started.start()
        _freeze_startup()
        controller = started
        gate.app = create_app(controller, s.token)
        await leadership.serve()

    leading = asyncio.create_task(take_over())
    exiting = asyncio.create_task(server.exiting.wait())
    try:
        await asyncio.wait({serving, leading}, return_when=asyncio.FIRST_COMPLETED)
        if leading.done():
            leading.result()  # a failure to start is this process's failure
            await asyncio.wait({serving, exiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exit_deadline(EXIT_S, asyncio.get_running_loop())
        server.should_exit = True  # a stop requested while standing by, or a failed start
        leading.cancel()
        exiting.cancel()
        await asyncio.gather(leading, exiting, return_exceptions=True)
        # Stop acting, then give the Lease up at once, before uvicorn's graceful shutdown: it waits for open
        # connections (a gateway's, a `fx logs -f`), and the Lease renewed meanwhile kept the standby waiting
        # until the kubelet's SIGKILL (60 s after a forced delete). The replicas are pods that finish their
        # requests on their own (preStop, grace); the next leader removes them after emptying the route tables,
        # so draining them here would only delay the takeover.
        if controller:
            await controller.stop(drain_replicas=False)
        if leadership:
            await leadership.end()
        await asyncio.gather(serving, return_exceptions=True)
        if scrape:
            await scrape.stop()


def exit_deadline(seconds: float, loop: asyncio.AbstractEventLoop) -> None:
    """Exit within `seconds` from now, however the stop goes, saying what still ran on `loop` and in each thread."""

    def give_up() -> None:
        try:  # read from another thread: a diagnostic, so a set changing meanwhile only costs the names
            running = sorted(getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks(loop))
        except RuntimeError:
            running = ["(not readable)"]
        logging.getLogger("fx_controller").error(
            "not stopped %g s after being told to: exiting; tasks still running: %s; every thread's stack follows",
            seconds,
            ", ".join(running),
        )
        faulthandler.dump_traceback(all_threads=True)
        os._exit(1)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()


def _server(s: settings_mod.Settings, app) -> _Server:
    config = uvicorn.Config(
        app,
        host=s.host,
        port=s.port,
        loop="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return _Server(config)


def main(argv: list[str] | None = None) -> None:
    s = settings_mod.parse(argv)
    try:  # held until this process exits; a second controller (or fx up) on this state dir is refused
        state_dir.adopt(s.state_dir, "fx-controller", os.environ.pop(state_dir.LOCK_FD_ENV, None))
    except state_dir.StateDirError as exc:
        print(f"fx-controller: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nats").setLevel(logging.WARNING)
    try:
        uvloop.run(_serve(s))
    except NatsAuthError as exc:  # e.g. --nats-auth-dir without the signing key: one line, not a traceback
        logging.getLogger("fx_controller").error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
