"""JetStream refusing a write for lack of space is a 507 naming it, and the upload leaves nothing behind."""

from nats.js.errors import ServerError, ServiceUnavailableError

from tests.unit.controller.conftest import make_zip


async def test_an_object_store_out_of_space_is_a_507_and_leaves_no_file(admin, controller, monkeypatch):
    async def full(*args, **kwargs):
        raise ServerError(code=500, err_code=10051, description="write /s/nats/1.blk: no space left on device")

    monkeypatch.setattr(controller.artifacts._objects, "put", full)
    data, digest = make_zip({"handler.py": b"x = 1\n"})
    r = await admin.put(f"/system/artifacts/{digest}", content=data)
    assert r.status_code == 507 and r.json()["error"]["code"] == "InsufficientStorage"
    assert "no space left on device" in r.json()["error"]["message"]
    assert not list(controller.artifacts.root.iterdir())


async def test_a_kv_store_at_its_limit_is_a_507_and_the_function_is_not_stored(admin, controller, monkeypatch):
    data, digest = make_zip({"handler.py": b"x = 1\n"})
    assert (await admin.put(f"/system/artifacts/{digest}", content=data)).status_code == 200

    async def full(*args, **kwargs):
        raise ServiceUnavailableError(code=503, err_code=10023, description="insufficient resources")

    monkeypatch.setattr(controller.store._kv, "create", full)
    r = await admin.put("/system/functions/f", json={"name": "f", "artifact": digest})
    assert r.status_code == 507 and r.json()["error"]["code"] == "InsufficientStorage"
    assert (await admin.get("/system/functions/f")).status_code == 404
