"""The Lambda actions on versions: PublishVersion, ListVersionsByFunction, and DeleteFunction with a Qualifier.

fx numbers a version at every deploy that changes the spec, so PublishVersion creates nothing: it answers with
the newest version (Lambda too publishes nothing new while $LATEST is unchanged since the last publish)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from . import shapes
from .catalog import Catalog
from .errors import invalid
from .fields import PublishIn, check_rest

PREFIX = "/2015-03-31/functions/{function_name}/versions"


async def delete_version(catalog: Catalog, name: str, qualifier: str) -> None:
    if not qualifier.isdigit():
        what = "$LATEST is deleted with the function" if qualifier == shapes.LATEST else "an alias with DeleteAlias"
        raise invalid(f"Qualifier {qualifier!r} is not a version number: {what}")
    catalog.resolve(name, qualifier)  # 404 for a version that is not there
    await catalog.controller.releases.delete_version(name, int(qualifier))


def router(catalog: Catalog) -> APIRouter:
    api = APIRouter(prefix=PREFIX)

    @api.post("", status_code=201)
    async def publish_version(function_name: str, body: PublishIn) -> dict[str, Any]:
        name, _ = shapes.split_name(function_name)
        latest, _ = catalog.resolve(name, None)
        catalog.check_revision(name, latest, body.RevisionId)
        reported = check_rest("PublishVersion", name, body.rest, catalog.fixed)
        if body.CodeSha256 is not None and body.CodeSha256 != shapes.code_sha256(latest.digest):
            raise invalid(
                f"CodeSha256 {body.CodeSha256} does not match $LATEST's ({shapes.code_sha256(latest.digest)}):"
                " the code changed since you read it"
            )
        return catalog.configuration(name, latest, str(latest.version)) | reported

    @api.get("")
    async def list_versions_by_function(
        function_name: str,
        marker: Annotated[str | None, Query(alias="Marker")] = None,
        max_items: Annotated[int | None, Query(alias="MaxItems")] = None,
    ) -> dict[str, Any]:
        name, _ = shapes.split_name(function_name)
        info = catalog.info(name)
        entries = [(shapes.LATEST, info.versions[-1])] + [(str(v.version), v) for v in info.versions]
        chunk, next_marker = shapes.page(entries, lambda e: shapes.version_key(e[0]), marker, max_items)
        versions = [catalog.configuration(name, version, shown) for shown, version in chunk]
        return {"Versions": versions} | ({"NextMarker": next_marker} if next_marker else {})

    return api
