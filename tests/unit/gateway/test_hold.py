"""Holding requests for a version at zero: one activation, then everyone served, or everyone told why."""

import asyncio

import httpx
from fx.protocol import ActivationReply

from tests.unit.gateway.conftest import FakeActivator, table
from tests.waiting import until


async def test_twenty_held_requests_cause_one_activation_and_all_are_answered(gateway, replicas):
    replica = await replicas()
    activator = FakeActivator()
    activator.delay = 0.2
    activator.reply = lambda req: ActivationReply(ok=True, endpoints=[replica.endpoint])
    gw = await gateway(activator)
    gw.gateway.book.apply(table(versions={"1": []}, concurrency=4))

    answers = await asyncio.gather(*(gw.client.get("/function/hello") for _ in range(20)))
    assert [r.status_code for r in answers] == [200] * 20
    assert len(activator.requests) == 1
    assert activator.requests[0].queued >= 1
    metrics = (await gw.client.get("/metrics")).text
    assert 'fx_gateway_cold_starts_total{function="hello",version="1"} 20.0' in metrics
    assert 'fx_gateway_cold_start_seconds_count{function="hello",version="1"} 20.0' in metrics
    assert 'fx_gateway_held{function="hello",version="1"} 0.0' in metrics


async def test_a_start_failure_is_a_502_with_the_runtimes_error_for_every_held_request(gateway):
    activator = FakeActivator()
    activator.reply = lambda req: ActivationReply(
        ok=False, status=502, error="Runtime.ImportModuleError", cause="No module named 'nothere'"
    )
    gw = await gateway(activator)
    gw.gateway.book.apply(table(versions={"1": []}))
    answers = await asyncio.gather(*(gw.client.get("/function/hello") for _ in range(5)))
    assert len(activator.requests) == 1
    for r in answers:
        assert r.status_code == 502
        assert r.json()["error"] == {
            "code": "Runtime.ImportModuleError",
            "message": "function hello failed to start: No module named 'nothere'",
            "function": "hello",
        }


async def test_no_activation_reply_within_the_hold_timeout_is_a_504(gateway):
    gw = await gateway(FakeActivator(), hold_timeout=0.3)
    gw.gateway.book.apply(table(versions={"1": []}))
    r = await gw.client.get("/function/hello")
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "ActivationTimeout"
    assert "did not become ready within 0.3 s" in r.json()["error"]["message"]


async def test_a_held_caller_that_hangs_up_leaves_the_queue(gateway):
    gw = await gateway(FakeActivator(), hold_timeout=30)
    gw.gateway.book.apply(table(versions={"1": []}))
    dispatcher = gw.gateway.book.functions["hello"].dispatchers["1"]
    async with httpx.AsyncClient(base_url=gw.url) as client:
        calls = [asyncio.ensure_future(client.get("/function/hello")) for _ in range(3)]
        await until(lambda: len(dispatcher.queue) == 3, 5, "three callers held")
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await until(lambda: not dispatcher.queue, 5, "the callers who hung up out of the queue")
    assert dispatcher.stats.held == 0


async def test_deleting_the_function_answers_its_held_requests(gateway):
    gw = await gateway(FakeActivator(), hold_timeout=30)
    gw.gateway.book.apply(table(versions={"1": []}))
    call = asyncio.ensure_future(gw.client.get("/function/hello"))
    await until(lambda: gw.gateway.book.functions["hello"].dispatchers["1"].queue, 5, "the caller held")
    gw.gateway.book.remove("hello")
    r = await call
    assert r.status_code == 404 and r.json()["error"]["code"] == "FunctionNotFound"


async def test_a_version_at_zero_with_a_standby_sends_its_first_requests_there_without_an_activation(gateway, replicas):
    """The standby (a prepared spare, local backend) takes the cold start: no activation asked; it is a replica of
    the version from then on, until the next route table says what it is."""
    standby = await replicas()
    activator = FakeActivator()
    gw = await gateway(activator)
    t = table(versions={"1": []}, concurrency=4)
    t.versions["1"].standby = standby.endpoint
    gw.gateway.book.apply(t)

    answers = await asyncio.gather(*(gw.client.get("/function/hello") for _ in range(3)))
    assert [r.status_code for r in answers] == [200] * 3 and standby.requests == 3
    assert activator.requests == []
    dispatcher = gw.gateway.book.functions["hello"].dispatchers["1"]
    assert list(dispatcher.replicas) == [standby.endpoint] and dispatcher.standby == ""


async def test_a_standby_that_refuses_its_connection_leaves_the_cold_start_to_an_activation(
    gateway, replicas, tmp_path
):
    """One out of date (the spare gone, its socket with it): the request is routed again, as for any refused
    connection, and the activation's replica answers it."""
    replica = await replicas()
    activator = FakeActivator()
    activator.reply = lambda req: ActivationReply(ok=True, endpoints=[replica.endpoint])
    gw = await gateway(activator)
    t = table(versions={"1": []})
    t.versions["1"].standby = f"unix:{tmp_path}/gone.sock"
    gw.gateway.book.apply(t)

    r = await gw.client.get("/function/hello")
    assert r.status_code == 200 and replica.requests == 1 and len(activator.requests) == 1


async def test_a_standby_is_not_used_while_a_replica_can_take_the_request(gateway, replicas):
    replica, standby = await replicas(), await replicas()
    gw = await gateway(FakeActivator())
    t = table(versions={"1": [replica.endpoint]})
    t.versions["1"].standby = standby.endpoint
    gw.gateway.book.apply(t)
    assert (await gw.client.get("/function/hello")).status_code == 200
    assert (replica.requests, standby.requests) == (1, 0)
