"""The local backend against a zygote: spawn -> ready -> SIGTERM -> exit, init errors, zygote death.

Most tests run against fake_zygote.py (same JSON-lines protocol, no runtime needed); the
ones about real processes dying with their zygote, and serving a request, run the real
fx_runtime.zygote.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest
from fx import interpreters
from fx.models import FunctionSpec
from fx_controller.backends.base import ReplicaEvent, ReplicaSpec
from fx_controller.backends.local import LocalBackend, template_key, templates_max
from fx_controller.state.artifacts import Artifacts

from tests.processes import alive
from tests.waiting import until

from .conftest import make_zip

FAKE_ZYGOTE = [sys.executable, str(Path(__file__).with_name("fake_zygote.py"))]


class Events:
    """A replica's events in a queue; standbys (a version's prepared spare, told as it comes) in a list of their own."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ReplicaEvent] = asyncio.Queue()
        self.standbys: list[ReplicaEvent] = []

    def __call__(self, event: ReplicaEvent) -> None:
        if event.kind == "standby":
            self.standbys.append(event)
        else:
            self.queue.put_nowait(event)

    async def next(self, timeout: float = 10.0) -> ReplicaEvent:
        return await asyncio.wait_for(self.queue.get(), timeout)


def replica(
    artifacts: Artifacts, digest: str, handler: str = "handler.handler", rid: str = "r1", snap_start: bool = False
) -> ReplicaSpec:
    spec = FunctionSpec(
        name="hello", handler=handler, artifact=digest, env={"GREETING": "hi"}, timeout=2, snap_start=snap_start
    )
    return ReplicaSpec(rid, "hello", 1, digest, spec)


@pytest.fixture
async def local(tmp_path: Path, request):
    data, digest = make_zip(
        {"handler.py": b"def handler(event, context):\n    return {'statusCode': 200, 'body': 'hi'}\n"}
    )
    artifacts = Artifacts(tmp_path / "artifacts", objects=None, max_unzipped_bytes=1 << 20)  # type: ignore[arg-type]
    artifacts.path(digest).write_bytes(data)
    backend = LocalBackend(tmp_path, artifacts, command=getattr(request, "param", FAKE_ZYGOTE))
    events = Events()
    await backend.open(events)
    yield backend, events, artifacts, digest
    await backend.close()


async def test_replica_starts_with_the_contract_env_and_stops_on_sigterm(local, tmp_path: Path):
    backend, events, artifacts, digest = local
    await backend.start_replica(replica(artifacts, digest))
    ready = await events.next()
    assert (ready.id, ready.kind) == ("r1", "ready")
    client = socket.socket(socket.AF_UNIX)
    client.connect(ready.endpoint.removeprefix("unix:"))
    client.close()
    pid = backend._pids["r1"]
    log = tmp_path / "logs" / "hello.log"
    await until(lambda: log.exists() and "ENV " in log.read_text())
    env = json.loads(log.read_text().split("ENV ", 1)[1].splitlines()[0])
    hexdigest = digest.split(":")[1]
    assert env["_HANDLER"] == "handler.handler" and env["AWS_LAMBDA_FUNCTION_NAME"] == "hello"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "1" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["FX_ARTIFACT"] == str(artifacts.path(digest)) and env["FX_ARTIFACT_SHA256"] == hexdigest
    assert env["FX_CODE_DIR"] == str(tmp_path / "code" / hexdigest)
    assert env["FX_LISTEN"] == f"unix:{backend.private_dir('hello')}/r1.sock"  # a directory only it may open
    assert env["FX_TIMEOUT_MS"] == "2000" and env["FX_HTTP_EVENT"] == "v2"
    assert not [name for name in env if name.startswith("FX_NATS")]  # no grant, no NATS
    assert "HOME" not in env and env["PATH"].endswith(":/usr/local/bin:/usr/bin:/bin")  # nothing of the controller's
    assert env["GREETING"] == "hi"
    assert os.readlink(f"/proc/{pid}/fd/1") == str(tmp_path / "logs" / "hello.log")

    await backend.stop_replica("r1", grace=5)
    exited = await events.next()
    assert (exited.id, exited.kind, exited.exit_code) == ("r1", "exit", 0)


async def test_init_error_is_reported_then_the_exit(local):
    backend, events, artifacts, digest = local
    await backend.start_replica(replica(artifacts, digest, handler="broken.handler"))
    failed = await events.next()
    assert (failed.kind, failed.error_type) == ("init_error", "Runtime.ImportModuleError")
    assert (await events.next()).kind == "exit"


