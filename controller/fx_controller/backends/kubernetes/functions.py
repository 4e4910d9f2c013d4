"""Function resources in step with fx, both ways.

- fx → Kubernetes: every function in the store (KV fx_functions) has a Function resource with its latest
  spec, its whole record in an annotation (records.py: the store is rebuilt from them if NATS loses it) and a
  status (latest version, traffic, ready replicas, a Ready condition: ArtifactMissing when the code of a
  version that serves is gone); a deleted function's resource is deleted, and the garbage collector removes
  the Deployments it owns.
- Kubernetes → fx (GitOps): a Function applied with kubectl whose spec differs from the latest version is
  deployed through the admin API, exactly as `fx deploy` would; a Function deleted with kubectl deletes the
  function. A spec the admin API refuses is reported in the resource's Ready condition; a delete it refuses
  (an API route invokes the function) brings the resource back with the reason in that condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fx import kv_watch, nats_client
from fx.protocol import KV_FUNCTIONS
from pydantic import ValidationError

from ... import nats_connect
from ...state.store import FunctionRecord
from ...tasks import spawn
from . import manifests, records
from .kube import KubeApi

log = logging.getLogger("fx_controller.functions")

ADMIN_RETRIES = 30
PUT, DELETED, LOADED = "put", "deleted", "loaded"  # what _changes holds
STOP_TIMEOUT_S = 5.0


def traffic_text(traffic: dict[int, int]) -> str:
    return ",".join(f"{v}:{pct}" for v, pct in sorted(traffic.items()))


def condition(ok: bool | None, reason: str, message: str, generation: int | None) -> dict:
    """The Ready condition; `ok` None: Unknown (not decided yet)."""
    return {
        "type": "Ready",
        "status": "Unknown" if ok is None else "True" if ok else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def readiness(record: FunctionRecord, ready: int) -> tuple[bool | None, str, str]:
    """The Ready condition of a function by its latest version's readiness gate, then by its replicas."""
    latest = record.latest
    if latest.state == "Failed":
        error = latest.init_error
        cause = f"{error.error_type}: {error.message}" if error else "unknown error"
        serving = {v: pct for v, pct in record.traffic.items() if pct and v != latest.version}
        where = f"traffic stays on {traffic_text(serving)}" if serving else "no version serves it"
        return False, "VersionFailed", f"version {latest.version} failed to initialise ({cause}); {where}"
    if latest.state == "Pending":
        return None, "Starting", f"version {latest.version} is initialising; it takes traffic once ready"
    return (True, "Running", f"{ready} replicas ready") if ready else (True, "ScaledToZero", "no replicas")


async def _present(digest: str) -> bool:
    return True


