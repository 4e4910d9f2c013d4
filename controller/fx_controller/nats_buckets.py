"""Open a JetStream KV bucket or object store, creating it if missing (start order must not matter), and
create whichever of fx's streams, buckets and object store is missing, at any time (`provision`).

`replicas`: copies a new stream or bucket gets in a JetStream cluster (FX_NATS_REPLICAS); an existing bucket
keeps its own.
"""

from __future__ import annotations

from fx import async_streams
from fx.protocol import KV_API_KEYS, KV_APIS, KV_CREDENTIALS, KV_FUNCTIONS, KV_ROUTES, KV_SECRETS, OBJ_ARTIFACTS
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

BUCKETS = (KV_FUNCTIONS, KV_ROUTES, KV_SECRETS, KV_CREDENTIALS, KV_APIS, KV_API_KEYS)


async def open_kv(js: JetStreamContext, bucket: str, replicas: int = 1, ttl: float | None = None) -> KeyValue:
    """`ttl`: seconds a key of a new bucket lives after its last change (None: for ever)."""
    return (await _kv(js, bucket, replicas, ttl))[0]


async def open_object_store(js: JetStreamContext, bucket: str, replicas: int = 1) -> ObjectStore:
    return (await _object_store(js, bucket, replicas))[0]


async def provision(js: JetStreamContext, replicas: int = 1) -> list[str]:
    """Create the async-call streams, KV buckets and artifact store that are missing; the names of those created."""
    created = await async_streams.ensure(js, replicas)
    for bucket in BUCKETS:
        if (await _kv(js, bucket, replicas))[1]:
            created.append(bucket)
    if (await _object_store(js, OBJ_ARTIFACTS, replicas))[1]:
        created.append(OBJ_ARTIFACTS)
    return created


async def _kv(js: JetStreamContext, bucket: str, replicas: int, ttl: float | None = None) -> tuple[KeyValue, bool]:
    """The bucket, and whether it was created now."""
    try:
        return await js.key_value(bucket), False
    except BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(bucket=bucket, history=1, replicas=replicas, ttl=ttl), True
    except BadRequestError:  # created concurrently by a gateway with another config
        return await js.key_value(bucket), False


async def _object_store(js: JetStreamContext, bucket: str, replicas: int) -> tuple[ObjectStore, bool]:
    try:
        return await js.object_store(bucket), False
    except (BucketNotFoundError, NotFoundError):
        pass
    try:
        return await js.create_object_store(bucket, replicas=replicas), True
    except BadRequestError:
        return await js.object_store(bucket), False
