"""nats-server killed (kill -9) under load and started again, on its store dir or on an empty one.

What must hold: synchronous calls to a warm function answer 200 all along (the gateway serves from the route
tables it holds); every async call answered 202 and every durable event NATS acknowledged runs at least once;
after NATS is back (even without its store) the functions, versions, traffic and aliases are there, invokes
work and `fx deploy` works. The recovery times are printed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import SteadyLoad, report_file
from tests.integration.nats_control import start_nats, stop_nats
from tests.integration.test_nats_restart import deploy
from tests.integration.test_traffic import BODY, IMPORTS, settings
from tests.waiting import wait_for

SINK = """\
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        if "Records" in event:
            for record in event["Records"]:
                out.write(record["data"] + "\\n")
        else:
            out.write(f"{event['n']}\\n")
    return {}
"""

HELLO = """\
def handler(event, context):
    return {"statusCode": 200, "body": "hello %s"}
"""

MAX_CALLS = 2000  # per sender: every loop here is bounded in count and in time
MAX_SECONDS = 120.0


def received(out: Path) -> set[str]:
    return set(out.read_text().split()) if out.exists() else set()


class AsyncCalls(threading.Thread):
    """Async calls (Invoke API, Event) sent one after another; `accepted` keeps (n, sent at) of each 202."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, threading.Event()
        self.accepted: list[tuple[str, float]] = []
        self.refused = 0

    def run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        with httpx.Client(timeout=10) as client:
            for n in range(MAX_CALLS):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                sent = time.monotonic()
                try:
                    r = client.post(self.url, json={"n": n}, headers={"X-Amz-Invocation-Type": "Event"})
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code == 202:
                    self.accepted.append((str(n), sent))
                else:
                    self.refused += 1
                self.stop.wait(0.02)  # a steady stream, not a flood


