"""The Lambda actions on aliases: Create, Update, Get, List, Delete.

An alias is fx's alias (Releases.set_alias), to a numbered version. RoutingConfig.AdditionalVersionWeights is
the alias's own traffic split, in fx's whole percents: {"2": 0.1} on an alias to version 1 is {1: 90, 2: 10},
which the gateways draw from for every call qualified by the alias. Unqualified calls keep the function's
split ($LATEST)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fx.models import check_alias

from . import shapes
from .catalog import Catalog
from .errors import conflict, invalid, not_found, precondition
from .fields import AliasIn, CreateAliasIn, check_rest

PREFIX = "/2015-03-31/functions/{function_name}/aliases"
MAX_ADDITIONAL = 1  # Lambda's: an alias routes to at most one version besides its own


def _number(given: str, field: str) -> int:
    if given == shapes.LATEST:
        raise invalid(
            f"{field} $LATEST: an fx alias names a numbered version; every update made one"
            " (ListVersionsByFunction lists them, PublishVersion answers the newest)"
        )
    if not given.isdigit() or int(given) < 1:
        raise invalid(f"{field} {given!r} is not a version number")
    return int(given)


def split_of(version: int, body: AliasIn) -> dict[int, int]:
    """The alias's split: its own version gets what the additional weights leave."""
    weights = body.RoutingConfig.AdditionalVersionWeights if body.RoutingConfig else {}
    if len(weights) > MAX_ADDITIONAL:
        raise invalid(f"RoutingConfig.AdditionalVersionWeights names {len(weights)} versions; at most {MAX_ADDITIONAL}")
    split = {version: 100}
    for given, weight in weights.items():
        extra = _number(given, "RoutingConfig.AdditionalVersionWeights")
        percent = round(weight * 100)
        if extra == version:
            raise invalid(f"RoutingConfig: version {extra} is the alias's own version, not an additional one")
        if not 0 <= weight < 1 or abs(weight * 100 - percent) > 1e-6:
            raise invalid(f"RoutingConfig weight {weight} of version {extra}: fx splits in whole percents below 1.0")
        if percent:
            split = {version: 100 - percent, extra: percent}
    return split


def _check_name(alias: str) -> str:
    try:
        return check_alias(alias)
    except ValueError as e:
        raise invalid(f"Name: {e}") from None


def router(catalog: Catalog) -> APIRouter:
    api = APIRouter(prefix=PREFIX)
    releases = catalog.controller.releases

    async def point(name: str, alias: str, version: int, split: dict[int, int] | None) -> None:
        for number in split or (version,):  # Lambda's 404 for a version that is not there
            catalog.resolve(name, str(number))
        await releases.set_alias(name, alias, version, split)

    def answer(name: str, alias: str) -> dict[str, Any]:
        record = catalog.record(name)
        if alias not in record.aliases:
            raise not_found(f"Alias not found: {shapes.function_arn(catalog.region, name, alias)}")
        version = record.aliases[alias]
        split = record.alias_traffic.get(alias, {version: 100})
        return shapes.alias_configuration(catalog.region, name, alias, version, split)

    @api.post("", status_code=201)
    async def create_alias(function_name: str, body: CreateAliasIn) -> dict[str, Any]:
        name, _ = shapes.split_name(function_name)
        alias = _check_name(body.Name)
        if alias in catalog.record(name).aliases:
            raise conflict(f"Alias already exists: {shapes.function_arn(catalog.region, name, alias)}")
        reported = check_rest("CreateAlias", name, body.rest, {})
        version = _number(body.FunctionVersion, "FunctionVersion")
        await point(name, alias, version, split_of(version, body))
        return answer(name, alias) | reported

    @api.get("")
    async def list_aliases(
        function_name: str,
        marker: Annotated[str | None, Query(alias="Marker")] = None,
        max_items: Annotated[int | None, Query(alias="MaxItems")] = None,
        function_version: Annotated[str | None, Query(alias="FunctionVersion")] = None,
    ) -> dict[str, Any]:
        name, _ = shapes.split_name(function_name)
        record = catalog.record(name)
        names = sorted(a for a, v in record.aliases.items() if function_version in (None, str(v)))
        chunk, next_marker = shapes.page(names, lambda a: a, marker, max_items)
        aliases = [answer(name, alias) for alias in chunk]
        return {"Aliases": aliases} | ({"NextMarker": next_marker} if next_marker else {})

    @api.get("/{alias}")
    async def get_alias(function_name: str, alias: str) -> dict[str, Any]:
        return answer(shapes.split_name(function_name)[0], alias)

    @api.put("/{alias}")
    async def update_alias(function_name: str, alias: str, body: AliasIn) -> dict[str, Any]:
        name, _ = shapes.split_name(function_name)
        current = answer(name, alias)
        if body.RevisionId is not None and body.RevisionId != current["RevisionId"]:
            message = f"RevisionId {body.RevisionId!r} is not the alias's current one: get it again, then retry"
            raise precondition(message)
        reported = check_rest("UpdateAlias", name, body.rest, {})
        version = _number(body.FunctionVersion or current["FunctionVersion"], "FunctionVersion")
        if body.RoutingConfig is None and body.FunctionVersion is None:  # left out: the routing stays
            split = catalog.record(name).alias_traffic.get(alias)
        else:
            split = split_of(version, body)
        await point(name, alias, version, split)
        return answer(name, alias) | reported

    @api.delete("/{alias}", status_code=204)
    async def delete_alias(function_name: str, alias: str) -> Response:
        name, _ = shapes.split_name(function_name)
        answer(name, alias)  # Lambda's 404 for an alias that is not there
        await releases.delete_alias(name, alias)
        return Response(status_code=204)

    return api
