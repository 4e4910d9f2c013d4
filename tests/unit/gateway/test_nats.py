"""The gateway against a real nats-server: route tables from KV, activation over fx.activate, load on fx.load."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import pytest
from fx.protocol import KV_ROUTES, SUBJECT_ACTIVATE, SUBJECT_LOAD, ActivationReply, ActivationRequest, LoadReport

from tests.loopback import free_port
from tests.unit.gateway.conftest import table


async def wait_for(predicate, timeout: float = 5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def platform(nats_server, gateway):
    """(gateway, link, nats client, routes KV) with the gateway following the real bucket."""
    gw = await gateway(nats_url=nats_server, gateway_id="gw-test")
    link = gw.gateway
    await link.start()
    nc = await nats.connect(nats_server)
    kv = await nc.jetstream().key_value(KV_ROUTES)  # the gateway created it
    await wait_for(link.feed.healthy)
    yield gw, link, nc, kv
    await nc.close()
    await link.close()


async def test_a_function_at_zero_is_activated_once_for_twenty_callers(platform, replicas):
    gw, _, nc, kv = platform
    replica = await replicas()
    asked: list[ActivationRequest] = []

    async def controller(msg):
        asked.append(ActivationRequest.from_json(msg.data))
        await asyncio.sleep(0.2)  # the replica "starts"
        await msg.respond(ActivationReply(ok=True, endpoints=[replica.endpoint]).to_json())

    await nc.subscribe(SUBJECT_ACTIVATE, cb=controller)
    await kv.put("hello", table(versions={"1": []}, concurrency=2).to_json())
    await wait_for(lambda: "hello" in gw.gateway.book.functions)

    answers = await asyncio.gather(*(gw.client.get("/function/hello") for _ in range(20)))
    assert [r.status_code for r in answers] == [200] * 20
    assert len(asked) == 1 and asked[0].function == "hello" and asked[0].version == "1"


async def test_an_activation_failure_reply_is_a_502_for_all_held(platform):
    gw, _, nc, kv = platform

    async def controller(msg):
        reply = ActivationReply(ok=False, status=502, error="Runtime.ImportModuleError", cause="No module named 'x'")
        await msg.respond(reply.to_json())

    await nc.subscribe(SUBJECT_ACTIVATE, cb=controller)
    await kv.put("broken", table("broken", versions={"1": []}).to_json())
    await wait_for(lambda: "broken" in gw.gateway.book.functions)
    answers = await asyncio.gather(*(gw.client.get("/function/broken") for _ in range(10)))
    for r in answers:
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "Runtime.ImportModuleError"
        assert r.json()["error"]["function"] == "broken"


async def test_route_table_updates_and_deletes_take_effect(platform, replicas):
    gw, _, _, kv = platform
    one, two = await replicas("one"), await replicas("two")
    await kv.put("hello", table(revision=1, versions={"1": [one.endpoint]}).to_json())
    await wait_for(lambda: "hello" in gw.gateway.book.functions)
    assert (await gw.client.get("/function/hello")).json()["name"] == "one"

    await kv.put("hello", table(revision=2, versions={"2": [two.endpoint]}).to_json())
    await wait_for(lambda: gw.gateway.book.functions["hello"].table.revision == 2)
    assert (await gw.client.get("/function/hello")).json()["name"] == "two"

    await kv.delete("hello")
    await wait_for(lambda: "hello" not in gw.gateway.book.functions)
    assert (await gw.client.get("/function/hello")).status_code == 404


async def test_load_reports_arrive_every_second_with_per_version_counts(platform, replicas):
    gw, _, nc, kv = platform
    replica = await replicas()
    reports: list[LoadReport] = []

    async def collect(msg):
        reports.append(LoadReport.from_json(msg.data))

    sub = await nc.subscribe(SUBJECT_LOAD, cb=collect)
    await kv.put("hello", table(versions={"1": [replica.endpoint]}).to_json())
    await wait_for(lambda: "hello" in gw.gateway.book.functions)
    for _ in range(4):
        await gw.client.get("/function/hello")
    await wait_for(lambda: any("hello/1" in r.versions for r in reports), timeout=3)
    await wait_for(lambda: len(reports) >= 2, timeout=3)
    await sub.unsubscribe()
    assert all(r.gateway == "gw-test" for r in reports)
    assert sum(r.versions["hello/1"].requests for r in reports if "hello/1" in r.versions) == 4
    assert any(not r.versions for r in reports)  # idle seconds still send a heartbeat


def test_the_cli_serves_health_and_exits_0_on_sigterm(nats_server):
    port = free_port()
    script = Path(sys.executable).with_name("fx-gateway")
    proc = subprocess.Popen(
        [str(script), "--nats", nats_server, "--listen", f"127.0.0.1:{port}", "--controller", "http://127.0.0.1:9"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FX_HOLD_TIMEOUT": "5"},
    )
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise AssertionError("gateway never became healthy")
        system = httpx.get(f"http://127.0.0.1:{port}/system/health", timeout=5)
        assert system.status_code == 502 and system.json()["error"]["code"] == "ControllerUnavailable"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
