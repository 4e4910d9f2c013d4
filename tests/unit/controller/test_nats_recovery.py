"""The controller and a NATS that goes away: nothing is scaled down meanwhile; fx's streams and buckets lost
while it stays connected are re-created and restored when an operation meets the gap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import nats
import nats.js.errors
import pytest
from fx.protocol import KV_APIS, KV_CREDENTIALS, KV_FUNCTIONS, KV_ROUTES, OBJ_ARTIFACTS, artifact_key
from fx_controller.state.store import FunctionRecord

from tests.loopback import free_port
from tests.nats_server import nats_server
from tests.unit.controller.conftest import make_zip, route_table
from tests.waiting import until


class Nats:
    """A nats-server that can be stopped and started again on its port and store."""

    def __init__(self, store: Path) -> None:
        self.store, self.port = store, free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._running: AbstractContextManager | None = None

    def start(self) -> None:
        self._running = nats_server(self.store, port=self.port)
        self._running.__enter__()

    def stop(self) -> None:
        if self._running is not None:
            self._running.__exit__(None, None, None)
            self._running = None


@pytest.fixture
def nats_process(tmp_path: Path) -> Iterator[Nats]:
    server = Nats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_process: Nats) -> str:
    return nats_process.url


async def test_no_replica_is_stopped_while_nats_is_away(controller, backend, deployed, nats_process):
    """A gateway that cannot be told a replica goes would keep sending it calls: the idle one stays until NATS
    is back."""
    await deployed("idle", scale={"idle_timeout": 1})
    ready = lambda: [r for r in controller.fleet.of("idle") if r.state == "ready"]  # noqa: E731
    assert ready()
    reconnected = controller._nc.reconnected()
    nats_process.stop()
    await until(lambda: not controller._nc.is_connected, 5, "the controller to see NATS gone")
    await asyncio.sleep(2.5)  # past the idle timeout and the stable window: it would be draining by now
    assert ready() and backend.stopped == []
    nats_process.start()
    await asyncio.wait_for(reconnected, 10)
    await until(lambda: backend.stopped, 10, "the idle replica to go once NATS is back")


async def test_a_lost_store_is_recreated_and_restored_when_an_operation_meets_it(controller, admin, deployed, nats_url):
    first = await deployed("hello")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for bucket in (KV_FUNCTIONS, KV_ROUTES):
        await js.delete_key_value(bucket)
    await js.delete_object_store(OBJ_ARTIFACTS)

    data, digest = make_zip({"handler.py": b"def handler(e, c):\n    return 2\n"})
    lost = await admin.put(f"/system/artifacts/{digest}", content=data)
    assert lost.status_code == 503, lost.text
    assert lost.json()["error"]["code"] == "NatsStoreLost" and "retry" in lost.json()["error"]["message"]

    async def restored() -> bool:
        try:
            entry = await (await js.key_value(KV_FUNCTIONS)).get("hello")
        except nats.js.errors.NotFoundError:
            return False
        return FunctionRecord.model_validate_json(entry.value) == controller.store.get("hello")

    await until(restored, 10, "the function record written back")
    await until(lambda: route_table(controller, "hello"), 10, "the route table published again")
    code = await (await js.object_store(OBJ_ARTIFACTS)).get_info(artifact_key(first["digest"]))
    assert code.size > 0  # the zip on the controller's disk, uploaded again
    assert (await admin.put(f"/system/artifacts/{digest}", content=data)).status_code == 200
    r = await admin.put("/system/functions/hello", json={"name": "hello", "artifact": digest})
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    await nc.close()


async def test_lost_access_keys_are_restored_from_the_controller(controller, admin, nats_url):
    issued = (await admin.post("/system/credentials", json={"name": "ci"})).json()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.delete_key_value(KV_CREDENTIALS)
    lost = await admin.post("/system/credentials", json={})
    assert lost.status_code == 503 and lost.json()["error"]["code"] == "NatsStoreLost", lost.text

    async def restored() -> bool:
        try:
            entry = await (await js.key_value(KV_CREDENTIALS)).get(issued["access_key_id"])
        except (nats.js.errors.NotFoundError, nats.js.errors.BucketNotFoundError):
            return False
        return json.loads(entry.value)["secret_access_key"] == issued["secret_access_key"]

    await until(restored, 10, "the access key written back")
    await nc.close()


async def test_lost_apis_are_restored_from_the_controller(controller, admin, nats_url):
    api = {"routes": {"GET /health": {"mock": {"body": {"ok": True}}}}}
    stored = (await admin.put("/system/apis/front", json=api)).json()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.delete_key_value(KV_APIS)
    lost = await admin.put("/system/apis/other", json={"routes": {"GET /other": {"mock": {}}}})
    assert lost.status_code == 503 and lost.json()["error"]["code"] == "NatsStoreLost", lost.text

    async def restored() -> bool:
        try:
            entry = await (await js.key_value(KV_APIS)).get("front")
        except (nats.js.errors.NotFoundError, nats.js.errors.BucketNotFoundError):
            return False
        return json.loads(entry.value) == stored  # what the gateways follow comes back as it was

    await until(restored, 10, "the API written back")
    await nc.close()
