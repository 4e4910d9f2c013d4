"""A second HTTP listener of the controller (artifacts for function pods, the admission webhook), started and
stopped with the backend; the admin API's server owns SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

# In-flight requests (a pod's code download, an admission review) get this long at stop, then are cancelled:
# uvicorn otherwise waits for them without end, and a peer gone without a FIN (a deleted pod) never finishes.
GRACEFUL_SHUTDOWN_S = 5


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the admin API's server owns SIGTERM


class SideServer:
    def __init__(self, app: Any, listen: str, **options: Any) -> None:
        host, _, port = listen.rpartition(":")
        self._server = _Server(
            uvicorn.Config(
                app,
                host=host,
                port=int(port),
                loop="none",
                lifespan="off",
                log_level="warning",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                **options,
            )
        )
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
