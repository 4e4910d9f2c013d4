"""The controller's port for function pods (internal; the NetworkPolicy admits only function pods):

- `GET /artifacts/sha256-<hex>.zip`: a code zip, only to a pod of a version with that digest (or a pool pod
  being specialised to it), known by its source address (pod_access); the runtime verifies the sha256 before it
  loads anything. Served from the controller's disk cache of the object store.
- `GET /pool/assignment`: the replica environment (and files) of the pool pod asking, once, while the
  controller specialises it.
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

from ...state.artifacts import Artifacts
from .pod_access import PodAccess

ZIP_NAME = re.compile(r"sha256-([0-9a-f]{64})\.zip")


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status)


def create_app(artifacts: Artifacts, access: PodAccess) -> Starlette:
    async def artifact(request: Request) -> Response:
        match = ZIP_NAME.fullmatch(request.path_params["name"])
        if not match:
            return _error(400, "InvalidDigest", "expected sha256-<hex>.zip")
        if not request.client or not await access.may_fetch(request.client.host, match.group(1)):
            return _error(403, "Forbidden", "this code is served only to the pods of its function version")
        try:
            path = await artifacts.ensure_local(f"sha256:{match.group(1)}")
        except NotFoundError:
            return _error(404, "ArtifactNotFound", "no such artifact")
        return FileResponse(path, media_type="application/zip")

    async def assignment(request: Request) -> Response:
        assignment = access.take(request.client.host) if request.client else None
        if assignment is None:
            return _error(404, "NoAssignment", "the controller is not specialising a pool pod at this address")
        return JSONResponse(assignment)

    return Starlette(routes=[Route("/artifacts/{name}", artifact), Route("/pool/assignment", assignment)])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the admin API's server owns SIGTERM


class ArtifactServer:
    def __init__(self, artifacts: Artifacts, listen: str, access: PodAccess) -> None:
        host, _, port = listen.rpartition(":")
        config = uvicorn.Config(
            create_app(artifacts, access),
            host=host,
            port=int(port),
            loop="none",
            lifespan="off",
            log_level="warning",
            proxy_headers=False,  # the caller is the connection's source address, never a header's claim
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
