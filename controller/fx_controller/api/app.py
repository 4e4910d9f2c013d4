"""The admin API (FastAPI) behind AdminGuard: the token and body limits are checked before a body is read."""

from __future__ import annotations

import asyncio
from datetime import datetime
from importlib.metadata import version as package_version
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from fx.event_models import PlatformStatus
from fx.models import (
    AliasSpec,
    ArtifactInfo,
    DeployResult,
    ErrorBody,
    FunctionInfo,
    FunctionSpec,
    PromoteSpec,
    TrafficSpec,
    VersionInfo,
    check_alias,
    check_name,
)
from fx.usage import Usage
from prometheus_client import CONTENT_TYPE_LATEST

from ..api_keys.routes import router as api_keys_router
from ..apis.api import router as apis_router
from ..backends import local_logs as logs
from ..controller import Controller
from ..lambda_api import app as lambda_api
from ..lambda_api.credentials import router as credentials_router
from ..secrets.api import router as secrets_router
from . import errors
from .auth import AdminGuard
from .blobs import PREFIX as BLOBS_PREFIX
from .blobs import blobs_router
from .events import dlq_router, streams_router

ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 409, 413)}


def _name(name: Annotated[str, Path(description="function name (DNS-1123 label)")]) -> str:
    return errors.checked(check_name, name, "name", function=name)


FunctionName = Annotated[str, Depends(_name)]


def _alias(alias: Annotated[str, Path(description="alias name, e.g. live or beta")]) -> str:
    return errors.checked(check_alias, alias, "alias", "InvalidAlias")


AliasName = Annotated[str, Depends(_alias)]


ZIP_OVERHEAD = 16 * 1024 * 1024  # an upload is a zip: its entries' headers on top of the unzipped bytes


def create_app(controller: Controller, token: str) -> lambda_api.LambdaDispatch:
    """The admin API behind its guard (the token and the body size, checked before a body is read)."""
    settings = controller.settings
    public = {"/system/health"}
    if settings.public_metrics:
        public.add("/metrics")
    if settings.public_docs:
        public |= {"/system/openapi.json", "/system/docs"}

    def limit(method: str, path: str) -> int:
        if method == "PUT" and path.startswith("/system/artifacts/"):
            return settings.max_unzipped_bytes + ZIP_OVERHEAD
        if method == "PUT" and path.startswith("/system" + BLOBS_PREFIX):
            return settings.blob_max_bytes
        return settings.max_body_kb * 1024

    admin = AdminGuard(_api(controller), token, frozenset(public), limit)
    return lambda_api.LambdaDispatch(admin, lambda_api.guarded(controller, token))


