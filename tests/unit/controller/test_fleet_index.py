"""The fleet's replicas by function and version agree with a scan of all of them, whatever happened before."""

from __future__ import annotations

import random

from fx.models import FunctionSpec
from fx_controller.backends.base import ReplicaEvent, ReplicaSpec
from fx_controller.metrics import Metrics
from fx_controller.replicas.fleet import Fleet
from fx_controller.state.store import VersionRecord

DIGEST = "sha256:" + "0" * 64


class Backend:
    """Starts nothing; the test plays the replicas' events."""

    async def start_replica(self, replica: ReplicaSpec) -> None:
        return None

    async def stop_replica(self, replica_id: str, grace: float) -> None:
        return None


def version(function: str, number: int) -> VersionRecord:
    spec = FunctionSpec(name=function, handler="handler.handler", artifact=DIGEST)
    return VersionRecord(version=number, digest=DIGEST, created_at="2026-01-01T00:00:00Z", spec=spec)  # type: ignore[arg-type]


async def test_replicas_of_a_version_agree_with_a_scan_after_random_starts_events_and_stops() -> None:
    async def publish(function: str) -> None:
        return None

    fleet = Fleet(Backend(), Metrics(), publish, drain_delay=0)  # type: ignore[arg-type]
    rng = random.Random(20)
    keys = [(f, v) for f in ("a", "b", "c") for v in (1, 2)]
    for _ in range(400):
        op = rng.choice(["start", "start", "ready", "init_error", "exit", "stop"])
        if op == "start" or not fleet.replicas:
            function, number = rng.choice(keys)
            await fleet.start(function, version(function, number))
            continue
        replica_id = rng.choice(list(fleet.replicas))
        if op == "stop":
            await fleet.stop(replica_id)
        elif op == "ready":
            fleet.on_event(ReplicaEvent(replica_id, "ready", endpoint=f"unix:/{replica_id}.sock"))
        elif op == "init_error":
            fleet.on_event(ReplicaEvent(replica_id, "init_error", error_type="E", error_message="m"))
        else:
            fleet.on_event(ReplicaEvent(replica_id, "exit", exit_code=rng.choice([0, 1, None])))
        for function, number in keys:
            scan = [r for r in fleet.replicas.values() if r.function == function and r.version == number]
            assert fleet.of(function, number) == scan
            assert fleet.endpoints(function, number) == sorted(r.endpoint for r in scan if r.state == "ready")
            for state in ("starting", "ready", "draining"):
                assert fleet.count(function, number, state) == sum(r.state == state for r in scan)
        for function in "abcd":
            assert sorted(r.id for r in fleet.of(function)) == sorted(
                r.id for r in fleet.replicas.values() if r.function == function
            )
    assert {r.state for r in fleet.replicas.values()} == {"starting", "ready", "draining"}
    fleet.cancel_tasks()
