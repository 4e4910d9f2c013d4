"""NATS core triggers against a real nats-server: the event's shape, request-reply, queue groups, unsubscribe."""

import asyncio
import base64
import json

import nats
import pytest
from fx.protocol import TriggerRoute

from tests.unit.gateway.conftest import table
from tests.waiting import until


def triggered(subjects: list[str], endpoints: list[str], **extra):
    return table(versions={"1": endpoints}, triggers=[TriggerRoute("nats", s) for s in subjects], **extra)


@pytest.fixture
async def link_factory(nats_server, gateway):
    """Gateways following the real NATS; route tables are applied by hand through `publish`."""
    links = []

    async def make(**settings):
        gw = await gateway(nats_url=nats_server, gateway_id=f"gw-{len(links)}", **settings)
        link = gw.gateway
        await link.start()
        await until(link.feed.healthy)
        links.append(link)
        return gw, link

    nc = await nats.connect(nats_server)
    yield make, nc
    await nc.close()
    for link in links:
        await link.close()


async def subscribed(*links, count: int = 1) -> None:
    """Wait until each gateway has `count` trigger subscriptions and the server has them too."""
    await until(lambda: all(len(link.events.triggers.subscriptions) == count for link in links))
    for link in links:
        await link.link.nc.flush()


async def publish_table(nc, route_table) -> None:
    kv = await nc.jetstream().key_value("fx_routes")
    await kv.put(route_table.function, route_table.to_json())


async def one_trigger(link_factory, replicas, subject: str) -> tuple:
    """A gateway following NATS, a fake replica, and its function triggered by `subject`, subscribed:
    (the running gateway, its link, the test's NATS client, the replica)."""
    make, nc = link_factory
    gw, link = await make()
    replica = await replicas()
    await publish_table(nc, triggered([subject], [replica.endpoint]))
    await subscribed(link)
    return gw, link, nc, replica


async def test_a_message_invokes_the_function_with_a_documented_event(link_factory, replicas):
    gw, _, nc, replica = await one_trigger(link_factory, replicas, "orders.*")

    await nc.publish("orders.new", b'{"id": 7}', headers={"Trace": "abc"})
    await nc.publish("orders.bin", b"\xff\x00\xfe")
    await until(lambda: len(replica.seen) == 2)
    events = sorted((json.loads(seen["body"]) for seen in replica.seen), key=lambda e: e["subject"])
    assert events[1] == {
        "eventSource": "fx:nats",
        "trigger": "orders.*",
        "subject": "orders.new",
        "data": '{"id": 7}',
        "isBase64Encoded": False,
        "headers": {"Trace": "abc"},
        "reply": None,
    }
    assert events[0]["isBase64Encoded"] is True
    assert base64.b64decode(events[0]["data"]) == b"\xff\x00\xfe"
    await until(lambda: gw.gateway.events.event_stats.events.get(("hello", "orders.*", "ok")) == 2)


async def test_a_request_gets_the_functions_result_as_its_reply(link_factory, replicas):
    _, _, nc, replica = await one_trigger(link_factory, replicas, "quote.get")

    reply = await nc.request("quote.get", b"AAPL", timeout=5)
    assert reply.headers["Fx-Status"] == "200"
    assert json.loads(json.loads(reply.data)["body"])["data"] == "AAPL"

    replica.failures = 1
    failed = await nc.request("quote.get", b"AAPL", timeout=5)
    assert failed.headers["Fx-Function-Error"] == "Unhandled"
    assert json.loads(failed.data)["errorType"] == "Boom"


async def test_a_reply_subject_under_fx_or_nats_own_subjects_gets_no_reply(link_factory, replicas):
    """The publisher picks the reply subject: the gateway must not publish a result into $KV, $JS.API or fx.*."""
    _, _, nc, replica = await one_trigger(link_factory, replicas, "users.created")
    seen = []

    async def got(msg) -> None:
        seen.append(msg.subject)

    for subject in ("$KV.fx_routes.victim", "fx.activate", "orders.reply"):
        await nc.subscribe(subject, cb=got)
    for reply in ("$KV.fx_routes.victim", "fx.activate", "orders.reply"):
        await nc.publish("users.created", b"{}", reply=reply)
    await until(lambda: len(replica.seen) == 3 and seen == ["orders.reply"])
    await asyncio.sleep(0.2)
    assert seen == ["orders.reply"]


async def test_gateways_share_a_subject_so_each_message_is_handled_once(link_factory, replicas):
    make, nc = link_factory
    (_, first), (_, second) = await make(), await make()
    replica = await replicas()
    await publish_table(nc, triggered(["jobs.>"], [replica.endpoint], concurrency=0))
    await subscribed(first, second)

    for n in range(200):
        await nc.publish(f"jobs.{n}", b"x")
    await until(lambda: len(replica.seen) >= 200)
    await asyncio.sleep(0.2)  # a duplicate would arrive about now
    assert sorted(json.loads(s["body"])["subject"] for s in replica.seen) == sorted(f"jobs.{n}" for n in range(200))
    shares = [sum(s.events.values()) for s in (first.events.event_stats, second.events.event_stats)]
    assert sum(shares) == 200 and all(shares), shares  # both took part


async def test_a_trigger_removed_from_the_table_stops_invoking(link_factory, replicas):
    _, link, nc, replica = await one_trigger(link_factory, replicas, "a.b")
    await publish_table(nc, triggered([], [replica.endpoint], revision=2))
    await subscribed(link, count=0)
    await nc.publish("a.b", b"x")
    await nc.flush()
    await asyncio.sleep(0.2)
    assert replica.seen == []


async def test_past_the_trigger_concurrency_events_wait_in_order_and_past_their_bound_are_dropped(
    link_factory, replicas
):
    make, nc = link_factory
    gw, link = await make(trigger_concurrency=2, trigger_waiting_max=3)
    replica = await replicas()
    replica.delay = 0.3
    await publish_table(nc, triggered(["jobs.>"], [replica.endpoint], concurrency=0))
    await subscribed(link)

    for n in range(8):
        await nc.publish(f"jobs.{n}", b"x")
    await until(lambda: len(replica.seen) == 5, 10)
    await asyncio.sleep(0.5)  # a sixth would have arrived by now
    assert [json.loads(s["body"])["subject"] for s in replica.seen] == [f"jobs.{n}" for n in range(5)]
    events = gw.gateway.events.event_stats.events
    assert events.get(("hello", "jobs.>", "ok")) == 5 and events.get(("hello", "jobs.>", "dropped")) == 3
    for n in range(8, 10):  # the line is empty again: new events run
        await nc.publish(f"jobs.{n}", b"x")
    await until(lambda: len(replica.seen) == 7, 10)