async def test_a_replica_naming_a_socket_outside_its_functions_directory_is_stopped_never_ready(local):
    """A replica runs the function's code and names its own socket: one naming another function's (or a port) would
    have the gateway send this function's callers there. It fails its init instead, and is killed."""
    backend, events, artifacts, digest = local
    other = backend.private_dir("other")
    spec = replica(artifacts, digest)
    spec.spec.env["FAKE_ENDPOINT"] = f"unix:{other}/x.sock"
    await backend.start_replica(spec)
    failed = await events.next()
    assert (failed.kind, failed.error_type) == ("init_error", "Runtime.ListenError")
    assert "not a socket in its function's directory" in failed.error_message
    exited = await events.next()
    assert exited.kind == "exit" and exited.exit_code == -signal.SIGKILL


async def test_a_replica_ignoring_sigterm_is_killed_after_the_grace(local):
    backend, events, artifacts, digest = local
    await backend.start_replica(replica(artifacts, digest))
    await events.next()
    pid = backend._pids["r1"]
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    await backend.stop_replica("r1", grace=0.3)
    exited = await events.next()
    assert exited.kind == "exit" and exited.exit_code == -signal.SIGKILL


REAL_ZYGOTE = [sys.executable, "-m", "fx_runtime.zygote"]


@pytest.mark.parametrize("local", [REAL_ZYGOTE], indirect=True)
async def test_when_the_zygote_dies_its_replicas_are_gone_and_a_new_one_serves(local):
    backend, events, artifacts, digest = local
    await backend.start_replica(replica(artifacts, digest))
    await events.next()
    pid = backend._pids["r1"]
    backend._zygotes[sys.executable].process.kill()
    gone = await events.next()
    assert (gone.id, gone.kind) == ("r1", "exit")
    await until(lambda: not alive(pid))
    await backend.start_replica(replica(artifacts, digest, rid="r2"))
    assert (await events.next()).kind == "ready"


@pytest.fixture
def held_fetch(local, monkeypatch) -> tuple[asyncio.Event, asyncio.Event]:
    """(fetching, fetched): a replica's code fetch waits for `fetched`, holding the replica between its request
    and its spawn line."""
    _, _, artifacts, _ = local
    fetching, fetched = asyncio.Event(), asyncio.Event()
    ensure_local = artifacts.ensure_local

    async def held(wanted: str) -> Path:
        fetching.set()
        await fetched.wait()
        return await ensure_local(wanted)

    monkeypatch.setattr(artifacts, "ensure_local", held)
    return fetching, fetched


async def test_a_replica_asked_for_while_its_zygote_dies_starts_on_a_new_one(local, held_fetch):
    backend, events, artifacts, digest = local
    fetching, fetched = held_fetch
    old = backend._zygotes[sys.executable]
    start = asyncio.create_task(backend.start_replica(replica(artifacts, digest)))
    await fetching.wait()
    old.process.kill()
    await old.reader  # the zygote's death handled: the replicas it had are reported gone
    fetched.set()
    await start
    ready = await events.next(timeout=5)
    assert (ready.id, ready.kind) == ("r1", "ready")
    assert backend._zygotes[sys.executable] is not old


async def test_a_replica_stopped_while_its_code_is_fetched_never_starts_and_is_reported_gone(local, held_fetch):
    backend, events, artifacts, digest = local
    fetching, fetched = held_fetch
    start = asyncio.create_task(backend.start_replica(replica(artifacts, digest)))
    await fetching.wait()
    await backend.stop_replica("r1", grace=5)
    fetched.set()
    await start
    gone = await events.next(timeout=5)
    assert (gone.id, gone.kind) == ("r1", "exit")
    assert not backend._live and not backend._pids  # no spawn line was sent


async def test_a_replica_sent_to_a_zygote_that_dies_before_answering_is_reported_gone(local):
    backend, events, artifacts, digest = local
    zygote = backend._zygotes[sys.executable].process
    os.kill(zygote.pid, signal.SIGSTOP)  # the spawn line waits in its pipe, unread
    await backend.start_replica(replica(artifacts, digest))
    zygote.kill()
    gone = await events.next(timeout=5)
    assert (gone.id, gone.kind) == ("r1", "exit")
    assert "r1" not in backend._live


async def test_a_runtime_without_an_interpreter_fails_its_init_and_never_runs_on_another(local):
    backend, events, _, digest = local
    spec = FunctionSpec(name="hello", runtime="python3.10", artifact=digest)
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, digest, spec))
    failed = await events.next()
    assert failed.kind == "init_error" and failed.error_type == "Runtime.InterpreterNotFound"
    assert "no python3.10 interpreter on this host" in failed.error_message
    assert "fx up --interpreter python3.10=" in failed.error_message
    assert (await events.next()).kind == "exit"
    assert list(backend._zygotes) == [sys.executable]  # nothing started for it


