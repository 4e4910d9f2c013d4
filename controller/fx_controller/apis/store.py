"""The API store: one ApiSpec per API in the KV bucket fx_apis, cached in memory.

The value is the wire JSON the gateways follow (fx.api_models: every field present, route keys normalized); the
controller alone writes it, the gateways only read it (fx.nats_auth.FOLLOWED_BUCKETS).
"""

from __future__ import annotations

from fx.api_models import ApiSpec

from ..state.store import CachedBucket


class ApiStore(CachedBucket[ApiSpec]):
    record_type = ApiSpec

    async def put(self, spec: ApiSpec) -> None:
        await self._kv.put(spec.name, spec.model_dump_json().encode())
        self._records[spec.name] = spec

    async def delete(self, name: str) -> None:
        await self._kv.delete(name)
        self._records.pop(name, None)
