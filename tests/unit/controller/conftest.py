"""Controller test fixtures: a real nats-server, a controller with a scripted backend, an admin client."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fx.protocol import KV_ROUTES, RUNTIMES, RouteTable
from fx_controller.api.app import create_app
from fx_controller.backends.base import EventSink, ReplicaEvent, ReplicaSpec
from fx_controller.backends.kubernetes.backend import KubernetesBackend
from fx_controller.backends.kubernetes.pods import PodState
from fx_controller.controller import Controller
from fx_controller.settings import Settings
from nats.js.errors import KeyNotFoundError

from tests.nats_server import nats_server
from tests.unit.controller.kube_fakes import POOL_CFG, FakeApi
from tests.waiting import until

TOKEN = "test-token"


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    with nats_server(tmp_path / "nats") as url:
        yield url


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
        self.store_source = None
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


async def route_table(controller: Controller, name: str) -> RouteTable | None:
    kv = await controller._nc.jetstream().key_value(KV_ROUTES)
    try:
        entry = await kv.get(name)
    except KeyNotFoundError:  # also raised for a deleted key
        return None
    return RouteTable.from_json(entry.value) if entry.value else None


async def settled(admin: httpx.AsyncClient, result: dict) -> dict:
    """A deploy's result once the readiness gate has settled its version (Ready or Failed)."""
    url = f"/system/functions/{result['function']}/versions/{result['version']}"

    async def state() -> str | None:
        now = (await admin.get(url)).json()["state"]
        return None if now == "Pending" else now

    return {**result, "state": await until(state, 5, f"version {result['version']} settled")}


@pytest.fixture
async def pooled():
    """(api, backend, events, asked, answers): a Kubernetes backend with one warm pool pod; `answers` scripts
    what specialising a pool pod answers."""
    api = FakeApi(cfg=POOL_CFG)
    events: list[ReplicaEvent] = []
    asked: list[tuple[str, dict]] = []
    answers: list[dict | Exception] = []

    async def specialize(ip: str, env: dict, files: dict) -> dict:
        asked.append((ip, env))
        api.files.append(files)
        answer = answers.pop(0) if answers else {"event": "ready", "endpoint": "0.0.0.0:8080", "init_ms": 40}
        if isinstance(answer, Exception):
            raise answer
        return answer

    backend = KubernetesBackend(api, specialize=specialize)
    await backend.open(events.append)
    api.on_pod("ADDED", PodState("pool-a", "", 0, ip="10.244.0.20", ready=True, pool=True))
    yield api, backend, events, asked, answers
    await backend.close()
