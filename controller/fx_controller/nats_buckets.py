"""Open a JetStream KV bucket or object store, creating it if missing (start order must not matter).

`replicas`: copies a new bucket gets in a JetStream cluster (FX_NATS_REPLICAS); an existing one keeps its own.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore


async def open_kv(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(bucket=bucket, history=1, replicas=replicas)
    except BadRequestError:  # created concurrently by a gateway with another config
        return await js.key_value(bucket)


async def open_object_store(js: JetStreamContext, bucket: str, replicas: int = 1) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    try:
        return await js.create_object_store(bucket, replicas=replicas)
    except BadRequestError:
        return await js.object_store(bucket)
