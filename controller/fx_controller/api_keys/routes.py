"""/system/apikeys: create (the key's value in the answer, and nowhere else), list with usage, remove."""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import string
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from fx.api_key_models import ApiKeyInfo, ApiKeyRecord, ApiKeySpec, IssuedApiKey

from ..api.errors import ApiError
from ..apis.rules import Apis
from .store import ApiKeyStore
from .usage import ApiKeyUsage

VALUE_ALPHABET = string.ascii_letters + string.digits
VALUE_LENGTH = 40  # as API Gateway's generated keys: 40 letters and digits, about 238 bits
ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 10  # as API Gateway's key ids


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def router(store: ApiKeyStore, usage: ApiKeyUsage, apis: Apis, limit: int) -> APIRouter:
    """Behind the admin token, like every /system route. `limit`: keys at once. A key is for an API that exists;
    removing the API leaves its keys (they serve its routes again if it comes back)."""
    api = APIRouter(prefix="/apikeys", tags=["apikeys"])
    lock = asyncio.Lock()  # a name is checked and taken in one step

    def info(record: ApiKeyRecord) -> ApiKeyInfo:
        today, month = usage.used(record.id)
        fields = record.model_dump(exclude={"sha256"})
        return ApiKeyInfo(**fields, used_today=today, used_month=month)

    @api.post("", status_code=201)
    async def create(spec: ApiKeySpec) -> IssuedApiKey:
        apis.get(spec.api)  # 404 ApiNotFound
        async with lock:
            if store.get(spec.name) is not None:
                message = f"an API key named {spec.name!r} exists; remove it first (`fx apikey rm {spec.name}`)"
                raise ApiError(409, "ApiKeyExists", message, field="name")
            if len(store.all()) >= limit:
                message = f"there are already {limit} API keys (fx-controller --max-api-keys): remove unused ones"
                raise ApiError(409, "TooManyApiKeys", message + " (`fx apikey rm NAME`)")
            value = _random(VALUE_ALPHABET, VALUE_LENGTH)
            burst = spec.burst if spec.burst is not None or spec.rate is None else math.ceil(spec.rate)
            record = ApiKeyRecord(
                id=_random(ID_ALPHABET, ID_LENGTH),
                name=spec.name,
                api=spec.api,
                sha256=hashlib.sha256(value.encode()).hexdigest(),
                rate=spec.rate,
                burst=burst,
                quota=spec.quota,
                created_at=datetime.now(UTC),
            )
            await store.put(record)
        return IssuedApiKey(**info(record).model_dump(), value=value)

    @api.get("")
    async def list_keys() -> list[ApiKeyInfo]:
        return sorted((info(r) for r in store.all()), key=lambda k: (k.api, k.name))

    @api.delete("/{name}", status_code=204)
    async def remove(name: Annotated[str, Path(description="the key's name")]) -> Response:
        async with lock:
            record = store.get(name)
            if record is None:
                message = f"no API key {name!r}; `fx apikey ls` lists them"
                raise ApiError(404, "ApiKeyNotFound", message, field="name")
            await store.delete(name)  # the gateways refuse it from here on
            await usage.forget(record.id)
        return Response(status_code=204)

    return api
