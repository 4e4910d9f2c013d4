"""fx.activate: one start for many waiting requests, clear failures, and a short backoff after one."""

from __future__ import annotations

import asyncio

from fx.protocol import SUBJECT_ACTIVATE, ActivationReply, ActivationRequest

from .conftest import until


async def test_concurrent_activations_of_a_version_share_one_replica_start(controller, deployed, backend):
    await deployed("hello")
    replies = await asyncio.gather(*(controller.activator.activate(ActivationRequest("hello", "1")) for _ in range(20)))
    assert len(backend.started) == 1
    assert all(r.ok for r in replies)
    assert {tuple(r.endpoints) for r in replies} == {("127.0.0.1:20001",)}
    # A ready replica answers at once, without another start.
    assert (await controller.activator.activate(ActivationRequest("hello", "1"))).endpoints == ["127.0.0.1:20001"]
    assert len(backend.started) == 1


async def test_a_failed_start_fails_every_waiter_then_backs_off_for_2_s(controller, deployed, backend):
    await deployed("flaky", scale={"idle_timeout": 0.1})
    await until(lambda: not controller.fleet.of("flaky"))  # the gate's replica, idle, is gone
    backend.outcome = "init_error"  # e.g. a secret it names was removed: a Ready version can fail a start
    replies = await asyncio.gather(*(controller.activator.activate(ActivationRequest("flaky", "1")) for _ in range(5)))
    assert len(backend.started) == 2
    for r in replies:
        assert (r.ok, r.status, r.error, r.cause) == (False, 502, "Runtime.ImportModuleError", "nope")

    again = await controller.activator.activate(ActivationRequest("flaky", "1"))
    assert again.error == "Runtime.ImportModuleError"
    assert len(backend.started) == 2  # answered from the backoff, nothing forked

    await until(lambda: not controller.fleet.of("flaky"))  # the failed replica exits
    info = controller.describe("flaky")
    assert info.status == "Failed: Runtime.ImportModuleError: nope"
    metrics = controller.metrics.render().decode()
    assert 'fx_controller_activations_total{function="flaky",result="failed"} 5.0' in metrics
    assert 'fx_controller_activations_total{function="flaky",result="backoff"} 1.0' in metrics
    assert 'fx_controller_replica_exits_total{function="flaky",reason="init_error"} 1.0' in metrics


async def test_a_version_that_failed_its_init_is_never_started_again(controller, deployed, backend):
    backend.outcome = "init_error"
    result = await deployed("broken")
    assert result["state"] == "Failed"
    assert controller.describe("broken").status == "Failed: Runtime.ImportModuleError: nope"
    replies = await asyncio.gather(*(controller.activator.activate(ActivationRequest("broken", "1")) for _ in range(5)))
    for r in replies:
        assert (r.ok, r.status, r.error) == (False, 502, "Runtime.ImportModuleError")
        assert r.cause == "version 1 failed to initialise: nope"
    await asyncio.sleep(1.2)  # two reconcile passes: nothing restarts it either
    assert len(backend.started) == 1  # the gate's one try


async def test_unknown_function_or_version_is_a_404_reply(controller, deployed):
    await deployed("hello")
    missing = await controller.activator.activate(ActivationRequest("ghost", "1"))
    assert (missing.ok, missing.status, missing.error) == (False, 404, "FunctionNotFound")
    assert "ghost" in missing.cause
    no_version = await controller.activator.activate(ActivationRequest("hello", "7"))
    assert (no_version.status, no_version.error) == (404, "VersionNotFound")


async def test_activation_over_nats_replies_when_ready_and_the_route_table_follows(controller, deployed):
    await deployed("hello")
    msg = await controller._nc.request(SUBJECT_ACTIVATE, ActivationRequest("hello", "1", queued=3).to_json(), timeout=5)
    reply = ActivationReply.from_json(msg.data)
    assert reply.ok and reply.endpoints == ["127.0.0.1:20001"]
    kv = await controller._nc.jetstream().key_value("fx_routes")

    async def endpoints() -> list[str]:
        from fx.protocol import RouteTable

        return RouteTable.from_json((await kv.get("hello")).value).versions["1"].endpoints

    for _ in range(50):
        if await endpoints() == ["127.0.0.1:20001"]:
            break
        await asyncio.sleep(0.02)
    assert await endpoints() == ["127.0.0.1:20001"]
    await until(lambda: controller.describe("hello").versions[0].replicas_ready == 1)
