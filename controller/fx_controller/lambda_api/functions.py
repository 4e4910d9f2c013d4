"""The Lambda actions on functions: Create, Get, GetConfiguration, List, UpdateCode, UpdateConfiguration, Delete.

Create and both updates are fx deploys (Controller.deploy): a changed spec becomes a new numbered fx version,
which takes the unqualified calls once it has initialised, as Lambda's $LATEST does; an unchanged one makes
none. `Publish: true` answers with that version's number instead of $LATEST."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fx.models import FunctionSpec, VersionInfo
from fx.protocol import RUNTIMES
from pydantic import ValidationError

from ..api.errors import ApiError
from . import shapes
from .catalog import Catalog
from .errors import TOO_LARGE, LambdaError, conflict, invalid, validation_message
from .fields import ConfigIn, CreateFunctionIn, UpdateCodeIn, check_rest
from .versions import delete_version

log = logging.getLogger("fx_controller.lambda_api")

PREFIX = "/2015-03-31/functions"
# fx's spec fields by Lambda's names, for the messages of a refused value.
LAMBDA_NAMES = {
    "name": "FunctionName",
    "runtime": "Runtime",
    "handler": "Handler",
    "timeout": "Timeout",
    "memory": "MemorySize",
    "env": "Environment.Variables",
}
Qualifier = Annotated[str | None, Query(alias="Qualifier")]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def zip_limit(catalog: Catalog) -> tuple[int, str]:
    """The largest ZipFile taken, and the knob that sets it: Lambda's 50 MB, or fx's artifact limit if lower."""
    settings = catalog.controller.settings
    own = settings.lambda_zip_max_mb * 2**20
    if own <= settings.max_unzipped_bytes:
        return own, "the controller's --lambda-zip-max-mb"
    return settings.max_unzipped_bytes, "the controller's --max-unzipped-mb"


async def store_zip(catalog: Catalog, encoded: str | None) -> str:
    """Store a ZipFile as an fx artifact; its digest."""
    if not encoded:
        raise invalid("ZipFile is missing: give the code as a zip (--zip-file fileb://code.zip)")
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise invalid("ZipFile is not base64: botocore encodes the bytes of the zip itself") from None
    limit, knob = zip_limit(catalog)
    if len(data) > limit:
        raise LambdaError(413, TOO_LARGE, f"ZipFile is {len(data)} bytes; fx takes at most {limit} ({knob})")
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    artifacts = catalog.controller.artifacts
    if not await artifacts.exists(digest):
        try:
            await artifacts.store(digest, _once(data))
        except ApiError as e:
            raise invalid(f"ZipFile: {e.detail.message}") from None
    return digest


def spec_of(base: dict[str, Any], body: ConfigIn) -> FunctionSpec:
    """`base` (an fx spec as JSON) with what a Lambda request sets; InvalidParameterValueException if invalid."""
    spec = dict(base)
    if body.Runtime is not None:
        spec["runtime"] = shapes.lambda_runtime(body.Runtime, RUNTIMES)
    if body.Handler is not None:
        spec["handler"] = body.Handler
    if body.Timeout is not None:
        spec["timeout"] = body.Timeout
    if body.MemorySize is not None:
        spec["memory"] = body.MemorySize
    if body.Environment is not None:
        spec["env"] = body.Environment.Variables
    try:
        return FunctionSpec.model_validate(spec)
    except ValidationError as e:
        raise invalid(validation_message(e, LAMBDA_NAMES)) from None


def router(catalog: Catalog) -> APIRouter:
    api = APIRouter(prefix=PREFIX)
    controller = catalog.controller

    async def deployed(name: str, spec: FunctionSpec, publish: bool, reported: dict[str, str]) -> dict[str, Any]:
        result = await controller.deploy(name, spec, traffic=True)
        version = next(v for v in catalog.info(name).versions if v.version == result.version)
        shown = str(version.version) if publish else shapes.LATEST
        return catalog.configuration(name, version, shown) | reported

    @api.post("", status_code=201)
    async def create_function(body: CreateFunctionIn) -> dict[str, Any]:
        name = body.FunctionName
        if controller.store.get(name) is not None:
            raise conflict(f"Function already exist: {name}")
        reported = check_rest("CreateFunction", name, body.rest, catalog.fixed)
        check_rest("CreateFunction", name, body.Code.rest, catalog.fixed)
        spec = spec_of({"name": name, "artifact": "sha256:" + "0" * 64}, body)  # checked before the upload
        digest = await store_zip(catalog, body.Code.ZipFile)
        return await deployed(name, spec.model_copy(update={"artifact": digest}), body.Publish, reported)

    @api.get("")
    async def list_functions(
        marker: Annotated[str | None, Query(alias="Marker")] = None,
        max_items: Annotated[int | None, Query(alias="MaxItems")] = None,
        function_version: Annotated[str | None, Query(alias="FunctionVersion")] = None,
    ) -> dict[str, Any]:
        if function_version not in (None, "ALL"):
            raise invalid(f"FunctionVersion {function_version!r} is not ALL (or left out)")
        entries: list[tuple[str, VersionInfo, str]] = []  # (page key, version, Version shown)
        for info in sorted(controller.list(), key=lambda i: i.name):
            entries.append((info.name, info.versions[-1], shapes.LATEST))
            if function_version:
                entries += [(f"{info.name}:{v.version:010d}", v, str(v.version)) for v in info.versions]
        entries.sort(key=lambda e: e[0])
        chunk, next_marker = shapes.page(entries, lambda e: e[0], marker, max_items)
        functions = [catalog.configuration(key.partition(":")[0], v, shown) for key, v, shown in chunk]
        return {"Functions": functions} | ({"NextMarker": next_marker} if next_marker else {})

    @api.get("/{function_name}")
    async def get_function(function_name: str, qualifier: Qualifier = None) -> dict[str, Any]:
        name, in_path = shapes.split_name(function_name)
        configuration = catalog.qualified(name, catalog.qualifier(in_path, qualifier))
        return {"Configuration": configuration, "Code": {"RepositoryType": "fx"}}

    @api.get("/{function_name}/configuration")
    async def get_function_configuration(function_name: str, qualifier: Qualifier = None) -> dict[str, Any]:
        name, in_path = shapes.split_name(function_name)
        return catalog.qualified(name, catalog.qualifier(in_path, qualifier))

    @api.put("/{function_name}/configuration")
    async def update_function_configuration(function_name: str, body: ConfigIn) -> dict[str, Any]:
        name, _ = shapes.split_name(function_name)
        latest, _ = catalog.resolve(name, None)
        catalog.check_revision(name, latest, body.RevisionId)
        reported = check_rest("UpdateFunctionConfiguration", name, body.rest, catalog.fixed)
        spec = spec_of(latest.spec.model_dump(mode="json"), body)
        return await deployed(name, spec, False, reported)

    @api.put("/{function_name}/code")
    async def update_function_code(function_name: str, body: UpdateCodeIn) -> dict[str, Any]:
        name, _ = shapes.split_name(function_name)
        latest, _ = catalog.resolve(name, None)
        catalog.check_revision(name, latest, body.RevisionId)
        check_rest("UpdateFunctionCode", name, body.rest, catalog.fixed)
        digest = await store_zip(catalog, body.ZipFile)
        spec = latest.spec.model_copy(update={"artifact": digest, "image": None})
        if body.DryRun:
            await controller.validate(name, spec)
            return catalog.configuration(name, latest, shapes.LATEST) | {"CodeSha256": shapes.code_sha256(digest)}
        return await deployed(name, spec, body.Publish, {})

    @api.delete("/{function_name}", status_code=204)
    async def delete_function(function_name: str, qualifier: Qualifier = None) -> Response:
        name, in_path = shapes.split_name(function_name)
        qualifier = catalog.qualifier(in_path, qualifier)
        catalog.record(name)
        if qualifier is None:
            await controller.delete(name)
            log.info("DeleteFunction %s", name)
        else:
            await delete_version(catalog, name, qualifier)
        return Response(status_code=204)

    return api
