"""fx's streams and buckets lost while the controller stays connected: the next operation that meets the gap
answers 503 NatsStoreLost and has them re-created and restored from the controller's memory and disk."""

from __future__ import annotations

import nats
import nats.js.errors
from fx.protocol import KV_FUNCTIONS, KV_ROUTES, OBJ_ARTIFACTS, artifact_key
from fx_controller.store import FunctionRecord

from tests.unit.controller.conftest import make_zip, route_table
from tests.waiting import until


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
