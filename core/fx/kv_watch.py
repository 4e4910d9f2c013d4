"""Watching a NATS KV bucket with a marker that really means "everything stored has arrived".

nats-py's watcher can yield its end-of-initial-values marker (None) before the stored values
it has already received (nats-io/nats.py#842). A controller restarting on a busy machine then
saw an empty function store and deployed version 1 all over again. Here the marker comes after
the first entry the server reports as the last one pending (delta 0), whenever the bucket held
values when the watch began.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import nats.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from .nats_client import Client

log = logging.getLogger("fx.nats")

DELETED = (KV_DEL, KV_PURGE)
RETRY_S = 0.5


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


async def follow(nc: Client, open_bucket: Callable[[], Awaitable[KeyValue]]) -> AsyncIterator[KeyValue.Entry | None]:
    """`watch`, kept alive: after every reconnect the bucket is opened again (`open_bucket` may wait for it to
    be re-created) and watched from scratch, since the watch's consumer may have died with nats-server, or its
    stream been lost and re-created with new sequence numbers. So every current entry comes again after a
    reconnect (apply them idempotently); None comes once, after the first full load. A key deleted while the
    connection was down is not reported."""
    loaded = warned = False
    while True:
        reconnected = nc.reconnected()
        try:
            kv = await open_bucket()
            async with aclosing(_until(watch(kv), reconnected)) as entries:
                async for entry in entries:
                    warned = False
                    if entry is not None:
                        yield entry
                    elif not loaded:
                        loaded = True
                        yield None
        except (nats.errors.Error, OSError) as exc:  # NATS went away mid-watch, or the bucket is not back yet
            if not warned:
                log.warning("KV watch failed (%s); watching again once NATS is back", exc)
                warned = True
        if reconnected.done():
            log.info("NATS reconnected: watching the bucket again")
        else:  # the watch ended or failed while connected: try again shortly, or at once on a reconnect
            await asyncio.wait({reconnected}, timeout=RETRY_S)
            reconnected.cancel()


async def _until(entries: AsyncIterator, stop: asyncio.Future) -> AsyncIterator:
    """`entries` until `stop` resolves."""
    pending: set[asyncio.Future] = {stop}
    try:
        while True:
            step = asyncio.ensure_future(anext(entries))
            pending = {step, stop}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return
            try:
                yield step.result()
            except StopAsyncIteration:
                return
    finally:
        for future in pending - {stop}:
            future.cancel()
            with contextlib.suppress(BaseException):
                await future
        with contextlib.suppress(Exception):
            await entries.aclose()
