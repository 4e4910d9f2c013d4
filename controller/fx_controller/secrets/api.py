"""/system/secrets: write-only values. Every answer is a SecretInfo (name, keys, time, users), never a value."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from fx.models import SecretInfo, SecretSpec, check_secret_name

from ..api import errors
from .rules import Secrets


def _name(name: Annotated[str, Path(description="secret name (DNS-1123 label)")]) -> str:
    return errors.checked(check_secret_name, name, "name")


SecretName = Annotated[str, Depends(_name)]


def router(secrets: Secrets) -> APIRouter:
    api = APIRouter(prefix="/secrets", tags=["secrets"])

    @api.put("/{name}")
    async def set_secret(name: SecretName, spec: SecretSpec) -> SecretInfo:
        """Create or replace a secret: it becomes exactly these keys. New replicas of the functions that
        name it get the new values; running ones keep theirs until they are replaced."""
        return await secrets.set(name, spec)

    @api.get("")
    async def list_secrets() -> list[SecretInfo]:
        return secrets.list()

    @api.get("/{name}")
    async def get_secret(name: SecretName) -> SecretInfo:
        return secrets.get(name)

    @api.delete("/{name}", status_code=204)
    async def delete_secret(name: SecretName) -> Response:
        """409 SecretInUse while a live version of a function (traffic, alias, latest) names it."""
        await secrets.delete(name)
        return Response(status_code=204)

    return api
