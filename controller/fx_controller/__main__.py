"""fx-controller: the admin API on uvicorn + uvloop, the controller loops, and a clean drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

import fx.state_dir as state_dir
import uvicorn
import uvloop
from fx.nats_auth import NatsAuthError

from . import settings as settings_mod
from .api.app import create_app
from .api.auth import load_or_create_token
from .controller import BackendFactory, Controller, local_backend


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after serving, which would kill us before the replicas are drained."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._exit_requested, sig)
        yield

    def _exit_requested(self, sig: signal.Signals) -> None:
        logging.getLogger("fx_controller").info("%s: shutting down", signal.Signals(sig).name)
        self.should_exit = True


def _lost_lease() -> None:
    # Another controller may lead by now: stop at once rather than drain, which would fight it.
    logging.getLogger("fx_controller").error("lost leadership: exiting")
    os._exit(70)


async def _serve(s: settings_mod.Settings) -> None:
    s.token = s.token or load_or_create_token(s.token_file)  # type: ignore[arg-type]
    backend_factory: BackendFactory = local_backend
    leadership = None
    if s.backend == "kubernetes":  # imported only here: the local mode needs no Kubernetes client
        from .backends.kubernetes import backend as kubernetes
        from .backends.kubernetes.leader import lead

        leadership = await lead(on_lost=_lost_lease)
        await kubernetes.prepare_nats(s)
        backend_factory = kubernetes.create
    controller = Controller(s, backend_factory)
    await controller.start()
    config = uvicorn.Config(
        create_app(controller, s.token),
        host=s.host,
        port=s.port,
        loop="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    server = _Server(config)
    try:
        await server.serve()
    finally:
        await controller.stop()
        if leadership:
            await leadership.end()


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