@pytest.mark.parametrize("local", [REAL_ZYGOTE], indirect=True)
async def test_the_real_zygote_serves_a_request_and_stops(local):
    backend, events, artifacts, digest = local
    await backend.start_replica(replica(artifacts, digest))
    ready = await events.next()
    assert ready.kind == "ready", ready
    assert ready.endpoint.startswith("unix:")  # in its function's private directory: no other process gets in
    reader, writer = await asyncio.open_unix_connection(ready.endpoint.removeprefix("unix:"))
    writer.write(b"GET /_fx/http/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    await backend.stop_replica("r1", grace=5)
    exited = await events.next()
    assert exited.kind == "exit"


async def test_another_python_gets_its_own_zygote_when_its_first_replica_starts(tmp_path: Path):
    python312 = interpreters.discover(wanted=["python3.12"]).get("python3.12")
    assert python312, "no python3.12 on PATH nor in ~/.pyenv/versions: the test image ships one"
    data, digest = make_zip({"handler.py": b"def handler(event, context):\n    return 1\n"})
    artifacts = Artifacts(tmp_path / "artifacts", objects=None, max_unzipped_bytes=1 << 20)  # type: ignore[arg-type]
    artifacts.path(digest).write_bytes(data)
    found = {interpreters.own_runtime(): sys.executable, "python3.12": python312}
    backend, events = LocalBackend(tmp_path, artifacts, interpreters=found), Events()
    await backend.open(events)
    try:
        assert list(backend._zygotes) == [sys.executable]  # only the controller's own starts with it
        spec = FunctionSpec(name="hello", runtime="python3.12", artifact=digest)
        await backend.start_replica(ReplicaSpec("r1", "hello", 1, digest, spec))
        ready = await events.next(timeout=120)  # the first time, pip installs the runtime's wheels for 3.12
        assert ready.kind == "ready", ready
        assert set(backend._zygotes) == {sys.executable, python312}
        assert os.readlink(f"/proc/{backend._pids['r1']}/exe") == os.path.realpath(python312)
    finally:
        await backend.close()


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("PPid:")))


