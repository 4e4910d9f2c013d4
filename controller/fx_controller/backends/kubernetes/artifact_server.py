"""Code zips for function pods, by content digest: GET /artifacts/sha256-<hex>.zip on an internal port.

No token: the NetworkPolicy lets only function pods reach this port, and a zip is named by its sha256, which
the runtime verifies before it loads anything. Served from the controller's disk cache of the object store.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator

import uvicorn
from nats.js.errors import NotFoundError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ...artifacts import Artifacts

ZIP_NAME = re.compile(r"^sha256-([0-9a-f]{64})\.zip$")


def create_app(artifacts: Artifacts) -> Starlette:
    async def artifact(request: Request) -> Response:
        match = ZIP_NAME.match(request.path_params["name"])
        if not match:
            return JSONResponse({"error": {"code": "InvalidDigest", "message": "expected sha256-<hex>.zip"}}, 400)
        try:
            path = await artifacts.ensure_local(f"sha256:{match.group(1)}")
        except NotFoundError:
            return JSONResponse({"error": {"code": "ArtifactNotFound", "message": "no such artifact"}}, 404)
        return FileResponse(path, media_type="application/zip")

    return Starlette(routes=[Route("/artifacts/{name}", artifact)])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the admin API's server owns SIGTERM


class ArtifactServer:
    def __init__(self, artifacts: Artifacts, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        config = uvicorn.Config(
            create_app(artifacts), host=host, port=int(port), loop="none", lifespan="off", log_level="warning"
        )
        self._server = _Server(config)
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
