"""The function store on a real JetStream KV bucket: what a restarted controller reads back."""

from __future__ import annotations

from datetime import UTC, datetime

import nats
import pytest
from fx.models import FunctionSpec
from fx_controller.api.errors import ApiError
from fx_controller.state.store import FunctionRecord, FunctionStore, VersionRecord

DIGEST = "sha256:" + "ab" * 32


def record(name: str, versions: int) -> FunctionRecord:
    spec = FunctionSpec(name=name, artifact=DIGEST)
    now = datetime.now(UTC)
    made = [VersionRecord(version=n, digest=DIGEST, created_at=now, spec=spec) for n in range(1, versions + 1)]
    return FunctionRecord(name=name, versions=made, traffic={versions: 100})


@pytest.fixture
async def kv(nats_url):
    nc = await nats.connect(nats_url)
    yield await nc.jetstream().create_key_value(bucket="fx_functions_test", history=1)
    await nc.close()


async def test_a_new_store_loads_every_function_but_the_deleted_ones(kv):
    first = FunctionStore(kv)
    for name, versions in (("hello", 3), ("echo", 1), ("gone", 2)):
        await first.put(record(name, versions))
    first.forget("gone")
    await first.delete("gone")

    second = FunctionStore(kv)
    await second.load()
    assert [(r.name, r.latest.version) for r in second.all()] == [("echo", 1), ("hello", 3)]


async def test_a_store_that_missed_a_function_refuses_to_overwrite_it(kv):
    await FunctionStore(kv).put(record("hello", 3))

    unloaded = FunctionStore(kv)
    with pytest.raises(ApiError) as caught:
        await unloaded.put(record("hello", 1))
    assert caught.value.status == 409 and "restart the controller" in caught.value.detail.message
    reread = FunctionStore(kv)
    await reread.load()
    assert reread.get("hello").latest.version == 3, "the stored versions are intact"


async def test_a_deleted_function_can_be_created_again(kv):
    store = FunctionStore(kv)
    await store.put(record("hello", 2))
    store.forget("hello")
    await store.delete("hello")
    await store.put(record("hello", 1))
    reread = FunctionStore(kv)
    await reread.load()
    assert reread.get("hello").latest.version == 1
