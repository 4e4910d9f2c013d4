"""The gateway against a real nats-server: route tables from KV, activation over fx.activate, load on fx.load."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import nats
import pytest
from fx.protocol import KV_ROUTES, SUBJECT_ACTIVATE, SUBJECT_LOAD, ActivationReply, ActivationRequest, LoadReport
from fx_gateway.route_feed import RouteFeed

from tests.loopback import free_port
from tests.nats_server import nats_process
from tests.unit.gateway.conftest import table
from tests.waiting import until, wait_for


@pytest.fixture
async def platform(nats_server, gateway):
    """(gateway, link, nats client, routes KV) with the gateway following the real bucket."""
    gw = await gateway(nats_url=nats_server, gateway_id="gw-test")
    link = gw.gateway
    await link.start()
    nc = await nats.connect(nats_server)
    kv = await nc.jetstream().key_value(KV_ROUTES)  # the gateway created it
    await until(link.feed.healthy)
    yield gw, link, nc, kv
    await nc.close()
    await link.close()


async def test_activation_asks_the_controller_over_nats_and_its_reply_answers_the_caller(platform, replicas):
    """The wire only: how many activations held callers cause, and what they are answered, is test_hold.py's."""
    gw, _, nc, kv = platform
    replica = await replicas()
    asked: list[ActivationRequest] = []

    async def controller(msg):
        asked.append(request := ActivationRequest.from_json(msg.data))
        if request.function == "broken":
            reply = ActivationReply(
                ok=False, status=502, error="Runtime.ImportModuleError", cause="No module named 'x'"
            )
        else:
            reply = ActivationReply(ok=True, endpoints=[replica.endpoint])
        await msg.respond(reply.to_json())

    await nc.subscribe(SUBJECT_ACTIVATE, cb=controller)
    await kv.put("hello", table(versions={"1": []}).to_json())
    await kv.put("broken", table("broken", versions={"1": []}).to_json())
    await until(lambda: {"hello", "broken"} <= set(gw.gateway.book.functions))

    assert (await gw.client.get("/function/hello")).status_code == 200
    assert [(a.function, a.version) for a in asked] == [("hello", "1")]
    r = await gw.client.get("/function/broken")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "Runtime.ImportModuleError" and r.json()["error"]["function"] == "broken"
    assert "No module named 'x'" in r.json()["error"]["message"]


async def test_route_table_updates_and_deletes_take_effect(platform, replicas):
    gw, _, _, kv = platform
    one, two = await replicas("one"), await replicas("two")
    await kv.put("hello", table(revision=1, versions={"1": [one.endpoint]}).to_json())
    await until(lambda: "hello" in gw.gateway.book.functions)
    assert (await gw.client.get("/function/hello")).json()["name"] == "one"

    await kv.put("hello", table(revision=2, versions={"2": [two.endpoint]}).to_json())
    await until(lambda: gw.gateway.book.functions["hello"].table.revision == 2)
    assert (await gw.client.get("/function/hello")).json()["name"] == "two"

    await kv.delete("hello")
    await until(lambda: "hello" not in gw.gateway.book.functions)
    assert (await gw.client.get("/function/hello")).status_code == 404


async def test_load_reports_arrive_every_second_with_per_version_counts(platform, replicas):
    gw, _, nc, kv = platform
    replica = await replicas()
    reports: list[LoadReport] = []

    async def collect(msg):
        reports.append(LoadReport.from_json(msg.data))

    sub = await nc.subscribe(SUBJECT_LOAD, cb=collect)
    await kv.put("hello", table(versions={"1": [replica.endpoint]}).to_json())
    await until(lambda: "hello" in gw.gateway.book.functions)
    for _ in range(4):
        await gw.client.get("/function/hello")
    await until(lambda: any("hello/1" in r.versions for r in reports), timeout=3)
    await until(lambda: len(reports) >= 2, timeout=3)
    await sub.unsubscribe()
    assert all(r.gateway == "gw-test" for r in reports)
    assert sum(r.versions["hello/1"].requests for r in reports if "hello/1" in r.versions) == 4
    assert any(not r.versions for r in reports)  # idle seconds still send a heartbeat


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_the_cli_serves_health_and_exits_0_on_sigterm(nats_server):
    port = free_port()
    script = Path(sys.executable).with_name("fx-gateway")
    proc = subprocess.Popen(
        [str(script), "--nats", nats_server, "--listen", f"127.0.0.1:{port}", "--controller", "http://127.0.0.1:9"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FX_HOLD_TIMEOUT": "5", "FX_SYSTEM_CONNECT_TIMEOUT": "0.5"},
    )
    try:
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}/healthz"), 5, "the gateway healthy")
        system = httpx.get(f"http://127.0.0.1:{port}/system/health", timeout=5)
        assert system.status_code == 502 and system.json()["error"]["code"] == "ControllerUnavailable"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
    assert code == 0, proc.stderr.read() if proc.stderr else ""


def test_a_gateway_stays_ready_while_nats_is_away_once_it_has_its_route_tables() -> None:
    """On Kubernetes, readiness decides whether the Service sends callers: a NATS outage must not take every
    gateway out of it, since each keeps serving with the route tables it holds."""
    link = SimpleNamespace(connected=False)
    feed = RouteFeed(link, SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]
    assert not feed.healthy()  # never loaded: nothing to serve with
    feed.loaded = True
    assert feed.healthy()  # NATS away (link.connected False): still serving


def test_a_nats_server_that_stops_answering_does_not_hold_the_gateways_exit(tmp_path):
    """A server that no longer answers (here: stopped) must not hold the exit past the pod's grace period, as
    nats-py's own drain would for 30 s."""
    port = free_port()
    script = Path(sys.executable).with_name("fx-gateway")
    with nats_process(tmp_path / "js") as (url, server):
        proc = subprocess.Popen(
            [str(script), "--nats", url, "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for(lambda: healthy(f"http://127.0.0.1:{port}/healthz"), 10, "the gateway healthy")
            os.kill(server.pid, signal.SIGSTOP)
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(40)
            took = time.monotonic() - began
        finally:
            proc.kill()
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert took < 10  # leaving NATS is bounded to 5 s (fx.nats_client.DRAIN_S), not nats-py's 30
