"""The secret store: one JSON record per secret in the KV bucket fx_secrets, cached in memory.

Only the controller reads or writes the bucket (NATS permissions keep gateways and functions out of every
fx_* bucket). The bucket keeps one revision per key, and a deleted secret is purged, so an old value does not
linger in the stream.
"""

from __future__ import annotations

from datetime import datetime

from fx import kv_watch
from fx.models import SecretInfo
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field


class SecretRecord(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    name: str
    values: dict[str, str] = Field(repr=False)
    updated_at: datetime

    def info(self, used_by: list[str]) -> SecretInfo:
        return SecretInfo(name=self.name, keys=sorted(self.values), updated_at=self.updated_at, used_by=used_by)


class SecretStore:
    """Reads come from memory (the controller is the only writer); writes go to KV first."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._records: dict[str, SecretRecord] = {}

    async def load(self) -> None:
        for key, value in (await kv_watch.load(self._kv)).items():
            self._records[key] = SecretRecord.model_validate_json(value)

    def get(self, name: str) -> SecretRecord | None:
        return self._records.get(name)

    def all(self) -> list[SecretRecord]:
        return [self._records[name] for name in sorted(self._records)]

    async def put(self, record: SecretRecord) -> None:
        await self._kv.put(record.name, record.model_dump_json().encode())
        self._records[record.name] = record

    async def delete(self, name: str) -> None:
        await self._kv.purge(name)
        self._records.pop(name, None)
