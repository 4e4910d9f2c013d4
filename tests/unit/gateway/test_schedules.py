"""Schedule triggers against a real nats-server: two gateways keep the clock, each tick runs the function once.

The gateways share a clock the test moves by hand, so every tick is one the test made.
"""

import asyncio
import json
import uuid

import nats
import pytest
from fx.protocol import KV_ROUTES, TriggerRoute
from fx_gateway.events.schedules import Clock

from tests.unit.gateway.conftest import table
from tests.waiting import until


class HandClock(Clock):
    """Time stands still until the test moves it; `sleepers` counts the schedules waiting for it."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleepers = 0
        self.moved = asyncio.Condition()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = self.now + seconds
        self.sleepers += 1
        try:
            async with self.moved:
                await self.moved.wait_for(lambda: self.now >= wake)
        finally:
            self.sleepers -= 1

    async def advance(self, seconds: float) -> None:
        async with self.moved:
            self.now += seconds
            self.moved.notify_all()


START = 1_800_000_000.5  # half a second before a tick


@pytest.fixture
async def two_gateways(nats_server, gateway):
    links, clock = [], HandClock(START)
    for n in range(2):
        link = (await gateway(nats_url=nats_server, gateway_id=f"gw-{n}")).gateway
        await link.start()
        await until(link.feed.healthy)
        link.events.schedules.clock = clock
        links.append(link)
    nc = await nats.connect(nats_server)
    yield links, nc, clock
    await nc.close()
    for link in links:
        await link.close()


async def scheduled_every_second(links, nc, replica):
    """Function "tick" with a schedule of every second, running on every gateway; its route bucket."""
    every_second = TriggerRoute("schedule", schedule="* * * * * *", timezone="UTC")
    kv = await nc.jetstream().key_value(KV_ROUTES)
    await kv.put("tick", table("tick", versions={"1": [replica.endpoint]}, triggers=[every_second]).to_json())
    await until(lambda: all(link.events.schedules.running for link in links))
    return kv


def stored(links) -> int:
    """The ticks the gateways stored between them (a copy another gateway already stored is not counted)."""
    return sum(n for link in links for n in link.events.event_stats.events.values())


async def test_every_tick_runs_once_across_two_gateways_with_a_scheduled_event(two_gateways, replicas):
    links, nc, clock = two_gateways
    replica = await replicas()
    await scheduled_every_second(links, nc, replica)

    for n in range(1, 4):
        await until(lambda: clock.sleepers == 2, 5, "both gateways waiting for the next tick")
        await clock.advance(1)
        await until(lambda n=n: stored(links) >= n, 5, f"tick {n} stored")
    await until(lambda: clock.sleepers == 2, 5, "both gateways done with the third tick")
    for link in links:  # no new ticks from here on; the ones stored still run
        link.events.schedules.close()
    await until(lambda: len(replica.seen) >= stored(links), 5, "every stored tick run")

    events = [json.loads(seen["body"]) for seen in replica.seen]
    times = sorted(e["time"] for e in events)
    assert times == ["2027-01-15T08:00:01Z", "2027-01-15T08:00:02Z", "2027-01-15T08:00:03Z"], times
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
    assert stored(links) == 3  # both gateways published every tick; between them they stored each once


async def test_a_schedule_that_leaves_the_route_table_stops(two_gateways, replicas):
    links, nc, clock = two_gateways
    replica = await replicas()
    kv = await scheduled_every_second(links, nc, replica)
    tasks = [task for link in links for task in link.events.schedules.running.values()]
    await kv.put("tick", table("tick", revision=2, versions={"1": [replica.endpoint]}).to_json())
    await until(lambda: all(task.done() for task in tasks), 5, "every gateway's schedule ended")
    await clock.advance(5)
    assert clock.sleepers == 0 and not any(link.events.schedules.running for link in links)
    assert stored(links) == 0 and replica.requests == 0
