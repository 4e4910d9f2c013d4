"""Function resources and fx agree both ways: a deploy shows up as a Function with its status, a Function
changed or deleted with kubectl is deployed or deleted through the admin API, a refused spec says why."""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
from datetime import UTC, datetime

import httpx
import pytest
from fx.api_models import ApiSpec
from fx.models import FunctionSpec
from fx_controller.api.app import create_app
from fx_controller.backends.kubernetes import records
from fx_controller.backends.kubernetes.config import KubeConfig
from fx_controller.backends.kubernetes.functions import FunctionSync
from fx_controller.controller import Controller
from fx_controller.settings import Settings
from fx_controller.state.store import FunctionRecord, VersionRecord

from tests.waiting import until

from .conftest import TOKEN, FakeBackend


class FakeFunctions:
    """Function resources as the API server keeps them; the test plays the watch via `on_resource`."""

    cfg = KubeConfig(namespace="fx")

    def __init__(self) -> None:
        self.items: dict[str, dict] = {}
        self.on_resource = None

    async def get_function(self, name: str) -> dict | None:
        return self.items.get(name)

    async def create_function(self, body: dict) -> dict:
        body["metadata"] |= {"uid": f"uid-{body['metadata']['name']}", "generation": 1}
        self.items[body["metadata"]["name"]] = body
        return body

    async def patch_function_spec(self, name: str, spec: dict) -> None:
        self.items[name]["spec"] = spec
        self.items[name]["metadata"]["generation"] += 1

    async def annotate_function(self, name: str, annotations: dict[str, str | None]) -> None:
        have = self.items[name]["metadata"].setdefault("annotations", {})
        have.update(annotations)
        for key in [k for k, v in have.items() if v is None]:
            del have[key]

    async def list_functions(self) -> list[dict]:
        return list(self.items.values())

    async def patch_function_status(self, name: str, status: dict) -> None:
        if name in self.items:
            self.items[name]["status"] = status

    async def delete_function(self, name: str) -> bool:
        return self.items.pop(name, None) is not None

    def watch_functions(self, on_event) -> None:
        self.on_resource = on_event


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.keep_warm = 0  # no warm replica of version 1 after version 2 takes its traffic
    return settings


def edit(item: dict, **spec) -> dict:
    """What `kubectl edit` makes: a new spec, and a new generation."""
    meta = {**item["metadata"], "generation": item["metadata"]["generation"] + 1}
    return {**item, "metadata": meta, "spec": {**item["spec"], **spec}}


def ready(item: dict) -> dict:
    return item.get("status", {}).get("conditions", [{}])[0]