class FunctionSync:
    def __init__(self, api: KubeApi, nats_url: str, admin: httpx.AsyncClient, nats_creds: Path | None = None) -> None:
        self._api = api
        self._nats_url = nats_url
        self._nats_creds = nats_creds  # the controller's NATS user (FX_NATS_CREDS); None: NATS without auth
        self._admin = admin  # this controller's own admin API, with the admin token
        self.ready_count: Callable[[str], int] = lambda function: 0  # the backend's count, set when it exists
        self.artifact_exists: Callable[[str], Awaitable[bool]] = _present  # the controller's artifacts, by digest
        self._too_big: set[str] = set()  # functions whose record does not fit an annotation (warned once)
        self._records: dict[str, FunctionRecord] = {}
        self._events: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()  # Function events, applied in order
        self._changes: asyncio.Queue[tuple[str | None, str]] = asyncio.Queue()  # store changes, mirrored in order
        self._queued: set[str] = set()  # functions with a PUT in _changes not yet begun
        self._deleting: set[str] = set()  # Functions fx deletes: their events until DELETED are stale
        self._seen: dict[str, tuple[str, int]] = {}  # name -> (uid, generation) of the last spec applied
        self._tasks: set[asyncio.Task] = set()
        self._nc: nats_client.Client | None = None

    async def start(self) -> None:
        self._nc = await nats_connect.connect(self._nats_url, self._nats_creds, "fx-controller-functions")
        self._spawn(self._follow_store(self._nc))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        # Bounded: a stop must not hang on a NATS or admin call that will never be answered.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_TIMEOUT_S)
        await self._admin.aclose()
        if self._nc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), STOP_TIMEOUT_S)

    def replicas_changed(self, function: str) -> None:
        if function in self._records:
            self._spawn(self._report(function))

    # --- fx → Kubernetes --------------------------------------------------------------------

    async def _follow_store(self, nc: nats_client.Client) -> None:
        """Every record mirrored as it changes, and all of them again after NATS reconnects (kv_watch.follow).

        The store is read here and mirrored by `_mirror_changes`, in order: a deploy, a split and an alias in
        quick succession take 4-6 API calls each to mirror, so a function changed again before its mirror
        started is mirrored once, with its newest record, and the resource does not lag behind by a queue of
        records already replaced."""
        self._spawn(self._mirror_changes())
        bucket = lambda: nc.jetstream().key_value(KV_FUNCTIONS)  # noqa: E731
        async with contextlib.aclosing(kv_watch.follow(nc, bucket)) as entries:
            async for entry in entries:
                if entry is None:  # the store is loaded: resources are compared with it once it is mirrored
                    self._changes.put_nowait((None, LOADED))
                elif entry.operation in kv_watch.DELETED:
                    self._records.pop(entry.key, None)
                    self._deleting.add(entry.key)  # now, so that no event of its resource deploys it back
                    self._queued.discard(entry.key)  # a put after this one must come after the delete
                    self._changes.put_nowait((entry.key, DELETED))
                else:
                    try:
                        record = FunctionRecord.model_validate_json(entry.value)
                    except ValidationError:
                        log.exception("could not read function %s from the store", entry.key)
                        continue
                    self._records[record.name] = record
                    if record.name not in self._queued:  # else its queued put will mirror this newer record
                        self._queued.add(record.name)
                        self._changes.put_nowait((record.name, PUT))

    async def _mirror_changes(self) -> None:
        while True:
            name, change = await self._changes.get()
            try:
                if change == LOADED:  # only now can a resource be compared with the store
                    self._api.watch_functions(lambda kind, obj: self._events.put_nowait((kind, obj)))
                    self._spawn(self._apply_resources())
                elif change == DELETED:
                    if not await self._api.delete_function(name):
                        self._deleting.discard(name)  # deleted with kubectl: its DELETED event is past
                else:
                    self._queued.discard(name)  # a change from now on is newer than what is mirrored here
                    if (record := self._records.get(name)) is not None:  # None: deleted since
                        await self._mirror(record)
            except Exception:
                log.exception("could not mirror function %s to its Function resource", name)

    async def _mirror(self, record: FunctionRecord) -> None:
        body = manifests.function_resource(self._api.cfg, record.latest.spec)
        found = await self._api.get_function(record.name)
        if found is None:
            found = await self._api.create_function(body)
        elif found.get("spec") != body["spec"]:
            await self._api.patch_function_spec(record.name, body["spec"])
        mirrored = records.encode(record)
        if mirrored is None and record.name not in self._too_big:
            self._too_big.add(record.name)
            log.warning("function %s: its record is too big for an annotation; NATS alone keeps it", record.name)
        if (found["metadata"].get("annotations") or {}).get(records.ANNOTATION) != mirrored:
            await self._api.annotate_function(record.name, {records.ANNOTATION: mirrored})  # None removes it
        await self._report(record.name)

    async def _lost_code(self, record: FunctionRecord) -> list[int]:
        """The versions that serve (the latest, traffic, aliases) whose code zip is gone from the controller."""
        serving = {record.latest.version, *(v for v, pct in record.traffic.items() if pct), *record.aliased}
        lost = []
        for number in sorted(serving):
            version = record.version(number)
            if not (version and version.spec.artifact):
                continue
            try:
                if not await self.artifact_exists(version.spec.artifact):
                    lost.append(number)
            except Exception as e:  # NATS away: not known to be lost, so not reported as lost
                log.debug("could not check the code of %s version %d: %s", record.name, number, e)
        return lost

    async def _report(self, name: str, problem: tuple[str, str] | None = None) -> None:
        record = self._records.get(name)
        found = await self._api.get_function(name)
        if found is None:
            return
        generation = found["metadata"].get("generation")
        status: dict = {"observedGeneration": generation}
        if record:
            ready = self.ready_count(name)
            status |= {
                "latestVersion": record.latest.version,
                "latestVersionState": record.latest.state,
                "traffic": traffic_text(record.traffic),
                "readyReplicas": ready,
            }
        lost = await self._lost_code(record) if record and not problem else []
        if lost:
            versions = ", ".join(map(str, lost))
            problem = ("ArtifactMissing", f"the code of version {versions} is gone (NATS lost it): run fx deploy again")
        if problem:
            status["conditions"] = [condition(False, problem[0], problem[1], generation)]
        elif record:
            status["conditions"] = [condition(*readiness(record, ready), generation)]
        await self._api.patch_function_status(name, status)

    # --- Kubernetes → fx ----------------------------------------------------------------------

    async def _apply_resources(self) -> None:
        while True:
            await self._on_resource(*await self._events.get())

    async def _on_resource(self, kind: str, obj: dict) -> None:
        meta = obj["metadata"]
        name = meta["name"]
        record = self._records.get(name)
        try:
            if kind == "DELETED":
                self._seen.pop(name, None)
                if name in self._deleting:
                    self._deleting.discard(name)
                elif record is not None:
                    log.info("Function %s deleted in Kubernetes: deleting it", name)
                    answer = await self._call("DELETE", name)
                    error = answer.json().get("error", {}) if answer.status_code == 409 else {}
                    # Refused because an API route invokes it: it stays, and says why. Anything else (404: fx no
                    # longer has it) leaves it deleted, or `helm uninstall` would wait forever for it.
                    if error.get("code") == "FunctionInUse":
                        log.warning("Function %s stays: %s", name, error.get("message", answer.text))
                        await self._mirror(record)
                        await self._report(name, ("FunctionInUse", error.get("message", "")))
                return
            if name in self._deleting or meta.get("deletionTimestamp"):
                return
            if self._seen.get(name) == (meta.get("uid"), meta.get("generation")):
                return  # a status change (ours): the spec is as last applied
            self._seen[name] = (meta.get("uid"), meta.get("generation"))
            try:
                spec = manifests.spec_of(name, obj.get("spec") or {})
            except ValidationError as e:
                await self._report(name, ("InvalidSpec", str(e)))
                return
            if record is not None and record.latest.spec == spec:
                return
            answer = await self._call("PUT", name, spec.model_dump(mode="json"))
            if answer.status_code >= 400:
                error = answer.json().get("error", {})
                await self._report(name, (error.get("code", "DeployFailed"), error.get("message", answer.text)))
            else:
                log.info("Function %s applied in Kubernetes: %s", name, answer.json().get("message"))
        except Exception:
            log.exception("could not apply Function %s", name)

    async def _call(self, method: str, name: str, body: dict | None = None) -> httpx.Response:
        """The admin API, as `fx deploy` calls it; at start-up it may not listen yet."""
        for _ in range(ADMIN_RETRIES):
            try:
                return await self._admin.request(method, f"/system/functions/{name}", json=body)
            except httpx.TransportError:
                await asyncio.sleep(1.0)
        return await self._admin.request(method, f"/system/functions/{name}", json=body)

    def _spawn(self, coro) -> None:
        spawn(coro, self._tasks)
