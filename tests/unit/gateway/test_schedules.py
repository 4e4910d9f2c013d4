"""Schedule triggers against a real nats-server: two gateways keep the clock, each tick runs the function once."""

import asyncio
import itertools
import json
import uuid
from datetime import datetime

import nats
import pytest
from fx.protocol import KV_ROUTES, TriggerRoute

from tests.unit.gateway.conftest import table
from tests.unit.gateway.test_nats import wait_for


@pytest.fixture
async def two_gateways(nats_server, gateway):
    links = []
    for n in range(2):
        link = (await gateway(nats_url=nats_server, gateway_id=f"gw-{n}")).gateway
        await link.start()
        await wait_for(link.feed.healthy)
        links.append(link)
    nc = await nats.connect(nats_server)
    yield links, nc
    await nc.close()
    for link in links:
        await link.close()


async def scheduled_every_second(links, nc, replica):
    """Function "tick" with a schedule of every second, running on every gateway; its route bucket."""
    every_second = TriggerRoute("schedule", schedule="* * * * * *", timezone="UTC")
    kv = await nc.jetstream().key_value(KV_ROUTES)
    await kv.put("tick", table("tick", versions={"1": [replica.endpoint]}, triggers=[every_second]).to_json())
    await wait_for(lambda: all(link.events.schedules.running for link in links))
    return kv


async def test_every_tick_runs_once_across_two_gateways_with_a_scheduled_event(two_gateways, replicas):
    links, nc = two_gateways
    replica = await replicas()
    await scheduled_every_second(links, nc, replica)

    await asyncio.sleep(3.2)
    for link in links:  # no new ticks from here on; the ones stored still run
        link.events.schedules.close()
    await asyncio.sleep(0.5)

    events = [json.loads(seen["body"]) for seen in replica.seen]
    times = sorted(e["time"] for e in events)
    assert len(times) >= 3
    assert len(set(times)) == len(times), f"a tick ran twice: {times}"
    seconds = [datetime.fromisoformat(t).timestamp() for t in times]
    assert [b - a for a, b in itertools.pairwise(seconds)] == [1.0] * (len(seconds) - 1), times
    first = events[0]
    assert first == {
        "version": "0",
        "id": first["id"],
        "detail-type": "Scheduled Event",
        "source": "fx.schedule",
        "account": "",
        "time": first["time"],
        "region": "us-east-1",
        "resources": ["schedule:* * * * * *"],
        "detail": {},
    }
    assert uuid.UUID(first["id"]) and first["time"].endswith("Z")
    assert replica.seen[0]["path"] == "/_fx/invoke"
    # Both gateways published every tick; between them they stored each once.
    stored = sum(n for link in links for (_, _, result), n in link.events.event_stats.events.items())
    assert stored == len(times)


async def test_a_schedule_that_leaves_the_route_table_stops(two_gateways, replicas):
    links, nc = two_gateways
    replica = await replicas()
    kv = await scheduled_every_second(links, nc, replica)
    await kv.put("tick", table("tick", revision=2, versions={"1": [replica.endpoint]}).to_json())
    await wait_for(lambda: not any(link.events.schedules.running for link in links))
    await asyncio.sleep(0.3)  # a tick stored just before still runs
    before = replica.requests
    await asyncio.sleep(1.5)
    assert replica.requests == before
