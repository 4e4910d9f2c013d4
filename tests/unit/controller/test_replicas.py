"""Replica lifecycle with a scripted backend: draining order, crash replacement, scale to zero."""

from __future__ import annotations

import asyncio

from fx.protocol import KV_ROUTES, LoadReport, RouteTable, VersionLoad
from fx_controller.backends.base import ReplicaEvent

from tests.unit.controller.conftest import route_table
from tests.waiting import until

PHASES = ("queueing", "spawn", "init")  # fx_controller_cold_start_phase_seconds's


async def published_endpoints(controller, name: str, version: str = "1") -> list[str]:
    kv = await controller._nc.jetstream().key_value(KV_ROUTES)
    return RouteTable.from_json((await kv.get(name)).value).versions[version].endpoints


async def test_min_replicas_start_after_deploy_and_a_crashed_one_is_replaced(controller, deployed, backend):
    await deployed("phoenix", scale={"min": 1})
    await until(lambda: controller.fleet.count("phoenix", 1, "ready") == 1)
    first = controller.fleet.of("phoenix")[0]
    assert await published_endpoints(controller, "phoenix") == [first.endpoint]

    backend.outcome = "hang"  # the replacement gets ready when the test says so
    backend.crash(first.id)
    await until(lambda: len(backend.started) == 2, 5, "a replacement asked for")

    async def unpublished() -> bool:
        return first.endpoint not in await published_endpoints(controller, "phoenix")

    # out of routing at once: with no replacement ready, only the crash can have taken it out
    await until(unpublished, 5, "the crashed replica out of routing before its replacement is ready")
    backend.on_event(ReplicaEvent(backend.started[1].id, "ready", endpoint="127.0.0.1:29999"))
    await until(lambda: controller.fleet.count("phoenix", 1, "ready") == 1, timeout=5)

    async def replaced() -> bool:
        return await published_endpoints(controller, "phoenix") == ["127.0.0.1:29999"]

    await until(replaced, 5, "the replacement published")
    assert len(backend.started) == 2
    metrics = controller.metrics.render().decode()
    assert 'fx_controller_replica_exits_total{function="phoenix",reason="crashed"} 1.0' in metrics


async def test_a_replica_is_unpublished_before_it_is_stopped(controller, deployed, backend):
    await deployed("hello", scale={"min": 1})
    await until(lambda: controller.fleet.count("hello", 1, "ready") == 1)
    replica = controller.fleet.of("hello")[0]
    seen_at_stop: list[list[str]] = []
    stop = backend.stop_replica

    async def recording_stop(replica_id: str, grace: float) -> None:
        seen_at_stop.append(await published_endpoints(controller, "hello"))
        assert grace == 3 + 5  # the function timeout plus 5 s
        await stop(replica_id, grace)

    backend.stop_replica = recording_stop
    await controller.fleet.stop(replica.id)
    assert seen_at_stop == [[]]


async def test_an_idle_version_scales_to_zero_and_load_scales_it_up(controller, deployed, backend):
    await deployed("sleepy", scale={"idle_timeout": 0.5, "max": 3, "concurrency": 1})
    controller.load.observe(LoadReport("gw", {"sleepy/1": VersionLoad(in_flight=3)}), asyncio.get_running_loop().time())
    await until(lambda: controller.fleet.count("sleepy", 1, "ready") == 3)

    # The gateway reports nothing in flight from now on: after idle_timeout, all replicas go.
    async def quiet() -> None:
        while True:
            controller.load.observe(LoadReport("gw", {}), asyncio.get_running_loop().time())
            await asyncio.sleep(0.1)

    reporter = asyncio.create_task(quiet())
    try:
        await until(lambda: not controller.fleet.of("sleepy"), timeout=5)
    finally:
        reporter.cancel()
    assert len(backend.stopped) == 3
    assert controller.describe("sleepy").status == "Scaled to zero"


async def test_a_standby_is_published_and_a_claimed_one_is_a_ready_replica_the_fleet_did_not_ask_for(
    controller, deployed, backend
):
    """The local backend tells a version's prepared spare (its standby): the route table names it. A caller that
    connects to it makes it a replica: ready, published as one, the standby gone from the table, nothing started
    for it. A claim of a version that does not exist is stopped."""
    await deployed("hello")
    started = len(backend.started)
    socket = "unix:/run/fx/hello/s-1.sock"
    backend.on_event(ReplicaEvent("", "standby", endpoint=socket, function="hello", version=1))

    async def standby() -> str | None:
        table = await route_table(controller, "hello")
        return table.versions["1"].standby if table else None

    async def told() -> bool:
        return await standby() == socket

    await until(told, 5, "the standby published")
    claim = ReplicaEvent("hello-1-c1", "claimed", endpoint=socket, function="hello", version=1, init_ms=0.0)
    backend.on_event(claim)
    claimed = controller.fleet.replicas["hello-1-c1"]
    assert (claimed.state, claimed.endpoint) == ("ready", socket)
    # a cold start in the phases too: nothing queued for the controller, nothing forked or run on its path
    sample = controller.metrics.registry.get_sample_value
    labels = {"function": "hello", "version": "1"}
    phases = {p: sample("fx_controller_cold_start_phase_seconds_sum", {**labels, "phase": p}) for p in PHASES}
    assert phases["queueing"] == phases["init"] == 0.0 and phases["spawn"] < 0.01  # spawn: the controller's own

    async def published() -> bool:
        return socket in await published_endpoints(controller, "hello") and await standby() == ""

    await until(published, 5, "the claimed replica published, no standby left")
    assert len(backend.started) == started

    backend.on_event(ReplicaEvent("hello-9-c2", "claimed", endpoint=socket, function="hello", version=9))
    await until(lambda: "hello-9-c2" in backend.stopped, 5, "the claim of no version stopped")


async def test_a_claim_past_the_versions_max_is_stopped(controller, deployed, backend):
    """A function's own code may connect to its spare's socket (it is in its directory): each claim would be one
    more replica, so one past scale.max is stopped at once, never published."""
    await deployed("solo", scale={"max": 2})
    await until(lambda: controller.fleet.count("solo", 1, "ready") == 1, 5, "the deploy's replica")
    socket = "unix:/run/fx/solo/s-1.sock"
    backend.on_event(ReplicaEvent("solo-1-c1", "claimed", endpoint=socket, function="solo", version=1))
    assert controller.fleet.replicas["solo-1-c1"].state == "ready"
    backend.on_event(
        ReplicaEvent("solo-1-c2", "claimed", endpoint="unix:/run/fx/solo/s-2.sock", function="solo", version=1)
    )
    await until(lambda: "solo-1-c2" in backend.stopped, 5, "the claim past max 2 stopped")
    assert socket in await published_endpoints(controller, "solo")
    assert controller.fleet.count("solo", 1, "ready") == 2
