"""A warm pool member (python -m fx_runtime.pool) becomes a replica in place: a doorbell (POST /_fx/specialize)
makes it fetch its assignment from the controller (the real artifact server, on loopback), and it answers when
the handler is loaded and listening; a bad handler is an init error. A doorbell the controller did not ring
(no assignment for the pod) changes nothing, and a member that became a replica never takes work again."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fx_controller.backends.kubernetes.artifact_server import ArtifactServer
from fx_controller.backends.kubernetes.pod_access import PodAccess

from tests.loopback import free_port
from tests.unit.controller.fake_artifacts import FakeArtifacts

POD_IP = "127.0.0.1"  # the member's address as the controller sees it


def zipped(source: str, tmp_path: Path) -> tuple[Path, str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", source)
    path = tmp_path / "code.zip"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.fixture
async def controller(tmp_path: Path):
    access = PodAccess(unknown_wait=0.1)
    port = free_port()
    server = ArtifactServer(FakeArtifacts(tmp_path, {}), f"127.0.0.1:{port}", access)
    await server.start()
    yield f"http://127.0.0.1:{port}", access
    await server.stop()


@contextlib.asynccontextmanager
async def started_member(pool_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, int, subprocess.Popen]]:
    """A pool member process, idle and answering its health check."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fx_runtime.pool"],
        env={"FX_LISTEN": f"127.0.0.1:{port}", "FX_POOL_URL": pool_url, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while True:
                try:
                    assert (await http.get("/_fx/health")).json() == {"status": "pool"}
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the pool member never listened"
                    await asyncio.sleep(0.02)
            yield http, port, proc
    finally:
        proc.kill()
        proc.wait(5)


@pytest.fixture
async def member(controller):
    pool_url, access = controller
    async with started_member(pool_url) as (http, port, proc):
        yield http, port, proc, access


def replica_env(tmp_path: Path, port: int, source: str) -> dict[str, str]:
    path, hexdigest = zipped(source, tmp_path)
    return {
        "_HANDLER": "handler.handler",
        "AWS_LAMBDA_FUNCTION_NAME": "hello",
        "FX_ARTIFACT": str(path),
        "FX_ARTIFACT_SHA256": hexdigest,
        "FX_CODE_DIR": str(tmp_path / "code" / hexdigest),
        "FX_LISTEN": f"127.0.0.1:{port}",
    }


async def test_a_pool_member_specialises_into_a_replica(member, tmp_path: Path) -> None:
    http, port, _, access = member
    access.assign(POD_IP, replica_env(tmp_path, port, "def handler(e, c):\n    return {'name': c.function_name}\n"))
    started = time.perf_counter()
    answer = await http.post("/_fx/specialize")
    took = time.perf_counter() - started
    assert answer.status_code == 200 and answer.json()["event"] == "ready"
    assert took < 2.0  # no interpreter start: the code's import only
    assert (await http.post("/_fx/invoke", content=b"{}")).json() == {"name": "hello"}
    # A replica now: a second doorbell is no specialize, whatever the controller holds.
    access.assign(POD_IP, replica_env(tmp_path, port, "def handler(e, c):\n    return 'attacker'\n"))
    assert (await http.post("/_fx/specialize")).status_code == 404
    assert (await http.post("/_fx/invoke", content=b"{}")).json() == {"name": "hello"}


async def test_a_doorbell_rung_before_the_controller_service_routes_to_it_waits_for_it(tmp_path: Path) -> None:
    # A new leader rings pool pods at once on takeover; the Service reaches it only once its pod is labelled and
    # the endpoints followed: until then a fetch of the assignment is refused. The member tries again.
    controller_port = free_port()
    async with started_member(f"http://127.0.0.1:{controller_port}") as (http, port, _):
        doorbell = asyncio.create_task(http.post("/_fx/specialize"))
        await asyncio.sleep(0.5)
        assert not doorbell.done()
        access = PodAccess(unknown_wait=0.1)
        access.assign(POD_IP, replica_env(tmp_path, port, "def handler(e, c):\n    return 'after the wait'\n"))
        server = ArtifactServer(FakeArtifacts(tmp_path, {}), f"127.0.0.1:{controller_port}", access)
        await server.start()
        try:
            assert (await doorbell).json()["event"] == "ready"
            assert (await http.post("/_fx/invoke", content=b"{}")).json() == "after the wait"
        finally:
            await server.stop()


async def test_a_doorbell_the_controller_did_not_ring_changes_nothing(member, tmp_path: Path) -> None:
    http, port, proc, access = member
    # Whatever the caller sends (the old protocol pushed the environment in the body), no assignment: 403.
    attack = replica_env(tmp_path, port, "def handler(e, c):\n    return 'attacker'\n")
    refused = await http.post("/_fx/specialize", json={"env": attack})
    assert refused.status_code == 403 and proc.poll() is None
    assert (await http.get("/_fx/health")).json() == {"status": "pool"}  # still idle, still in the pool
    access.assign(POD_IP, replica_env(tmp_path, port, "def handler(e, c):\n    return 'owner'\n"))
    assert (await http.post("/_fx/specialize")).json()["event"] == "ready"
    assert (await http.post("/_fx/invoke", content=b"{}")).json() == "owner"


async def test_a_bad_handler_is_an_init_error_and_the_member_exits(member, tmp_path: Path) -> None:
    http, port, proc, access = member
    access.assign(POD_IP, replica_env(tmp_path, port, "import nothing_by_this_name\n"))
    answer = await http.post("/_fx/specialize")
    assert answer.status_code == 500
    assert answer.json()["errorType"] == "Runtime.ImportModuleError"
    assert await asyncio.to_thread(proc.wait, 10) == 1


async def test_anything_else_is_refused(member) -> None:
    http, _, _, _ = member
    assert (await http.get("/_fx/other")).status_code == 404


async def test_an_idle_member_stops_at_once_on_sigterm(member) -> None:
    _, _, proc, _ = member
    proc.terminate()
    assert await asyncio.to_thread(proc.wait, 2) == 0  # as PID 1 in a pod it would otherwise wait out the grace


async def test_files_of_the_assignment_are_written_for_this_uid_alone(member, tmp_path: Path) -> None:
    http, port, _, access = member
    creds = tmp_path / "nats" / "fx-nats.creds"
    reader = "import os\n\n\ndef handler(e, c):\n    return open(os.environ['CREDS']).read()\n"
    env = {**replica_env(tmp_path, port, reader), "CREDS": str(creds)}
    access.assign(POD_IP, env, {str(tmp_path / "elsewhere" / ".." / "x"): "not normalised"})
    assert (await http.post("/_fx/specialize")).status_code == 502  # refused as a whole: still in the pool
    access.assign(POD_IP, env, {str(creds): "a NATS user"})
    assert (await http.post("/_fx/specialize")).json()["event"] == "ready"
    assert (await http.post("/_fx/invoke", content=b"{}")).json() == "a NATS user"
    assert creds.stat().st_mode & 0o777 == 0o600
