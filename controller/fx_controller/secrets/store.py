"""The secret store: one JSON record per secret in the KV bucket fx_secrets, cached in memory.

Only the controller reads or writes the bucket (NATS permissions keep gateways and functions out of every
fx_* bucket). The bucket keeps one revision per key, and a deleted secret is purged, so an old value does not
linger in the stream.
"""

from __future__ import annotations

from datetime import datetime

from fx.models import SecretInfo
from pydantic import BaseModel, ConfigDict, Field

from ..state.store import CachedBucket


class SecretRecord(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    name: str
    values: dict[str, str] = Field(repr=False)
    updated_at: datetime

    def info(self, used_by: list[str]) -> SecretInfo:
        return SecretInfo(name=self.name, keys=sorted(self.values), updated_at=self.updated_at, used_by=used_by)


class SecretStore(CachedBucket[SecretRecord]):
    record_type = SecretRecord

    async def put(self, record: SecretRecord) -> None:
        await self._kv.put(record.name, record.model_dump_json().encode())
        self._records[record.name] = record

    async def delete(self, name: str) -> None:
        await self._kv.purge(name)
        self._records.pop(name, None)