def _api(controller: Controller) -> FastAPI:
    app = FastAPI(
        title="fx admin API",
        version="1",
        openapi_url="/system/openapi.json",
        docs_url="/system/docs",
        redoc_url=None,
    )
    errors.install(app, controller.settings.state_dir, lambda: controller.recovery.request())

    @app.get("/system/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(controller.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    api = APIRouter(prefix="/system", responses=ERRORS)  # the token was checked by AdminGuard

    @api.get("/version", tags=["health"])
    async def platform_version() -> dict[str, str]:
        """The platform's release (`fx version` shows it beside the CLI's); behind the token, unlike health."""
        return {"version": package_version("fx-controller")}

    @api.get("/usage", tags=["health"])
    async def usage(
        since: Annotated[
            float, Query(gt=0, le=10 * 365 * 86400, description="window in seconds back from now, widened to hours")
        ] = 86400,
    ) -> Usage:
        """Billed invocations and GB-seconds per function version (`fx usage`)."""
        return controller.usage.window(since)

    @api.head("/artifacts/{digest}", tags=["artifacts"])
    async def artifact_exists(digest: str) -> Response:
        return Response(status_code=200 if await controller.artifacts.exists(digest) else 404)

    @api.put(
        "/artifacts/{digest}",
        tags=["artifacts"],
        openapi_extra={
            "requestBody": {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}
        },
    )
    async def upload_artifact(digest: str, request: Request) -> ArtifactInfo:
        return await controller.artifacts.store(digest, request.stream())

    @api.put("/functions/{name}", tags=["functions"])
    async def deploy(
        name: FunctionName,
        spec: FunctionSpec,
        traffic: Annotated[
            Literal["all", "none"],
            Query(description="all: the new version takes all traffic; none: it starts warm, reachable only pinned"),
        ] = "all",
        dry_run: Annotated[
            bool, Query(description="validate only: every refusal the deploy would meet, nothing applied")
        ] = False,
    ) -> DeployResult:
        if dry_run:
            return await controller.validate(name, spec, traffic=traffic == "all")
        return await controller.deploy(name, spec, traffic=traffic == "all")

    @api.get("/functions", tags=["functions"])
    async def list_functions() -> list[FunctionInfo]:
        return controller.list()

    @api.get("/functions/{name}", tags=["functions"])
    async def describe(name: FunctionName) -> FunctionInfo:
        return controller.describe(name)

    @api.delete("/functions/{name}", tags=["functions"], status_code=204)
    async def delete(name: FunctionName) -> Response:
        await controller.delete(name)
        return Response(status_code=204)

    @api.get("/functions/{name}/versions", tags=["traffic"])
    async def versions(name: FunctionName) -> list[VersionInfo]:
        return controller.describe(name).versions

    @api.get("/functions/{name}/versions/{qualifier}", tags=["traffic"])
    async def version(
        name: FunctionName, qualifier: Annotated[str, Path(description="version number, alias or $LATEST")]
    ) -> VersionInfo:
        return controller.version(name, qualifier)

    @api.put("/functions/{name}/traffic", tags=["traffic"])
    async def set_traffic(name: FunctionName, spec: TrafficSpec) -> FunctionInfo:
        await controller.releases.set_traffic(name, spec)
        return controller.describe(name)

    @api.post("/functions/{name}/promote", tags=["traffic"])
    async def promote(name: FunctionName, spec: PromoteSpec) -> FunctionInfo:
        await controller.releases.promote(name, spec)
        return controller.describe(name)

    @api.post("/functions/{name}/rollback", tags=["traffic"])
    async def rollback(
        name: FunctionName,
        force: Annotated[bool, Query(description="go back even onto a version that failed to initialise")] = False,
    ) -> FunctionInfo:
        await controller.releases.rollback(name, force=force)
        return controller.describe(name)

    @api.put("/functions/{name}/aliases/{alias}", tags=["traffic"])
    async def set_alias(name: FunctionName, alias: AliasName, spec: AliasSpec) -> FunctionInfo:
        await controller.releases.set_alias(name, alias, spec.version)
        return controller.describe(name)

    @api.delete("/functions/{name}/aliases/{alias}", tags=["traffic"])
    async def delete_alias(name: FunctionName, alias: AliasName) -> FunctionInfo:
        await controller.releases.delete_alias(name, alias)
        return controller.describe(name)

    @api.get("/functions/{name}/logs", tags=["functions"], response_class=PlainTextResponse)
    async def function_logs(
        name: FunctionName,
        request: Request,
        tail: Annotated[int | None, Query(ge=0, le=logs.MAX_LINES)] = None,
        follow: bool = False,
        since: datetime | None = None,
        timestamps: bool = False,
    ) -> Response:
        """The last `tail` lines (default 100; all since `since` when given, up to 100000), from an invocation's
        start; header Fx-Logs-Cut: N when earlier lines were left out."""
        controller.describe(name)  # 404 for an unknown function
        path = logs.path(controller.settings.state_dir, name)
        reader = logs.Reader(since=logs.stamp_of(since) if since else None, timestamps=timestamps)
        lines = tail if tail is not None else logs.MAX_LINES if since else logs.DEFAULT_TAIL
        text, position, cut = await asyncio.to_thread(logs.tail, path, lines, reader)
        headers = {"Fx-Logs-Cut": str(lines)} if cut else None
        if follow:
            rest = logs.follow(path, position, reader, request.is_disconnected)
            return StreamingResponse(logs.stream(text, rest), media_type="text/plain", headers=headers)
        return Response(text, media_type="text/plain; charset=utf-8", headers=headers)

    @api.get("/status", tags=["health"])
    async def status() -> PlatformStatus:
        return controller.status()

    api.include_router(secrets_router(controller.secrets))
    api.include_router(apis_router(controller.apis))
    api.include_router(dlq_router(controller.dead_letters))
    api.include_router(streams_router(controller.user_streams, controller.messages))
    api.include_router(blobs_router(controller.blobs))
    api.include_router(credentials_router(controller.credentials, controller.settings.max_credentials))
    api.include_router(
        api_keys_router(
            controller.api_keys, controller.api_key_usage, controller.apis, controller.settings.max_api_keys
        )
    )
    app.include_router(api)
    return app
