"""A controller that dies leaves its zygotes and their replicas (fx up's lifeline holds them); the next one
adopts those its records vouch for, kills the others, and the lifeline's end ends them all."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fx.models import FunctionSpec
from fx_controller.backends import local_adoption
from fx_controller.backends.base import ReplicaSpec, Running, token_digest
from fx_controller.backends.local import LocalBackend
from fx_controller.backends.local_adoption import RECORDS_FILE, Records, control_dir
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


def spec(artifacts_digest: str, rid: str, snap_start: bool = False) -> ReplicaSpec:
    function = FunctionSpec(
        name="hello", handler="handler.handler", artifact=artifacts_digest, timeout=2, snap_start=snap_start
    )
    return ReplicaSpec(rid, "hello", 1, artifacts_digest, function, token="the-token")


def hello_code(tmp_path: Path) -> tuple[Artifacts, str]:
    data, digest = make_zip({"handler.py": b"def handler(event, context):\n    return 'hi'\n"})
    artifacts = Artifacts(tmp_path / "artifacts", objects=None, max_unzipped_bytes=1 << 20)  # type: ignore[arg-type]
    artifacts.path(digest).write_bytes(data)
    return artifacts, digest


async def controller_dies(backend: LocalBackend) -> None:
    """Its end of the zygotes' pipes closes, and nothing is stopped."""
    for z in backend._zygotes.values():
        assert z.reader is not None
        z.reader.cancel()
        z.commands.close()
    await backend._nats.close()


async def test_a_new_backend_adopts_what_its_records_vouch_for_and_the_lifeline_ends_the_rest(tmp_path: Path):
    artifacts, digest = hello_code(tmp_path)
    lifeline, fx_up = os.pipe()
    first, events = LocalBackend(tmp_path, artifacts, command=REAL_ZYGOTE, lifeline=lifeline), Events()
    await first.open(events)
    for rid in ("hello-1-a", "hello-1-b"):
        await first.start_replica(spec(digest, rid))
        assert (await events.next()).kind == "ready"
    pids, zygote = dict(first._pids), first._zygotes[sys.executable].pid
    await controller_dies(first)
    records = control_dir(first._run_dir) / RECORDS_FILE
    forged = next(json.loads(line) for line in records.read_text().splitlines() if '"hello-1-b"' in line)
    forged["start_time"] += 1  # as if its pid had been reused by another process
    with records.open("a") as log:  # a later line says the last word about a replica
        log.write(json.dumps(forged) + "\n")

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


async def test_a_new_backend_is_told_the_standby_a_spare_prepared_for_the_last_one(tmp_path: Path):
    """A snap_start version's standby survives a controller restart: the next controller routes its cold starts
    there at once, not from the spare after the next one."""
    artifacts, digest = hello_code(tmp_path)
    lifeline, fx_up = os.pipe()
    first, events = LocalBackend(tmp_path, artifacts, command=REAL_ZYGOTE, lifeline=lifeline), Events()
    await first.open(events)
    await first.start_replica(spec(digest, "hello-1-a", snap_start=True))
    assert (await events.next()).kind == "ready"
    await until(lambda: events.standbys, 10, "the template's spare told as the standby")
    told = events.standbys[-1].endpoint
    await controller_dies(first)

    second, heard = LocalBackend(tmp_path, artifacts, command=REAL_ZYGOTE, lifeline=lifeline), Events()
    await second.open(heard)
    [standby] = heard.standbys
    assert (standby.function, standby.version, standby.endpoint) == ("hello", 1, told)
    os.close(fx_up)
    zygote = second._zygotes[sys.executable].pid
    await until(lambda: not alive(zygote), timeout=15)
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


def test_a_controller_killed_at_any_point_leaves_every_record_it_wrote(tmp_path: Path, monkeypatch) -> None:
    """The records' log, as a kill would leave it after each write (or halfway through one): the next controller
    reads exactly the replicas recorded by then, through appends, removals and compactions."""
    monkeypatch.setattr(local_adoption, "COMPACT_SLACK", 2)  # compactions every few changes
    path = control_dir(tmp_path) / RECORDS_FILE
    me = os.getpid()  # a live pid, so add() records it
    live: dict[str, dict[str, str]] = {"before": {}, "after": {}}  # replica -> endpoint, before and after a change
    cases: list[tuple[bytes, dict[str, str]]] = []  # (the log a kill would leave, the replicas it must give)
    real_write, real_replace = os.write, os.replace

    def write(fd: int, data: bytes) -> int:
        before = path.read_bytes()
        written = real_write(fd, data)
        cases.append((before + data[: len(data) // 2], live["before"]))  # killed halfway through the write
        cases.append((path.read_bytes(), live["after"]))
        return written

    def replace(src: Path, dst: Path) -> None:
        cases.append((path.read_bytes() if path.exists() else b"", live["before"]))  # the new log not in place
        real_replace(src, dst)
        cases.append((path.read_bytes(), live["after"]))

    monkeypatch.setattr(local_adoption.os, "write", write)
    monkeypatch.setattr(local_adoption.os, "replace", replace)
    records = Records(tmp_path)
    assert records.previous() == {}
    records.compact()
    for step in range(40):
        replica_id = f"f-1-{step % 7}"
        live["before"] = live["after"]
        after = live["after"] = dict(live["before"])
        if replica_id in after:
            del after[replica_id]
            records.remove(replica_id)
        else:
            after[replica_id] = f"unix:/{step}.sock"
            records.add(replica_id, me, f"unix:/{step}.sock", "f", 1, "token")
    records.close()
    monkeypatch.undo()
    assert sum(b'"gone"' in log for log, _ in cases) > 10 and sum(log == b"" for log, _ in cases) < 3
    for log, expected in cases:
        path.write_bytes(log)
        found = Records(tmp_path).previous()
        assert {replica_id: r.endpoint for replica_id, r in found.items()} == expected
        assert all(r.pid == me and r.token_sha256 == token_digest("token") for r in found.values())


def test_a_controller_killed_before_it_settled_what_it_adopted_leaves_the_last_one_s_records(tmp_path: Path) -> None:
    first = Records(tmp_path)
    first.previous()
    first.add("f-1-a", os.getpid(), "unix:/a.sock", "f", 1, "token")
    first.add("f-1-b", os.getpid(), "unix:/b.sock", "f", 1, "token")
    second = Records(tmp_path)
    found = second.previous()
    second.keep("f-1-a", found["f-1-a"])  # killed here, before its compact()
    assert Records(tmp_path).previous() == found
    second.compact()
    assert list(Records(tmp_path).previous()) == ["f-1-a"]
