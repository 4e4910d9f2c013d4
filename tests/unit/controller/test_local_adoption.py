"""A controller that dies leaves its zygotes and their replicas (fx up's lifeline holds them); the next one
adopts those its records vouch for, kills the others, and the lifeline's end ends them all."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fx.models import FunctionSpec
from fx_controller.backends.base import ReplicaSpec, Running, token_digest
from fx_controller.backends.local import LocalBackend
from fx_controller.backends.local_adoption import RECORDS_FILE, control_dir
from fx_controller.metrics import Metrics
from fx_controller.replicas.fleet import Fleet
from fx_controller.replicas.tokens import ReplicaTokens
from fx_controller.state.artifacts import Artifacts
from fx_controller.state.store import VersionRecord

from tests.processes import alive
from tests.waiting import until

from .conftest import make_zip
from .test_local_backend import Events

REAL_ZYGOTE = [sys.executable, "-m", "fx_runtime.zygote"]


def spec(artifacts_digest: str, rid: str) -> ReplicaSpec:
    function = FunctionSpec(name="hello", handler="handler.handler", artifact=artifacts_digest, timeout=2)
    return ReplicaSpec(rid, "hello", 1, artifacts_digest, function, token="the-token")


async def test_a_new_backend_adopts_what_its_records_vouch_for_and_the_lifeline_ends_the_rest(tmp_path: Path):
    data, digest = make_zip({"handler.py": b"def handler(event, context):\n    return 'hi'\n"})
    artifacts = Artifacts(tmp_path / "artifacts", objects=None, max_unzipped_bytes=1 << 20)  # type: ignore[arg-type]
    artifacts.path(digest).write_bytes(data)
    lifeline, fx_up = os.pipe()
    first, events = LocalBackend(tmp_path, artifacts, command=REAL_ZYGOTE, lifeline=lifeline), Events()
    await first.open(events)
    for rid in ("hello-1-a", "hello-1-b"):
        await first.start_replica(spec(digest, rid))
        assert (await events.next()).kind == "ready"
    pids, zygote = dict(first._pids), first._zygotes[sys.executable].pid
    # The controller dies: its end of the zygote's pipes closes, and nothing is stopped.
    for z in first._zygotes.values():
        assert z.reader is not None
        z.reader.cancel()
        z.commands.close()
    await first._nats.close()
    records = control_dir(first._run_dir) / RECORDS_FILE
    forged = json.loads(records.read_text())
    forged["hello-1-b"]["start_time"] += 1  # as if its pid had been reused by another process
    records.write_text(json.dumps(forged))

    second, heard = LocalBackend(tmp_path, artifacts, command=REAL_ZYGOTE, lifeline=lifeline), Events()
    await second.open(heard)
    [found] = second.running()
    assert (found.id, found.function, found.version) == ("hello-1-a", "hello", 1)
    assert found.token_sha256 == token_digest("the-token")
    assert second._zygotes[sys.executable].pid == zygote  # adopted, not started anew
    assert alive(pids["hello-1-a"])
    await until(lambda: not alive(pids["hello-1-b"]), what="the replica the records do not vouch for killed")

    await second.stop_replica("hello-1-a", grace=5)  # commands and events go through the control socket
    exited = await heard.next()
    assert (exited.id, exited.kind, exited.exit_code) == ("hello-1-a", "exit", 0)
    await second.start_replica(spec(digest, "hello-1-c"))
    assert (await heard.next()).kind == "ready"
    os.close(fx_up)  # fx up is gone, however: the zygote stops its replicas and exits
    await until(lambda: not alive(zygote) and not alive(second._pids.get("hello-1-c", 0)), timeout=15)
    os.close(lifeline)
    second._zygotes.clear()
    await second.close()


class Adoptable:
    """A backend that found three replicas alive: one of a known version with its token, one with another
    token, one of a version that is gone."""

    runtimes: dict[str, str] = {}

    def __init__(self, token: str) -> None:
        self.found = [
            Running("hello-1-a", "hello", 1, "unix:/a.sock", token_digest(token)),
            Running("hello-1-b", "hello", 1, "unix:/b.sock", token_digest("another")),
            Running("hello-9-c", "hello", 9, "unix:/c.sock", token_digest(token)),
        ]
        self.adopted: list[str] = []
        self.stopped: list[str] = []

    def running(self) -> list[Running]:
        return self.found

    def adopt(self, replica: ReplicaSpec) -> None:
        self.adopted.append(replica.id)

    async def stop_replica(self, replica_id: str, grace: float) -> None:
        self.stopped.append(replica_id)


async def test_the_fleet_adopts_only_a_live_version_s_replica_with_its_token() -> None:
    tokens = ReplicaTokens(b"k" * 32)
    backend = Adoptable(tokens.token("hello", 1))

    async def publish(name: str) -> None:
        return None

    fleet = Fleet(backend, Metrics(), publish, tokens=tokens)  # type: ignore[arg-type]
    version = VersionRecord(
        version=1,
        digest="sha256:" + "0" * 64,
        created_at="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
        spec=FunctionSpec(name="hello", handler="handler.handler", artifact="sha256:" + "0" * 64),
    )
    await fleet.adopt(lambda function, number: version if (function, number) == ("hello", 1) else None)
    assert backend.adopted == ["hello-1-a"] and backend.stopped == ["hello-1-b", "hello-9-c"]
    assert fleet.endpoints("hello", 1) == ["unix:/a.sock"]
    assert fleet.replicas["hello-1-b"].state == "draining"  # forgotten when its exit is heard
