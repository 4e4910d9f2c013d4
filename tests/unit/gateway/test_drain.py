"""A stopping gateway's drain: what is in flight is finished within --drain-timeout; at its end a request still
waiting for a replica is answered 503 (it never ran), and only a request at a replica is cut."""

import asyncio

import httpx
import pytest

from tests.unit.gateway.conftest import FakeActivator, table
from tests.waiting import until


async def test_at_the_drain_deadline_a_held_request_is_answered_503_and_one_at_a_replica_is_cut(gateway, replicas):
    replica = await replicas()
    replica.delay = 5
    gw = await gateway(FakeActivator(), hold_timeout=30)
    gw.gateway.book.apply(table(versions={"1": []}))  # no replica, and the activator never answers: held
    gw.gateway.book.apply(table("busy", versions={"1": [replica.endpoint]}))
    held = asyncio.create_task(gw.client.get("/function/hello"))
    at_replica = asyncio.create_task(gw.client.get("/function/busy"))
    dispatcher = gw.gateway.book.functions["hello"].dispatchers["1"]
    await until(lambda: len(dispatcher.queue) == 1 and replica.in_flight == 1)

    gw.server.close()
    await asyncio.wait_for(gw.gateway.stop(drain_timeout=0.3), 5)

    answer = await held
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1" and answer.headers["connection"] == "close"
    assert answer.json()["error"]["code"] == "GatewayStopping"
    assert "it did not run: retry" in answer.json()["error"]["message"]
    with pytest.raises(httpx.RemoteProtocolError):
        await at_replica


async def test_a_request_that_gets_its_replica_within_the_drain_is_served(gateway, replicas):
    replica = await replicas()
    gw = await gateway(FakeActivator(), hold_timeout=30)
    gw.gateway.book.apply(table(versions={"1": []}))
    held = asyncio.create_task(gw.client.get("/function/hello"))
    dispatcher = gw.gateway.book.functions["hello"].dispatchers["1"]
    await until(lambda: len(dispatcher.queue) == 1)

    gw.server.close()
    stopping = asyncio.create_task(gw.gateway.stop(drain_timeout=5))
    await asyncio.sleep(0.2)
    gw.gateway.book.apply(table(revision=2, versions={"1": [replica.endpoint]}))  # a replica came, mid-drain
    answer = await held
    await asyncio.wait_for(stopping, 2)
    assert answer.status_code == 200 and replica.requests == 1
