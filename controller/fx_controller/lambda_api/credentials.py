"""SigV4 access keys for the Lambda API: issued by `fx credentials create`, kept in KV fx_credentials.

A signature is an HMAC keyed by the secret itself, so the controller must hold the secret, not a hash of it:
it is stored as the platform's secrets are (a bucket only the controller's NATS user may read, NATS's own
store at rest), and shown once, in the answer that creates it."""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from ..api.errors import ApiError
from ..state.store import CachedBucket

KEY_PREFIX = "FXAK"  # where AWS's long-term keys say AKIA
KEY_ALPHABET = string.ascii_uppercase + "234567"
NAME_MAX = 64


class Credential(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    access_key_id: str
    secret_access_key: str = Field(repr=False)
    name: str = ""
    created_at: datetime


class CredentialInfo(BaseModel):
    """A credential as listed: never its secret."""

    access_key_id: str
    name: str
    created_at: datetime


class IssuedCredential(CredentialInfo):
    secret_access_key: str  # in the answer that creates it, and nowhere else


class CredentialSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=NAME_MAX, description="a label: who or what uses the key")] = ""


class CredentialStore(CachedBucket[Credential]):
    record_type = Credential

    async def put(self, record: Credential) -> None:
        await self._kv.put(record.access_key_id, record.model_dump_json().encode())
        self._records[record.access_key_id] = record

    async def delete(self, access_key_id: str) -> None:
        await self._kv.purge(access_key_id)
        self._records.pop(access_key_id, None)

    def secret(self, access_key_id: str) -> str | None:
        record = self.get(access_key_id)
        return record.secret_access_key if record else None


def _info(record: Credential) -> CredentialInfo:
    return CredentialInfo(access_key_id=record.access_key_id, name=record.name, created_at=record.created_at)


def router(store: CredentialStore, limit: int) -> APIRouter:
    """/system/credentials: behind the admin token, like every /system route. `limit`: keys at once."""
    api = APIRouter(prefix="/credentials", tags=["credentials"])

    @api.post("", status_code=201)
    async def create(spec: CredentialSpec) -> IssuedCredential:
        if len(store.all()) >= limit:
            message = f"there are already {limit} access keys (fx-controller --max-credentials): remove unused ones"
            raise ApiError(409, "TooManyCredentials", message + " (`fx credentials rm KEY_ID`)")
        key_id = KEY_PREFIX + "".join(secrets.choice(KEY_ALPHABET) for _ in range(16))
        record = Credential(
            access_key_id=key_id,
            secret_access_key=secrets.token_urlsafe(30),
            name=spec.name,
            created_at=datetime.now(UTC),
        )
        await store.put(record)
        return IssuedCredential(**_info(record).model_dump(), secret_access_key=record.secret_access_key)

    @api.get("")
    async def list_credentials() -> list[CredentialInfo]:
        return sorted((_info(r) for r in store.all()), key=lambda c: c.created_at)

    @api.delete("/{key_id}", status_code=204)
    async def remove(key_id: Annotated[str, Path(description="the access key id")]) -> Response:
        if store.get(key_id) is None:
            message = f"no access key {key_id!r}; `fx credentials ls` lists them"
            raise ApiError(404, "CredentialNotFound", message, field="key_id")
        await store.delete(key_id)
        return Response(status_code=204)

    return api
