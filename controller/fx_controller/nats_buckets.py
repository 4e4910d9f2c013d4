"""Open a JetStream KV bucket or object store, creating it if missing (start order must not matter), and
create whichever of fx's streams, buckets and object store is missing, at any time (`provision`)."""

from __future__ import annotations

from fx import async_streams
from fx.protocol import KV_FUNCTIONS, KV_ROUTES, KV_SECRETS, OBJ_ARTIFACTS
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

BUCKETS = (KV_FUNCTIONS, KV_ROUTES, KV_SECRETS)


async def open_kv(js: JetStreamContext, bucket: str) -> KeyValue:
    return (await _kv(js, bucket))[0]


async def open_object_store(js: JetStreamContext, bucket: str) -> ObjectStore:
    return (await _object_store(js, bucket))[0]


async def provision(js: JetStreamContext) -> list[str]:
    """Create the async-call streams, KV buckets and artifact store that are missing; the names of those created."""
    created = await async_streams.ensure(js)
    for bucket in BUCKETS:
        if (await _kv(js, bucket))[1]:
            created.append(bucket)
    if (await _object_store(js, OBJ_ARTIFACTS))[1]:
        created.append(OBJ_ARTIFACTS)
    return created


async def _kv(js: JetStreamContext, bucket: str) -> tuple[KeyValue, bool]:
    """The bucket, and whether it was created now."""
    try:
        return await js.key_value(bucket), False
    except BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(bucket=bucket, history=1), True
    except BadRequestError:  # created concurrently by a gateway with another config
        return await js.key_value(bucket), False


async def _object_store(js: JetStreamContext, bucket: str) -> tuple[ObjectStore, bool]:
    try:
        return await js.object_store(bucket), False
    except (BucketNotFoundError, NotFoundError):
        pass
    try:
        return await js.create_object_store(bucket), True
    except BadRequestError:
        return await js.object_store(bucket), False
