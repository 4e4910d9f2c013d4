"""The function store: one JSON record per function in the KV bucket fx_functions, cached in memory."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from fx import kv_watch
from fx.models import FunctionSpec, InitError, RolloutInfo, VersionState
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field

from fx_controller.api.errors import ApiError


class VersionRecord(BaseModel):
    version: int
    digest: str
    created_at: datetime
    spec: FunctionSpec  # immutable, as are the fields above; the state moves once, from Pending
    state: VersionState = "Ready"  # records from before the readiness gate were serving: Ready
    init_error: InitError | None = None


class Warm(BaseModel):
    """A version that lost its traffic (or was deployed with none) keeps `replicas` until `until`."""

    until: datetime
    replicas: int


class FunctionRecord(BaseModel):
    name: str
    versions: list[VersionRecord]  # ascending; immutable once written
    traffic: dict[int, int]  # version -> percent, sums to 100
    aliases: dict[str, int] = Field(default_factory=dict)
    # An alias that splits its calls (the Lambda API's RoutingConfig): alias -> {version: percent}, its own
    # version included; the alias stays in `aliases` with its main version.
    alias_traffic: dict[str, dict[int, int]] = Field(default_factory=dict)
    sticky: str | None = None  # "header:<name>" or "cookie:<name>"
    history: list[dict[int, int]] = Field(default_factory=list)  # earlier splits, newest last: for rollback
    warm: dict[int, Warm] = Field(default_factory=dict)
    rollout: RolloutInfo | None = None
    last_rollout: str | None = None
    # The Pending version a deploy asked to take all traffic: it does once Ready. A later deploy with traffic,
    # or any traffic change, replaces that wish.
    awaiting: int | None = None

    @property
    def latest(self) -> VersionRecord:
        return self.versions[-1]

    def version(self, number: int) -> VersionRecord | None:
        return next((v for v in self.versions if v.version == number), None)

    @property
    def aliased(self) -> set[int]:
        """The versions aliases name, those of their own splits included."""
        return {*self.aliases.values(), *(v for split in self.alias_traffic.values() for v in split)}


R = TypeVar("R", bound=BaseModel)


class CachedBucket(Generic[R]):
    """One JSON record per key of a KV bucket, cached in memory: reads come from memory (the controller is the
    only writer), writes go to KV first. Subclasses name the record type and say how a record is written."""

    record_type: type[R]

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._records: dict[str, R] = {}

    async def load(self) -> None:
        for key, value in (await kv_watch.load(self._kv)).items():
            self._records[key] = self.record_type.model_validate_json(value)

    async def restore(self) -> int:
        """Write every record held in memory back to the bucket (NATS lost it); returns how many."""
        for name, record in list(self._records.items()):
            await self._kv.put(name, record.model_dump_json().encode())
        return len(self._records)

    def get(self, name: str) -> R | None:
        return self._records.get(name)

    def all(self) -> list[R]:
        return [self._records[name] for name in sorted(self._records)]


class FunctionStore(CachedBucket[FunctionRecord]):
    record_type = FunctionRecord

    async def put(self, record: FunctionRecord) -> None:
        value = record.model_dump_json().encode()
        if record.name in self._records:
            await self._kv.put(record.name, value)
        else:
            try:  # create, never overwrite: a record missing from memory must not replace a stored one
                await self._kv.create(record.name, value)
            except KeyWrongLastSequenceError as exc:
                raise ApiError(
                    409,
                    "StoreConflict",
                    f"function {record.name!r} is in the store but was not loaded by this controller;"
                    " restart the controller so that it reloads the store",
                    function=record.name,
                ) from exc
        self._records[record.name] = record

    def forget(self, name: str) -> FunctionRecord | None:
        """Drop from memory first, so nothing republishes routes for a function being deleted."""
        return self._records.pop(name, None)

    async def delete(self, name: str) -> None:
        await self._kv.delete(name)
