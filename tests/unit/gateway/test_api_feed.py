"""APIs from a real KV fx_apis: served once put, changed, kept when a value is unreadable, gone when deleted."""

import nats
import pytest
from fx.protocol import KV_APIS

from tests.unit.gateway.conftest import table
from tests.waiting import until

from .test_api_matching import api


@pytest.fixture
async def platform(nats_server, gateway):
    """(gateway, the fx_apis KV) with the gateway following the real bucket."""
    gw = await gateway(nats_url=nats_server, gateway_id="gw-test")
    await gw.gateway.start()
    await until(gw.gateway.loaded)  # its watch made the bucket by then: a NATS without auth
    nc = await nats.connect(nats_server)
    kv = await nc.jetstream().key_value(KV_APIS)
    yield gw, kv
    await nc.close()
    await gw.gateway.close()


async def test_apis_follow_the_bucket(platform, replicas, caplog):
    gw, kv = platform
    replica = await replicas()
    gw.gateway.book.apply(table("users", versions={"1": [replica.endpoint]}))
    assert (await gw.client.get("/healthz")).status_code == 200

    await kv.put("shop", api("shop", {"GET /users/{id}": {"function": "users"}}))
    await until(lambda: "shop" in gw.gateway.apis.apis)
    assert (await gw.client.get("/users/1")).status_code == 200

    await kv.put("shop", b'{"name": "shop", "routes": ')  # unreadable: the API held keeps serving
    await until(lambda: "API 'shop' unreadable" in caplog.text)
    assert (await gw.client.get("/users/1")).status_code == 200

    await kv.put("shop", api("shop", {"GET /people/{id}": {"function": "users"}}))
    await until(lambda: gw.gateway.apis.apis["shop"].routes[0].key == "GET /people/{id}")
    assert (await gw.client.get("/people/1")).status_code == 200
    assert (await gw.client.get("/users/1")).json() == {"message": "Not Found"}

    await kv.delete("shop")
    await until(lambda: "shop" not in gw.gateway.apis.apis)
    assert (await gw.client.get("/people/1")).json()["error"]["code"] == "NotFound"  # no API left: the gateway's
