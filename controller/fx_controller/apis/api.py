"""/system/apis: API routes (fx.yaml `apis:`), stored in KV fx_apis for the gateways to follow."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from fx.api_models import ApiSpec
from fx.models import check_name

from ..api import errors
from .rules import Apis, parsed


def _name(name: Annotated[str, Path(description="API name (DNS-1123 label)")]) -> str:
    return errors.checked(check_name, name, "name")


ApiName = Annotated[str, Depends(_name)]


def router(apis: Apis) -> APIRouter:
    api = APIRouter(prefix="/apis", tags=["apis"])

    @api.put("/{name}")
    async def put_api(
        name: ApiName,
        body: Annotated[dict[str, Any], Body(description="the API as fx.yaml's `apis.NAME` (fx.api_models.ApiSpec)")],
        dry_run: Annotated[
            bool, Query(description="check only: every refusal the PUT would meet, nothing stored")
        ] = False,
        deploying: Annotated[
            list[str],
            Query(description="with dry_run: functions a deploy is about to create, not refused as missing"),
        ] = [],  # noqa: B006 - FastAPI copies a query default
    ) -> ApiSpec:
        """Create or replace an API; the answer is the API as stored (defaults filled in, route keys normalized).
        400 InvalidSpec / FunctionNotFound, 409 RouteConflict with another API's route on an overlapping host."""
        if deploying and not dry_run:
            raise errors.ApiError(400, "InvalidSpec", "deploying goes with dry_run=true", field="deploying")
        return await apis.put(parsed(name, body), dry_run=dry_run, deploying=frozenset(deploying))

    @api.get("")
    async def list_apis() -> list[ApiSpec]:
        return apis.list()

    @api.get("/{name}")
    async def get_api(name: ApiName) -> ApiSpec:
        return apis.get(name)

    @api.delete("/{name}", status_code=204)
    async def delete_api(name: ApiName) -> Response:
        await apis.delete(name)
        return Response(status_code=204)

    return api
