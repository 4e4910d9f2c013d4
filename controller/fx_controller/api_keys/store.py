"""The API keys, one record per key name in KV fx_api_keys: the controller writes, the gateways follow."""

from __future__ import annotations

from fx.api_key_models import ApiKeyRecord

from ..state.store import CachedBucket


class ApiKeyStore(CachedBucket[ApiKeyRecord]):
    record_type = ApiKeyRecord

    async def put(self, record: ApiKeyRecord) -> None:
        await self._kv.put(record.name, record.model_dump_json().encode())
        self._records[record.name] = record

    async def delete(self, name: str) -> None:
        await self._kv.purge(name)
        self._records.pop(name, None)
