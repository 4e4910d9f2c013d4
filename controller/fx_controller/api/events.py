"""/system/dlq, /system/streams, /system/kv and /system/publish: dead letters, the streams and buckets triggers
read, and test messages, for the CLI (behind the admin token like the rest: a user needs no NATS credentials)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from fx.event_models import (
    DLQ_LIST_DEFAULT,
    DLQ_LIST_MAX,
    BucketInfo,
    BucketSpec,
    DeadLetter,
    DeadLetterDetail,
    KvPutResult,
    KvPutSpec,
    LetterId,
    PublishResult,
    PublishSpec,
    RedriveResult,
    RedriveSpec,
    StreamInfo,
    StreamSpec,
    check_bucket_name,
    check_kv_key,
    check_stream_name,
)
from fx.models import check_name

from ..events.dead_letters import DeadLetters
from ..events.messages import Messages
from ..events.user_streams import UserStreams
from . import errors


def _stream(name: Annotated[str, Path(description="stream name, e.g. ORDERS")]) -> str:
    return errors.checked(check_stream_name, name, "name")


def _bucket(name: Annotated[str, Path(description="KV bucket name, e.g. users")]) -> str:
    return errors.checked(check_bucket_name, name, "name")


def _function(function: Annotated[str | None, Query(description="only this function's letters")] = None) -> str | None:
    return None if function is None else errors.checked(check_name, function, "name")


StreamName = Annotated[str, Depends(_stream)]
BucketName = Annotated[str, Depends(_bucket)]
FunctionFilter = Annotated[str | None, Depends(_function)]


def dlq_router(letters: DeadLetters) -> APIRouter:
    api = APIRouter(prefix="/dlq", tags=["dead letters"])

    @api.get("")
    async def list_letters(
        function: FunctionFilter,
        limit: Annotated[int, Query(ge=1, le=DLQ_LIST_MAX, description="at most this many, oldest first")] = (
            DLQ_LIST_DEFAULT
        ),
    ) -> list[DeadLetter]:
        return await letters.list(function, limit)

    @api.get("/{letter_id}")
    async def show_letter(letter_id: LetterId) -> DeadLetterDetail:
        return await letters.show(letter_id)

    @api.post("/redrive")
    async def redrive(spec: RedriveSpec) -> RedriveResult:
        """Re-enqueue letters where they came from (an async call: FX_ASYNC; a stream record: its subject);
        each leaves the DLQ only once JetStream acknowledged its copy."""
        return await letters.redrive(spec)

    return api


def _key(key: Annotated[str, Path(description="KV key, e.g. eu.ann")]) -> str:
    return errors.checked(check_kv_key, key, "key", "InvalidKey")


def streams_router(streams: UserStreams, messages: Messages) -> APIRouter:
    api = APIRouter(tags=["streams"])

    @api.post("/publish")
    async def publish(spec: PublishSpec) -> PublishResult:
        """Publish a test message on a user subject (stored when a stream takes it), or send a request."""
        return await messages.publish(spec)

    @api.put("/kv/{name}/keys/{key}")
    async def put_key(name: BucketName, key: Annotated[str, Depends(_key)], spec: KvPutSpec) -> KvPutResult:
        return await messages.kv_put(name, key, spec.value)

    @api.put("/streams/{name}")
    async def create_stream(name: StreamName, spec: StreamSpec) -> StreamInfo:
        """Create a stream for `jetstream` triggers; the same settings again change nothing."""
        return await streams.create_stream(name, spec)

    @api.get("/streams")
    async def list_streams() -> list[StreamInfo]:
        return await streams.list_streams()

    @api.delete("/streams/{name}", status_code=204)
    async def delete_stream(name: StreamName) -> Response:
        """409 StreamInUse while a function's trigger reads it."""
        await streams.delete_stream(name)
        return Response(status_code=204)

    @api.put("/kv/{name}")
    async def create_bucket(name: BucketName, spec: BucketSpec) -> BucketInfo:
        """Create a KV bucket for `kv` triggers; creating one that exists changes nothing."""
        return await streams.create_bucket(name, spec)

    @api.get("/kv")
    async def list_buckets() -> list[BucketInfo]:
        return await streams.list_buckets()

    @api.delete("/kv/{name}", status_code=204)
    async def delete_bucket(name: BucketName) -> Response:
        await streams.delete_bucket(name)
        return Response(status_code=204)

    return api
