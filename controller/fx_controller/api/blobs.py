"""/system/blobs: request bodies a function's calls pass by reference (X-Fx-Body-Ref), behind the admin token.
Written and looked for here; read only by the gateway, which sends them to that function's replicas."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fx.models import BlobInfo

from ..state.blobs import Blobs

PREFIX = "/blobs/"


def blobs_router(blobs: Blobs) -> APIRouter:
    router = APIRouter(prefix=PREFIX.rstrip("/"), tags=["blobs"])

    @router.head("/{name}/{digest}")
    async def blob_exists(name: str, digest: str) -> Response:
        return Response(status_code=200 if await blobs.exists(name, digest) else 404)

    @router.put(
        "/{name}/{digest}",
        openapi_extra={
            "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
        },
    )
    async def upload_blob(name: str, digest: str, request: Request) -> BlobInfo:
        """The body of calls of function NAME that carry `X-Fx-Body-Ref: DIGEST`, kept --blob-ttl seconds."""
        return await blobs.store(name, digest, request.stream())

    return router
