"""Versions, traffic splits, aliases, promotes, rollbacks and keep-warm through the admin API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import nats
import pytest
from fx.protocol import LoadReport, VersionLoad
from fx_controller.api.app import create_app
from fx_controller.controller import Controller
from fx_controller.replicas.fleet import TABLE_AFTER_READY_S
from fx_controller.settings import Settings

from tests.waiting import until

from .conftest import FakeBackend, make_zip, route_table, settled


async def put_version(admin: httpx.AsyncClient, name: str, n: int, traffic: str = "all", **spec) -> dict:
    """Deploy code that differs per `n`, so each call makes a new version."""
    data, digest = make_zip({"handler.py": f"def handler(e, c):\n    return {n}\n".encode()})
    assert (await admin.put(f"/system/artifacts/{digest}", content=data)).status_code == 200
    r = await admin.put(
        f"/system/functions/{name}", params={"traffic": traffic}, json={"name": name, "artifact": digest, **spec}
    )
    assert r.status_code == 200, r.text
    return await settled(admin, r.json())


async def three_versions(admin: httpx.AsyncClient) -> None:
    for n in (1, 2, 3):
        await put_version(admin, "fn", n)


async def test_a_no_traffic_deploy_keeps_the_split_and_starts_one_warm_replica(admin, controller, backend):
    await put_version(admin, "fn", 1)
    result = await put_version(admin, "fn", 2, traffic="none")
    assert result["version"] == 2 and "no traffic" in result["message"]
    table = await route_table(controller, "fn")
    assert table.traffic == {"1": 100} and "2" in table.versions
    await until(lambda: controller.fleet.count("fn", 2, "ready") == 1)  # no request needed
    [v1, v2] = (await admin.get("/system/functions/fn/versions")).json()
    assert (v1["traffic"], v2["traffic"]) == (100, 0)
    assert v2["warm_until"] is not None and v2["replicas_ready"] == 1


async def test_the_first_version_cannot_be_deployed_without_traffic(admin):
    data, digest = make_zip({"handler.py": b"x = 1\n"})
    await admin.put(f"/system/artifacts/{digest}", content=data)
    r = await admin.put("/system/functions/fn", params={"traffic": "none"}, json={"name": "fn", "artifact": digest})
    assert r.status_code == 400 and r.json()["error"]["code"] == "FirstVersionNeedsTraffic"
    assert (await admin.get("/system/functions")).json() == []


async def test_a_traffic_split_and_sticky_setting_reach_the_route_table(admin, controller):
    await three_versions(admin)
    r = await admin.put("/system/functions/fn/traffic", json={"traffic": {"1": 10, "3": 90}, "sticky": "header:X-Uid"})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["traffic"] == {"1": 10, "3": 90} and info["sticky"] == "header:x-uid"
    assert info["previous"] == {"3": 100}
    table = await route_table(controller, "fn")
    assert table.traffic == {"1": 10, "3": 90} and table.sticky == "header:x-uid"

    # Leaving sticky out keeps it; null turns it off; zero weights are dropped.
    r = await admin.put("/system/functions/fn/traffic", json={"traffic": {"1": 0, "2": 50, "3": 50}})
    assert r.json()["traffic"] == {"2": 50, "3": 50} and r.json()["sticky"] == "header:x-uid"
    r = await admin.put("/system/functions/fn/traffic", json={"traffic": {"3": 100}, "sticky": None})
    assert r.json()["sticky"] is None and (await route_table(controller, "fn")).sticky is None


async def configuration(admin) -> dict:
    """The function as described, but the autoscaler's decision: that follows the load, not the requests here."""
    described = (await admin.get("/system/functions/fn")).json()
    for version in described["versions"]:
        del version["replicas_desired"], version["panic"]
    return described


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"traffic": {"1": 60, "2": 60}}, "InvalidSpec", "weights must sum to 100, but 1=60 + 2=60 makes 120"),
        ({"traffic": {"1": 50, "2": 50.5}}, "InvalidSpec", "integer"),
        ({"traffic": {"1": 150, "2": -50}}, "InvalidSpec", "between 0 and 100"),
        ({"traffic": {}}, "InvalidSpec", "sum to 100"),
        ({"traffic": {"1": 50, "7": 50}}, "VersionNotFound", "version 7 of 'fn' does not exist (versions: 1, 2, 3)"),
        ({"traffic": {"1": 100}, "sticky": "query:uid"}, "InvalidSpec", "'header:<name>' or 'cookie:<name>'"),
        ({"traffic": {"1": 100}, "sticky": "header:bad name"}, "InvalidSpec", "header:<name>"),
    ],
)
async def test_bad_traffic_is_400_naming_the_problem_and_changes_nothing(admin, controller, body, code, words):
    await three_versions(admin)
    # the replicas the deploys started are ready, and their route tables (sent TABLE_AFTER_READY_S later) out
    await until(lambda: not any(controller.fleet.count("fn", v, "starting") for v in (1, 2, 3)))
    await asyncio.sleep(5 * TABLE_AFTER_READY_S)
    before = await configuration(admin)
    revision = (await route_table(controller, "fn")).revision
    r = await admin.put("/system/functions/fn/traffic", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code and words in r.json()["error"]["message"]
    assert await configuration(admin) == before
    assert (await route_table(controller, "fn")).revision == revision


async def test_aliases_point_at_versions_and_reach_the_route_table(admin, controller):
    await three_versions(admin)
    r = await admin.put("/system/functions/fn/aliases/live", json={"version": 2})
    assert r.status_code == 200 and r.json()["aliases"] == {"live": 2}
    assert (await route_table(controller, "fn")).aliases == {"live": "2"}
    assert (await admin.get("/system/functions/fn/versions/live")).json()["version"] == 2
    assert (await admin.get("/system/functions/fn/versions/$LATEST")).json()["version"] == 3

    for alias in ("123", "$LATEST", "Live", "-x"):
        r = await admin.put(f"/system/functions/fn/aliases/{alias}", json={"version": 1})
        assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidAlias", alias
    r = await admin.put("/system/functions/fn/aliases/beta", json={"version": 9})
    assert r.status_code == 400 and "version 9" in r.json()["error"]["message"]

    r = await admin.delete("/system/functions/fn/aliases/live")
    assert r.status_code == 200 and r.json()["aliases"] == {}
    assert (await route_table(controller, "fn")).aliases == {}
    gone = await admin.delete("/system/functions/fn/aliases/live")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "AliasNotFound"
    unknown = await admin.get("/system/functions/fn/versions/live")
    assert unknown.status_code == 404 and "'live'" in unknown.json()["error"]["message"]


async def test_rollback_returns_to_each_earlier_split_in_turn_then_says_there_is_none(admin):
    await put_version(admin, "fn", 1)
    first = await admin.post("/system/functions/fn/rollback")
    assert first.status_code == 409 and first.json()["error"]["code"] == "NothingToRollBack"
    await put_version(admin, "fn", 2)  # a deploy moves the traffic: version 1's split is remembered
    await admin.put("/system/functions/fn/traffic", json={"traffic": {"1": 50, "2": 50}})
    assert (await admin.post("/system/functions/fn/rollback")).json()["traffic"] == {"2": 100}
    assert (await admin.post("/system/functions/fn/rollback")).json()["traffic"] == {"1": 100}
    assert (await admin.post("/system/functions/fn/rollback")).status_code == 409


async def test_a_stepped_promote_advances_on_schedule_and_is_shown_in_describe(admin, controller):
    await three_versions(admin)
    await admin.put("/system/functions/fn/traffic", json={"traffic": {"3": 100}})
    now = datetime(2030, 1, 1, tzinfo=UTC)
    controller.releases.clock = lambda: now
    r = await admin.post("/system/functions/fn/promote", json={"version": 2, "step": 40, "interval": 30})
    assert r.json()["traffic"] == {"2": 40, "3": 60}
    assert r.json()["rollout"]["weight"] == 40 and r.json()["rollout"]["base"] == {"3": 100}

    await controller.releases.tick()  # not due yet
    assert (await admin.get("/system/functions/fn")).json()["traffic"] == {"2": 40, "3": 60}
    now += timedelta(seconds=30)
    await controller.releases.tick()
    assert (await admin.get("/system/functions/fn")).json()["traffic"] == {"2": 80, "3": 20}
    now += timedelta(seconds=30)
    await controller.releases.tick()
    info = (await admin.get("/system/functions/fn")).json()
    assert info["traffic"] == {"2": 100} and info["rollout"] is None
    assert "promoted to 100 %" in info["last_rollout"]
    assert (await route_table(controller, "fn")).traffic == {"2": 100}
    # Rollback after a finished rollout goes to the split before it began.
    assert (await admin.post("/system/functions/fn/rollback")).json()["traffic"] == {"3": 100}


async def test_a_failing_canary_is_rolled_back_by_the_controller(admin, controller):
    await three_versions(admin)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    controller.releases.clock = lambda: now
    spec = {"version": 2, "step": 10, "interval": 5, "max_error_rate": 0.05, "min_requests": 10}
    assert (await admin.post("/system/functions/fn/promote", json=spec)).json()["traffic"] == {"2": 10, "3": 90}
    report = LoadReport("gw", {"fn/2": VersionLoad(requests=40, errors=8), "fn/3": VersionLoad(requests=360)})
    controller.load.observe(report, 0.0)
    now += timedelta(seconds=5)
    await controller.releases.tick()
    info = (await admin.get("/system/functions/fn")).json()
    assert info["traffic"] == {"3": 100} and info["rollout"] is None
    assert "rolled back at 10 %" in info["last_rollout"] and "8 of 40" in info["last_rollout"]
    assert info["previous"] == {"2": 100}  # the canary's own step is undone, not remembered as a split


async def test_a_rollout_step_is_judged_only_once_the_load_reports_cover_it(admin, controller):
    await three_versions(admin)
    now, mono = datetime(2030, 1, 1, tzinfo=UTC), 1000.0
    controller.releases.clock, controller.releases.monotonic = (lambda: now), (lambda: mono)
    spec = {"version": 2, "step": 20, "interval": 5, "max_error_rate": 0.05, "min_requests": 10}
    await admin.post("/system/functions/fn/promote", json=spec)
    # The gateway's last report came before the step's end: the step's failures are not counted yet.
    controller.load.observe(LoadReport("gw", {"fn/2": VersionLoad(requests=3, errors=3)}), mono + 4.5)
    now, mono = now + timedelta(seconds=5.2), mono + 5.2
    await controller.releases.tick()
    info = (await admin.get("/system/functions/fn")).json()
    assert info["rollout"]["weight"] == 20 and info["traffic"] == {"2": 20, "3": 80}  # neither advanced nor judged
    # Its next report covers the step: every request of version 2 failed, so it goes back at the first step.
    controller.load.observe(LoadReport("gw", {"fn/2": VersionLoad(requests=30, errors=30)}), mono + 0.3)
    now, mono = now + timedelta(seconds=0.5), mono + 0.5
    await controller.releases.tick()
    info = (await admin.get("/system/functions/fn")).json()
    assert info["traffic"] == {"3": 100} and info["rollout"] is None
    assert "rolled back at 20 %" in info["last_rollout"] and "33 of 33" in info["last_rollout"]


async def test_a_rollout_waits_for_a_silent_gateway_only_until_it_counts_as_gone(admin, controller):
    await three_versions(admin)
    now, mono = datetime(2030, 1, 1, tzinfo=UTC), 1000.0
    controller.releases.clock, controller.releases.monotonic = (lambda: now), (lambda: mono)
    await admin.post(
        "/system/functions/fn/promote", json={"version": 2, "step": 20, "interval": 5, "max_error_rate": 0.5}
    )
    controller.load.observe(LoadReport("gw", {}), mono + 4.0)
    now, mono = now + timedelta(seconds=5 + 5.5), mono + 5 + 5.5  # gw said nothing since: it is gone
    await controller.releases.tick()
    assert (await admin.get("/system/functions/fn")).json()["traffic"] == {"2": 40, "3": 60}


async def test_traffic_during_a_rollout_cancels_it(admin, controller):
    await three_versions(admin)
    await admin.post("/system/functions/fn/promote", json={"version": 1, "step": 10, "interval": 60})
    r = await admin.put("/system/functions/fn/traffic", json={"traffic": {"2": 100}})
    info = r.json()
    assert info["rollout"] is None and "cancelled at 10 % by a traffic change" in info["last_rollout"]


async def test_a_version_that_loses_traffic_stays_warm_then_scales_to_zero(tmp_path, nats_url):
    settings = Settings(
        nats_url=nats_url, state_dir=tmp_path / "state", drain_delay=0.05, stable_window=0.2, keep_warm=1.5
    )
    backend = FakeBackend()
    controller = Controller(settings, backend_factory=lambda s, a: backend)
    await controller.start()
    try:
        transport = httpx.ASGITransport(app=create_app(controller, "t"))
        headers = {"Authorization": "Bearer t"}
        async with httpx.AsyncClient(transport=transport, base_url="http://c", headers=headers) as admin:
            await put_version(admin, "fn", 1, scale={"min": 2, "idle_timeout": 0.1})
            await until(lambda: controller.fleet.count("fn", 1, "ready") == 2)
            await put_version(admin, "fn", 2, scale={"idle_timeout": 0.1})
            # No request ever reaches version 1 again, yet it keeps both replicas for the keep-warm time.
            v1 = (await admin.get("/system/functions/fn/versions/1")).json()
            assert v1["warm_until"] is not None
            await asyncio.sleep(1.0)  # two reconcile passes would have stopped them without the hold
            assert controller.fleet.count("fn", 1, "ready") == 2
            await until(lambda: controller.fleet.count("fn", 1, "ready") == 0, timeout=5)
            assert controller.fleet.count("fn", 1, "ready") == 0
    finally:
        await controller.stop()


async def test_the_route_table_carries_the_triggers_of_the_versions_taking_traffic(admin, controller):
    await put_version(admin, "fn", 1, triggers=[{"nats": "orders.*"}])
    assert [(t.kind, t.subject) for t in (await route_table(controller, "fn")).triggers] == [("nats", "orders.*")]
    await put_version(admin, "fn", 2, traffic="none", triggers=[{"nats": "orders.*"}, {"nats": "audit.>"}])
    assert [t.subject for t in (await route_table(controller, "fn")).triggers] == ["orders.*"]  # v2 takes none
    await admin.put("/system/functions/fn/traffic", json={"traffic": {"1": 50, "2": 50}})
    assert [t.subject for t in (await route_table(controller, "fn")).triggers] == ["orders.*", "audit.>"]

    data, digest = make_zip({"handler.py": b"def handler(e, c):\n    return 3\n"})
    await admin.put(f"/system/artifacts/{digest}", content=data)
    bad = await admin.put(
        "/system/functions/fn", json={"name": "fn", "artifact": digest, "triggers": [{"nats": "orders..x"}]}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidSpec"
    assert "NATS subject 'orders..x' is invalid" in bad.json()["error"]["message"]


async def test_a_durable_trigger_needs_its_stream_and_reaches_the_route_table(admin, controller, nats_url):
    data, digest = make_zip({"handler.py": b"def handler(e, c):\n    return 1\n"})
    await admin.put(f"/system/artifacts/{digest}", content=data)
    spec = {"name": "fn", "artifact": digest, "triggers": [{"jetstream": {"stream": "ORDERS", "batch": 10}}]}
    missing = await admin.put("/system/functions/fn", json=spec)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "StreamNotFound"
    assert "stream 'ORDERS' does not exist" in missing.json()["error"]["message"]

    nc = await nats.connect(nats_url)
    await nc.jetstream().add_stream(name="ORDERS", subjects=["orders.>"])
    await nc.close()
    assert (await admin.put("/system/functions/fn", json=spec)).status_code == 200
    [trigger] = (await route_table(controller, "fn")).triggers
    assert (trigger.kind, trigger.stream, trigger.batch, trigger.max_deliver) == ("jetstream", "ORDERS", 10, 3)
