"""Watching a NATS KV bucket with a marker that really means "everything stored has arrived".

nats-py's watcher can yield its end-of-initial-values marker (None) before the stored values
it has already received (nats-io/nats.py#842). A controller restarting on a busy machine then
saw an empty function store and deployed version 1 all over again. Here the marker comes after
the first entry the server reports as the last one pending (delta 0), whenever the bucket held
values when the watch began.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, suppress

from nats.errors import Error as NatsError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

DELETED = (KV_DEL, KV_PURGE)


async def watch(kv: KeyValue) -> AsyncIterator[KeyValue.Entry | None]:
    """Every current entry, then None once, then every change (deletes included) as it happens."""
    stored = (await kv.status()).values  # counted before the watch starts: all of these will be delivered
    watcher = await kv.watchall()
    loaded = False
    try:
        async for entry in watcher:
            if entry is None:
                if not loaded and stored == 0:
                    loaded = True
                    yield None
                continue
            yield entry
            if not loaded and entry.delta == 0:
                loaded = True
                yield None
    finally:
        with suppress(NatsError):  # the connection is closed (NATS gone, or we are stopping): so is the watcher
            await watcher.stop()


async def load(kv: KeyValue) -> dict[str, bytes]:
    """The bucket's current values by key, deleted keys left out."""
    values: dict[str, bytes] = {}
    async with aclosing(watch(kv)) as entries:
        async for entry in entries:
            if entry is None:
                break
            if entry.operation in DELETED:
                values.pop(entry.key, None)
            else:
                values[entry.key] = entry.value
    return values