class DurableEvents(threading.Thread):
    """Events published to the stream ORDERS one after another; `acked` keeps (data, sent at) of each one
    JetStream acknowledged (stored)."""

    def __init__(self, platform: RunningPlatform) -> None:
        super().__init__(daemon=True)
        self.platform, self.stop = platform, threading.Event()
        self.acked: list[tuple[str, float]] = []
        self.unacked = 0

    def run(self) -> None:
        asyncio.run(self._publish())

    async def _publish(self) -> None:
        nc = await self.platform.nats(max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream()
        deadline = time.monotonic() + MAX_SECONDS
        for n in range(MAX_CALLS):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            sent = time.monotonic()
            try:
                await js.publish("orders.new", f"e{n}".encode(), timeout=1)
                self.acked.append((f"e{n}", sent))
            except Exception:  # NATS away: this one may or may not be stored; it is not counted
                self.unacked += 1
            await asyncio.sleep(0.02)
        await nc.close()


def create_stream(platform: RunningPlatform) -> None:
    async def create() -> None:
        nc = await platform.nats()
        await nc.jetstream().add_stream(name="ORDERS", subjects=["orders.>"])
        await nc.close()

    asyncio.run(create())


def healthy(platform: RunningPlatform) -> bool:
    try:
        return httpx.get(f"{platform.gateway_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_kill_9_of_nats_under_load_loses_no_accepted_call_and_no_warm_sync_call_fails(fast_platform, tmp_path):
    platform = fast_platform
    create_stream(platform)
    out, events_out = report_file(platform, "sink"), report_file(platform, "orders")
    deploy(platform, tmp_path / "sink", SINK, {"env": {"OUT": str(out)}, "scale": {"max": 4}})
    trigger = {"jetstream": {"stream": "ORDERS"}}
    deploy(platform, tmp_path / "orders", SINK, {"env": {"OUT": str(events_out)}, "triggers": [trigger]})
    deploy(platform, tmp_path / "hello", HELLO % 1, {"scale": {"min": 1, "max": 1}})
    hello = f"{platform.gateway_url}/function/hello"
    wait_for(lambda: httpx.get(hello).status_code == 200, 30, "hello to be warm")

    calls = AsyncCalls(f"{platform.gateway_url}/2015-03-31/functions/sink/invocations")
    events = DurableEvents(platform)
    with SteadyLoad(hello, callers=4, max_seconds=MAX_SECONDS) as load:
        calls.start()
        events.start()
        wait_for(lambda: len(calls.accepted) >= 20 and len(events.acked) >= 20, 30, "calls and events flowing")
        killed = time.monotonic()
        argv = stop_nats(platform)
        refused = calls.refused
        down = lambda: len(load.between(killed, time.monotonic())) >= 200 and calls.refused >= refused + 25  # noqa: E731
        wait_for(down, 30, "sync calls answered and async calls refused while NATS is down")
        served_while_down = len(load.between(killed, time.monotonic()))
        started = time.monotonic()
        start_nats(platform, argv)
        wait_for(lambda: healthy(platform), 30, "the gateway to be healthy again")
        gateway_back = time.monotonic() - started
        wait_for(lambda: any(t > started for _, t in calls.accepted), 30, "an async call accepted again")
        async_back = time.monotonic() - started
        wait_for(lambda: any(t > started for _, t in events.acked), 30, "a durable event stored again")
        after = [data for data, t in events.acked if t > started]
        wait_for(lambda: after[0] in received(events_out), 30, "a durable event delivered again")
        events_back = time.monotonic() - started
        flowing = lambda: min(sum(t > started for _, t in sent) for sent in (calls.accepted, events.acked))  # noqa: E731
        wait_for(lambda: flowing() >= 20, 30, "calls and events flowing after the restart")
        calls.stop.set()
        events.stop.set()
        calls.join(30)
        events.join(30)
    outage = started - killed
    wait_for(lambda: {n for n, _ in calls.accepted} <= received(out), 60, "every accepted async call to run")
    wait_for(lambda: {d for d, _ in events.acked} <= received(events_out), 60, "every acked event to be delivered")
    failed = [(status, body[:80]) for _, _, status, body in load.answers if status != 200]
    assert failed == [], f"{len(failed)} of {len(load.answers)} sync calls failed: {failed[:5]}"

    deploy(platform, tmp_path / "hello", HELLO % 2, {"scale": {"min": 1, "max": 1}})
    assert httpx.get(hello).text == "hello 2"
    print(
        f"\nNATS down {outage:.2f} s; back: gateway healthy in {gateway_back:.2f} s, async calls accepted in"
        f" {async_back:.2f} s, durable events delivered in {events_back:.2f} s. Sync calls: {len(load.answers)}"
        f" all 200 ({served_while_down} while NATS was down). Async calls: {len(calls.accepted)} accepted, all run"
        f" ({calls.refused} refused while NATS was away). Durable events: {len(events.acked)} acked, all delivered"
        f" ({events.unacked} unacknowledged while NATS was away)."
    )


def test_nats_back_with_an_empty_store_gets_every_function_version_split_and_alias_back(
    platform, make_function, tmp_path
):
    def deploy_shop(color: str, *flags: str) -> None:
        project = make_function("shop", body=BODY, imports=IMPORTS.format(color=color))
        deployed = platform.fx("deploy", *flags, cwd=project)
        assert deployed.returncode == 0, deployed.stderr

    deploy_shop("blue")
    deploy_shop("green", "--no-traffic")
    assert platform.fx("traffic", "shop", "1=50", "2=50").returncode == 0
    assert platform.fx("alias", "shop", "beta", "2").returncode == 0
    warm = make_function("warm", body="return {'statusCode': 200, 'body': 'warm'}", scale={"min": 1})
    assert platform.fx("deploy", cwd=warm).returncode == 0
    assert platform.fx("stream", "create", "ORDERS", "orders.>").returncode == 0
    out = report_file(platform, "orders")
    trigger = {"jetstream": {"stream": "ORDERS"}}
    deploy(platform, tmp_path / "orders", SINK, {"env": {"OUT": str(out)}, "triggers": [trigger]})
    publish_order(platform, "before")
    wait_for(lambda: "before" in received(out), 30, "the event published before")
    before = settings(platform, "shop")
    listed = platform.fx("ls").stdout.split("\n")[1:]

    argv = stop_nats(platform)
    started = time.monotonic()
    start_nats(platform, argv, empty=True)
    wait_for(lambda: healthy(platform), 30, "the gateway to be healthy again")
    wait_for(lambda: routes_back(platform), 30, "the route tables in NATS again")
    restored = time.monotonic() - started

    assert settings(platform, "shop") == before
    assert [line.split()[:3] for line in platform.fx("ls").stdout.split("\n")[1:] if line] == [
        line.split()[:3] for line in listed if line
    ]
    assert httpx.get(f"{platform.gateway_url}/function/warm", timeout=30).text == "warm"
    assert httpx.get(f"{platform.gateway_url}/function/shop@beta", timeout=30).text == "2"
    assert {httpx.get(f"{platform.gateway_url}/function/shop", timeout=30).text for _ in range(30)} == {"1", "2"}
    deploy_shop("red")  # the code zip is uploaded again to the re-created object store
    assert settings(platform, "shop")["latest"] == 3
    log = (platform.state_dir / "logs" / "platform" / "controller.log").read_text()
    assert log.count("NATS lost fx's data") == 1, log[-3000:]
    assert "the users' streams ORDERS (triggers of orders): create them again" in log

    assert platform.fx("stream", "create", "ORDERS", "orders.>").returncode == 0  # the durable trigger resumes
    publish_order(platform, "after")
    wait_for(lambda: "after" in received(out), 30, "the event published once the stream is back")
    print(f"\nNATS back with an empty store: route tables in NATS again {restored:.2f} s after it started")


def publish_order(platform: RunningPlatform, data: str) -> None:
    async def publish() -> None:
        nc = await platform.nats()
        await nc.jetstream().publish("orders.new", data.encode())
        await nc.close()

    asyncio.run(publish())


def routes_back(platform: RunningPlatform) -> bool:
    async def keys() -> list[str]:
        nc = await platform.nats()
        try:
            return await (await nc.jetstream().key_value("fx_routes")).keys()
        except Exception:
            return []
        finally:
            await nc.close()

    return set(asyncio.run(keys())) == {"shop", "warm", "orders"}