async def test_functions_follow_fx_and_fx_follows_functions(controller, deployed, settings) -> None:
    api = FakeFunctions()
    transport = httpx.ASGITransport(app=create_app(controller, TOKEN))
    admin = httpx.AsyncClient(
        transport=transport, base_url="http://controller", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    sync = FunctionSync(api, settings.nats_url, admin)
    sync.ready_count = lambda name: 2
    await sync.start()
    try:
        await deployed("hello")
        # Version 1 routes at once, but the resource says Ready only once the gate's replica has initialised.
        v1_ready = {"latestVersion": 1, "latestVersionState": "Ready"}
        await until(lambda: v1_ready.items() <= api.items.get("hello", {}).get("status", {}).items(), 5, "v1 Ready")
        item = api.items["hello"]
        assert item["spec"]["handler"] == "handler.handler" and "name" not in item["spec"]
        assert item["status"]["traffic"] == "1:100" and item["status"]["readyReplicas"] == 2
        assert ready(item)["status"] == "True" and item["status"]["observedGeneration"] == 1
        await until(lambda: api.on_resource is not None)

        # kubectl edit: a new spec becomes version 2, and the resource's status says so.
        edited = edit(item, env={"FROM": "kubectl"})
        api.items["hello"] = edited
        api.on_resource("MODIFIED", edited)
        v2_ready = {"latestVersion": 2, "latestVersionState": "Ready"}
        await until(lambda: v2_ready.items() <= api.items["hello"].get("status", {}).items(), 5, "version 2 Ready")
        assert controller.describe("hello").versions[-1].spec.env == {"FROM": "kubectl"}
        # Its own echo (the same spec, or a status change) makes no version 3.
        api.on_resource("MODIFIED", api.items["hello"])
        api.on_resource("MODIFIED", {**edited, "status": {"readyReplicas": 5}})
        # (Checked below: events are applied in order, so once the next one is, these were.)

        # A spec the admin API refuses: the reason is in the Ready condition, fx is unchanged.
        missing = "sha256:" + "0" * 64
        bad = edit(api.items["hello"], artifact=missing)
        api.items["hello"] = bad
        api.on_resource("MODIFIED", bad)
        await until(lambda: ready(api.items["hello"]).get("reason") == "ArtifactNotFound")
        assert ready(api.items["hello"])["status"] == "False" and missing in ready(api.items["hello"])["message"]
        assert controller.describe("hello").latest == 2  # neither the echoes nor the refused spec made one

        # kubectl delete: the function goes from fx too.
        api.items.pop("hello")
        api.on_resource("DELETED", bad)
        await until(lambda: not controller.list(), timeout=10)
    finally:
        await sync.stop()


async def started_sync(api: FakeFunctions, controller, settings: Settings) -> FunctionSync:
    """A FunctionSync over `api`, calling the controller's admin API in-process."""
    transport = httpx.ASGITransport(app=create_app(controller, TOKEN))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    sync = FunctionSync(
        api, settings.nats_url, httpx.AsyncClient(transport=transport, base_url="http://c", headers=headers)
    )
    await sync.start()
    return sync


async def test_a_function_deleted_by_fx_is_not_brought_back_by_late_events(controller, deployed, settings) -> None:
    api = FakeFunctions()
    sync = await started_sync(api, controller, settings)
    try:
        await deployed("hello")
        await until(lambda: "status" in api.items.get("hello", {}) and api.on_resource is not None)
        stale = api.items["hello"]
        await controller.delete("hello")  # fx rm
        await until(lambda: "hello" not in api.items)
        api.on_resource("MODIFIED", edit(stale, env={"LATE": "1"}))  # queued before the deletion was seen
        api.on_resource("DELETED", stale)
        # A Function applied again afterwards (kubectl apply) is deployed. Events are applied in order: once it
        # is, the late ones were, and had they brought hello back (with LATE), this would be its version 2.
        api.on_resource("ADDED", {**stale, "metadata": {**stale["metadata"], "uid": "new"}})
        await until(lambda: [f.name for f in controller.list()] == ["hello"])
        hello = controller.describe("hello")
        assert hello.latest == 1 and "LATE" not in hello.versions[-1].spec.env
    finally:
        await sync.stop()


async def test_a_function_an_api_invokes_comes_back_when_deleted_with_kubectl(controller, deployed, settings) -> None:
    api = FakeFunctions()
    sync = await started_sync(api, controller, settings)
    try:
        await deployed("hello")
        await controller.apis.put(ApiSpec.model_validate({"name": "shop", "routes": {"GET /": {"function": "hello"}}}))
        await until(lambda: "status" in api.items.get("hello", {}) and api.on_resource is not None)
        gone = api.items.pop("hello")
        api.on_resource("DELETED", gone)
        await until(lambda: ready(api.items.get("hello", {})).get("reason") == "FunctionInUse", 10, "hello back")
        assert "invoked by route 'GET /' of API 'shop'" in ready(api.items["hello"])["message"]
        assert [f.name for f in controller.list()] == ["hello"]
    finally:
        await sync.stop()


async def test_a_function_whose_new_version_fails_its_init_says_so_in_its_status(
    controller, deployed, settings, backend
) -> None:
    api = FakeFunctions()
    sync = await started_sync(api, controller, settings)
    try:
        await deployed("hello")
        await until(lambda: ready(api.items.get("hello", {})).get("status") == "True" and api.on_resource is not None)
        backend.outcome = "init_error"
        edited = edit(api.items["hello"], env={"BROKEN": "1"})  # kubectl apply of a version that cannot init
        api.items["hello"] = edited
        api.on_resource("MODIFIED", edited)
        await until(lambda: api.items["hello"]["status"].get("latestVersionState") == "Failed")
        status = api.items["hello"]["status"]
        assert status["latestVersion"] == 2 and status["traffic"] == "1:100"
        condition = ready(api.items["hello"])
        assert (condition["status"], condition["reason"]) == ("False", "VersionFailed")
        assert condition["message"] == (
            "version 2 failed to initialise (Runtime.ImportModuleError: nope); traffic stays on 1:100"
        )
    finally:
        await sync.stop()


async def test_the_store_is_rebuilt_from_the_function_resources_when_nats_lost_it(
    controller, deployed, admin, settings
) -> None:
    """Each record is mirrored into its Function's annotation; a leader that finds the store without it (NATS
    lost its data) creates it from there before loading: versions, traffic and aliases come back as they were."""
    api = FakeFunctions()
    sync = await started_sync(api, controller, settings)
    try:
        await deployed("hello")
        await deployed("hello", b"def handler(e, c):\n    return 2\n", env={"V": "2"})
        assert (await admin.put("/system/functions/hello/traffic", json={"traffic": {"1": 30, "2": 70}})).is_success
        assert (await admin.put("/system/functions/hello/aliases/live", json={"version": 1})).is_success
        record = controller.store.get("hello")

        def mirrored() -> FunctionRecord | None:
            text = api.items.get("hello", {}).get("metadata", {}).get("annotations", {}).get(records.ANNOTATION)
            return text and records.decode(text)

        await until(lambda: mirrored() == record, 5, "the whole record in the Function's annotation")
    finally:
        await sync.stop()  # the controller goes (its successor restores before it loads the store)
    kv = controller.store._kv
    # The store has it: nothing is replaced.
    assert await records.StoreFromResources(api).restore(kv) == []
    await kv.purge("hello")  # NATS lost it
    backend = FakeBackend()
    backend.store_source = records.StoreFromResources(api)
    successor = Controller(settings, backend_factory=lambda s, a: backend)
    await successor.start()
    try:
        assert successor.store.get("hello") == record
        assert FunctionRecord.model_validate_json((await kv.get("hello")).value) == record
        assert record.traffic == {1: 30, 2: 70} and record.aliases == {"live": 1} and len(record.versions) == 2
    finally:
        await successor.stop()
    assert await records.StoreFromResources(api).restore(kv) == []  # once


class SlowFunctions(FakeFunctions):
    """An API server whose annotation writes wait for `go`, and which counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.annotated: list[str] = []

    async def annotate_function(self, name: str, annotations: dict[str, str | None]) -> None:
        await self.go.wait()
        self.annotated.append(name)
        await super().annotate_function(name, annotations)


async def test_changes_made_while_a_mirror_is_slow_are_mirrored_once_with_the_newest_record(
    controller, deployed, admin, settings
) -> None:
    """A function changed ten times while the API server is slow: its resource gets the newest record at once
    when the server answers again, not after ten writes of records already replaced."""
    api = SlowFunctions()
    sync = await started_sync(api, controller, settings)
    try:
        await deployed("hello")  # its first mirror waits on the annotation write
        for n in range(10):
            assert (await admin.put("/system/functions/hello/aliases/live", json={"version": 1})).is_success
            assert (await admin.put(f"/system/functions/hello/aliases/a{n}", json={"version": 1})).is_success
        record = controller.store.get("hello")
        api.go.set()

        def mirrored() -> FunctionRecord | None:
            text = api.items.get("hello", {}).get("metadata", {}).get("annotations", {}).get(records.ANNOTATION)
            return text and records.decode(text)

        await until(lambda: mirrored() == record, 5, "the newest record in the Function's annotation")
        # The write held when the burst began, then one with the newest record (the deploy's readiness gate
        # may add one more change of its own before the burst).
        assert len(api.annotated) <= 3, api.annotated
    finally:
        await sync.stop()


def test_a_record_too_big_for_an_annotation_is_not_mirrored_and_a_bad_one_is_refused() -> None:
    def version(number: int, env_kb: int) -> VersionRecord:
        env = {f"K{i}": os.urandom(500).hex() for i in range(env_kb)}  # random: gzip cannot shrink it below half
        spec = FunctionSpec(name="big", artifact="sha256:" + "a" * 64, env=env)
        return VersionRecord(version=number, digest="sha256:" + "a" * 64, created_at=datetime.now(UTC), spec=spec)

    big = FunctionRecord(name="big", versions=[version(n, 60) for n in range(1, 9)], traffic={8: 100})
    assert records.encode(big) is None
    small = FunctionRecord(name="big", versions=[version(1, 1)], traffic={1: 100})
    assert records.decode(records.encode(small)) == small
    with pytest.raises(ValueError):
        records.decode("not base64 of gzip")


def test_an_annotation_that_inflates_past_the_bound_is_refused_not_inflated() -> None:
    """Anyone who may edit a Function may write the annotation: 64 MiB of zeros gzip to ~64 KiB."""
    bomb = base64.b64encode(gzip.compress(b"0" * (64 * 1024 * 1024))).decode()
    assert len(bomb) <= records.MAX_BYTES
    with pytest.raises(ValueError, match="inflates past"):
        records.decode(bomb)
    with pytest.raises(ValueError, match="over the"):
        records.decode("A" * (records.MAX_BYTES + 4))


async def test_a_function_whose_code_is_gone_says_so_in_its_condition(controller, deployed, settings) -> None:
    api = FakeFunctions()
    sync = await started_sync(api, controller, settings)
    try:
        await deployed("hello")
        await until(lambda: ready(api.items.get("hello", {})).get("reason") in ("Running", "ScaledToZero"))
        digest = controller.store.get("hello").latest.spec.artifact

        async def exists(wanted: str) -> bool:
            return wanted != digest  # the code zip was lost with NATS's data

        sync.artifact_exists = exists
        sync.replicas_changed("hello")
        await until(lambda: ready(api.items["hello"]).get("reason") == "ArtifactMissing")
        message = ready(api.items["hello"])["message"]
        assert ready(api.items["hello"])["status"] == "False"
        assert "version 1" in message and "fx deploy" in message
    finally:
        await sync.stop()