async def answer(endpoint: str) -> bytes:
    reader, writer = await asyncio.open_unix_connection(endpoint.removeprefix("unix:"))
    writer.write(b"GET /_fx/http/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
    body = await reader.readexactly(length)
    writer.close()
    return body


@pytest.mark.parametrize("local", [REAL_ZYGOTE], indirect=True)
async def test_a_version_cold_starts_from_its_own_template_and_a_new_version_never_from_the_old_one(local, caplog):
    backend, events, artifacts, digest = local
    caplog.set_level("INFO", "fx_controller.local")
    zygote = backend._zygotes[sys.executable].pid
    await backend.start_replica(replica(artifacts, digest, rid="r1", snap_start=True))
    first = await events.next()
    assert first.kind == "ready" and parent_of(backend._pids["r1"]) == zygote  # the first: started anew
    await until(lambda: "template hello@1:" in caplog.text and " ready: " in caplog.text, 10)

    await backend.start_replica(replica(artifacts, digest, rid="r2", snap_start=True))
    second = await events.next()
    assert second.kind == "ready" and parent_of(backend._pids["r2"]) != zygote  # forked from v1's template
    assert await answer(second.endpoint) == b"hi"

    data, new_digest = make_zip(
        {"handler.py": b"def handler(event, context):\n    return {'statusCode': 200, 'body': 'v2'}\n"}
    )
    artifacts.path(new_digest).write_bytes(data)
    spec = FunctionSpec(name="hello", handler="handler.handler", artifact=new_digest, timeout=2, snap_start=True)
    await backend.start_replica(ReplicaSpec("r3", "hello", 2, new_digest, spec))
    third = await events.next()
    assert third.kind == "ready" and parent_of(backend._pids["r3"]) == zygote
    assert await answer(third.endpoint) == b"v2"


@pytest.mark.parametrize("local", [REAL_ZYGOTE], indirect=True)
async def test_a_deleted_versions_template_goes_at_once_and_its_memory_is_reported_until_then(local, caplog):
    backend, events, artifacts, digest = local
    caplog.set_level("INFO", "fx_controller.local")
    zygote = backend._zygotes[sys.executable].pid
    await backend.start_replica(replica(artifacts, digest, rid="r1", snap_start=True))
    assert (await events.next()).kind == "ready"
    await until(lambda: ("hello", 1) in backend.template_memory(), 10)
    assert backend.template_memory()[("hello", 1)] > 1 << 20  # its interpreter's pages, shared or not
    template = int(re.search(r"template hello@1:\S+ ready: pid (\d+)", caplog.text).group(1))

    backend.drop_templates("hello", 2)  # another version's: nothing goes
    assert ("hello", 1) in backend.template_memory()
    backend.drop_templates("hello", 1)
    assert backend.template_memory() == {}
    await until(lambda: not Path(f"/proc/{template}").exists(), 10)  # it had no replica to wait for
    await backend.start_replica(replica(artifacts, digest, rid="r2", snap_start=True))
    assert (await events.next()).kind == "ready" and parent_of(backend._pids["r2"]) == zygote


@pytest.mark.parametrize("local", [REAL_ZYGOTE], indirect=True)
async def test_a_function_without_snap_start_gets_no_template(local, caplog):
    # Its replicas keep namespaces of their own (docs/security.md): each a fork of the zygote, none of a template.
    backend, events, artifacts, digest = local
    caplog.set_level("INFO", "fx_controller.local")
    zygote = backend._zygotes[sys.executable].pid
    for rid in ("r1", "r2"):
        await backend.start_replica(replica(artifacts, digest, rid=rid))
        assert (await events.next()).kind == "ready" and parent_of(backend._pids[rid]) == zygote
    assert "template" not in caplog.text


def test_template_keys_set_functions_versions_and_environments_apart(tmp_path: Path):
    spec = FunctionSpec(name="a", handler="handler.handler", artifact="sha256:" + "0" * 64)
    line = {"log": "/logs/a.log", "sandbox": {"uid": 1, "env_file": "/run/x/.env/a-1.json"}}
    env = {"FX_LISTEN": "unix:/run/a/1.sock", "SECRET": "s"}
    key = template_key(ReplicaSpec("a-1", "a", 1, spec.artifact, spec), env, line)
    other_replica = {**line, "sandbox": {"uid": 1, "env_file": "/run/x/.env/a-2.json"}}
    assert (
        template_key(ReplicaSpec("a-2", "a", 1, spec.artifact, spec), {**env, "FX_LISTEN": "x"}, other_replica) == key
    )
    assert template_key(ReplicaSpec("a-3", "a", 2, spec.artifact, spec), env, line) != key
    assert template_key(ReplicaSpec("b-1", "b", 1, spec.artifact, spec), env, line) != key
    assert template_key(ReplicaSpec("a-4", "a", 1, spec.artifact, spec), {**env, "SECRET": "t"}, line) != key
    assert template_key(ReplicaSpec("a-5", "a", 1, spec.artifact, spec), env, {**line, "sandbox": {"uid": 2}}) != key


def test_the_templates_knob_has_a_default_and_refuses_what_is_not_a_count():
    assert templates_max({}) == 32 and templates_max({"FX_TEMPLATES_MAX": "0"}) == 0
    with pytest.raises(ValueError, match="FX_TEMPLATES_MAX must be a whole number"):
        templates_max({"FX_TEMPLATES_MAX": "many"})


@pytest.mark.parametrize("local", [REAL_ZYGOTE], indirect=True)
async def test_a_caller_at_a_versions_standby_makes_that_spare_a_replica_reported_claimed(local):
    """A template's prepared spare is told as its version's standby (a socket in the function's directory); a
    caller connecting to it is served, and the spare is then a replica the backend runs as any (stopped, its exit
    told), reported "claimed" with an id of the controller's kind."""
    backend, events, artifacts, digest = local
    await backend.start_replica(replica(artifacts, digest, rid="r1", snap_start=True))
    assert (await events.next()).kind == "ready"
    await until(lambda: events.standbys, 10, "the template's spare told as the standby")
    standby = events.standbys[-1]
    assert (standby.function, standby.version) == ("hello", 1)
    assert Path(standby.endpoint.removeprefix("unix:")).parent == backend.private_dir("hello")

    assert await answer(standby.endpoint) == b"hi"
    claimed = await events.next()
    assert (claimed.kind, claimed.endpoint, claimed.function, claimed.version) == (
        "claimed",
        standby.endpoint,
        "hello",
        1,
    )
    assert claimed.id.startswith("hello-1-")
    assert claimed.init_ms == 0.0  # prepared before the caller came: none of its start is on the cold start's path
    await backend.stop_replica(claimed.id, grace=2)
    gone = await events.next()
    assert (gone.kind, gone.id) == ("exit", claimed.id)
