"""fx.kv_watch against a real nats-server, and against nats-py's early end-of-values marker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import nats
import pytest
from fx import kv_watch

from tests.nats_server import nats_server


@pytest.fixture
async def bucket(tmp_path: Path):
    with nats_server(tmp_path / "nats") as url:
        nc = await nats.connect(url)
        try:
            yield await nc.jetstream().create_key_value(bucket="things", history=1)
        finally:
            await nc.close()


async def test_load_returns_the_live_values_and_leaves_deleted_keys_out(bucket):
    for key in ("a", "b", "c"):
        await bucket.put(key, key.encode() * 2)
    await bucket.delete("b")
    await bucket.put("a", b"new")

    assert await kv_watch.load(bucket) == {"a": b"new", "c": b"cc"}


async def test_load_of_an_empty_bucket_is_empty(bucket):
    assert await kv_watch.load(bucket) == {}


async def test_watch_marks_the_end_of_the_stored_values_then_follows_changes(bucket):
    await bucket.put("a", b"1")
    seen: list[tuple[str, bytes | None] | None] = []

    async def follow():
        async for entry in kv_watch.watch(bucket):
            seen.append(None if entry is None else (entry.key, entry.value))
            if len(seen) == 4:
                return

    task = asyncio.create_task(follow())
    while None not in seen:
        await asyncio.sleep(0.01)
    await bucket.put("b", b"2")
    await bucket.delete("a")
    await asyncio.wait_for(task, 5)
    assert seen[:2] == [("a", b"1"), None]
    assert seen[2] == ("b", b"2") and seen[3][0] == "a"


class EarlyMarkerBucket:
    """A bucket whose watcher says "no more stored values" before delivering them (nats-io/nats.py#842)."""

    def __init__(self, entries: list[SimpleNamespace]) -> None:
        self.entries = entries
        self.stopped = False

    async def status(self):
        return SimpleNamespace(values=len(self.entries))

    async def watchall(self):
        bucket = self

        class Watcher:
            def __aiter__(self):
                return self._updates()

            async def _updates(self):
                yield None
                for entry in bucket.entries:
                    yield entry
                await asyncio.Event().wait()  # a live watch never ends by itself

            async def stop(self):
                bucket.stopped = True

        return Watcher()


async def test_load_waits_for_the_stored_values_even_when_nats_py_marks_their_end_too_early():
    entries = [
        SimpleNamespace(key="hello", value=b"v1", operation=None, delta=1),
        SimpleNamespace(key="echo", value=b"v1", operation=None, delta=0),
    ]
    fake = EarlyMarkerBucket(entries)

    assert await asyncio.wait_for(kv_watch.load(fake), 5) == {"hello": b"v1", "echo": b"v1"}
    assert fake.stopped, "the watch is stopped once the values are loaded"
