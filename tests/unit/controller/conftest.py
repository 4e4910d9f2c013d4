"""Controller test fixtures: a real nats-server, a controller with a scripted backend, an admin client."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fx.protocol import RUNTIMES
from fx_controller.app import create_app
from fx_controller.backends.base import EventSink, ReplicaEvent, ReplicaSpec
from fx_controller.controller import Controller
from fx_controller.settings import Settings

from tests.nats_server import nats_server

TOKEN = "test-token"


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    with nats_server(tmp_path / "nats") as url:
        yield url


async def until(predicate, timeout: float = 5.0) -> None:
    """Wait for a condition the event loop will make true; fail if it does not in time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class FakeBackend:
    """Replicas that become ready (or fail init) a moment after they are asked for; no processes."""

    def __init__(self) -> None:
        self.on_event: EventSink = lambda _: None
        self.started: list[ReplicaSpec] = []
        self.stopped: list[str] = []
        self.outcome = "ready"  # ready | init_error | hang
        self.start_delay = 0.02
        self.runs_images = False
        self.secret_mirror = None
        self.runtimes = dict.fromkeys(RUNTIMES, "fake")

    def runtime_remedy(self, runtime: str) -> str:
        return f"(how to add {runtime})"

    async def open(self, on_event: EventSink) -> None:
        self.on_event = on_event

    async def start_replica(self, replica: ReplicaSpec) -> None:
        self.started.append(replica)
        loop = asyncio.get_running_loop()
        n = len(self.started)
        if self.outcome == "ready":
            event = ReplicaEvent(replica.id, "ready", endpoint=f"127.0.0.1:{20000 + n}")
            loop.call_later(self.start_delay, self.on_event, event)
        elif self.outcome == "init_error":
            event = ReplicaEvent(replica.id, "init_error", error_type="Runtime.ImportModuleError", error_message="nope")
            loop.call_later(self.start_delay, self.on_event, event)
            loop.call_later(self.start_delay * 2, self.on_event, ReplicaEvent(replica.id, "exit", exit_code=1))

    async def stop_replica(self, replica_id: str, grace: float) -> None:
        self.stopped.append(replica_id)
        asyncio.get_running_loop().call_soon(self.on_event, ReplicaEvent(replica_id, "exit", exit_code=0))

    def crash(self, replica_id: str) -> None:
        self.on_event(ReplicaEvent(replica_id, "exit", exit_code=-9))

    async def close(self) -> None:
        pass


def make_zip(files: dict[str, bytes]) -> tuple[bytes, str]:
    """The same files make the same zip (fixed entry times), so a repeated deploy is "unchanged"."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    data = buf.getvalue()
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def settings(tmp_path: Path, nats_url: str) -> Settings:
    return Settings(
        nats_url=nats_url, state_dir=tmp_path / "state", drain_delay=0.05, stable_window=1.0, max_unzipped_mb=1
    )


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
async def controller(settings: Settings, backend: FakeBackend) -> AsyncIterator[Controller]:
    c = Controller(settings, backend_factory=lambda s, a: backend)
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
async def admin(controller: Controller) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(controller, TOKEN))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://controller", headers=headers) as client:
        yield client


@pytest.fixture
async def deployed(admin: httpx.AsyncClient):
    """Upload a zip and deploy it as `name` with the given spec fields; returns the DeployResult JSON."""

    async def deploy(name: str, source: bytes = b"def handler(e, c):\n    return 1\n", **spec) -> dict:
        data, digest = make_zip({"handler.py": source})
        assert (await admin.put(f"/system/artifacts/{digest}", content=data)).status_code == 200
        r = await admin.put(f"/system/functions/{name}", json={"name": name, "artifact": digest, **spec})
        assert r.status_code == 200, r.text
        return await settled(admin, r.json())

    return deploy


async def settled(admin: httpx.AsyncClient, result: dict) -> dict:
    """A deploy's result once the readiness gate has settled its version (Ready or Failed)."""
    url = f"/system/functions/{result['function']}/versions/{result['version']}"
    deadline = time.monotonic() + 5.0
    while (state := (await admin.get(url)).json()["state"]) == "Pending":
        assert time.monotonic() < deadline, f"version {result['version']} still Pending"
        await asyncio.sleep(0.02)
    return {**result, "state": state}
