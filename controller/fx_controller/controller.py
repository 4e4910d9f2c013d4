"""The controller: wires the store, fleet, routes, activator, autoscaler and releases to NATS and a backend,
and carries out what the admin API asks (deploy, describe, delete; traffic changes are in releases.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import nats
import nats.js.errors
from fx import async_streams, interpreters, log_files, nats_client
from fx.event_models import PlatformStatus
from fx.models import DeployResult, FunctionInfo, FunctionSpec, VersionInfo
from fx.nats_auth import ADMIN_CREDS, Signer
from fx.paths import config_path
from fx.protocol import (
    KV_API_KEYS,
    KV_APIS,
    KV_CREDENTIALS,
    KV_FUNCTIONS,
    KV_ROUTES,
    KV_SECRETS,
    OBJ_ARTIFACTS,
    SUBJECT_ACTIVATE,
    SUBJECT_LOAD,
    ActivationReply,
    ActivationRequest,
    LoadReport,
    kv_stream,
    load_report_key,
)
from fx.state_dir import LIFELINE_FD_ENV
from nats.aio.msg import Msg

from . import nats_connect
from .api.errors import ApiError, not_found
from .api_keys.store import ApiKeyStore
from .api_keys.usage import ApiKeyUsage
from .apis.rules import Apis
from .apis.store import ApiStore
from .backends import local_logs as logs
from .backends.base import Adopting, Backend, Templating
from .backends.local import LocalBackend
from .backends.local_nats import FunctionCreds
from .backends.local_sandbox import UIDS_FILE, SandboxSettings, UidMap, run_dir
from .events.dead_letters import DeadLetters
from .events.messages import Messages
from .events.user_streams import UserStreams
from .lambda_api.credentials import CredentialStore
from .metrics import Metrics
from .nats_buckets import open_kv, open_object_store
from .nats_recovery import NatsRecovery
from .replicas.activator import Activator
from .replicas.autoscaler import Autoscaler, Tuning
from .replicas.fleet import Fleet
from .replicas.load import LoadBook
from .replicas.reconciler import Reconciler
from .replicas.tokens import KEY_FILE, ReplicaTokens, load_key
from .secrets.rules import Secrets, live_versions
from .secrets.store import SecretStore
from .serving.gate import Gate
from .serving.releases import Releases
from .settings import Settings
from .state import log_rotation, usage
from .state.artifacts import Artifacts
from .state.blobs import Blobs
from .state.collector import Collector
from .state.routes import RoutePublisher
from .state.store import FunctionRecord, FunctionStore, VersionRecord
from .tasks import spawn
from .usage import UsageBook

log = logging.getLogger("fx_controller")

BackendFactory = Callable[[Settings, Artifacts], Backend]


def local_backend(settings: Settings, artifacts: Artifacts) -> Backend:
    sandbox, uids = None, None
    if settings.sandbox == "auto" and os.geteuid() == 0:
        hidden = [settings.state_dir, settings.token_file, config_path().parent, Path.home() / ".config" / "fx"]
        hidden += [settings.nats_auth_dir, settings.nats_creds]  # the platform's NATS keys and credentials
        sandbox = SandboxSettings(
            uids=settings.sandbox_uids,
            tmp_mb=settings.sandbox_tmp_mb,
            pids_max=settings.sandbox_pids_max,
            hidden=sorted({str(Path(p).resolve()) for p in hidden if p}),
        )
        uids = UidMap(settings.state_dir / UIDS_FILE, settings.sandbox_uids)
    signer = Signer.load(settings.nats_auth_dir) if settings.nats_auth_dir else None
    creds = FunctionCreds(  # in the function's private directory, readable by its uid
        run_dir(settings.state_dir),
        settings.nats_url,
        signer,
        settings.nats_creds_ttl,
        owner_of=uids.owner if uids else lambda function: None,
    )
    try:
        found = interpreters.discover(settings.interpreters)
    except ValueError as e:
        raise SystemExit(f"fx-controller: {e}") from None
    return LocalBackend(
        settings.state_dir,
        artifacts,
        nats=creds,
        sandbox=sandbox,
        uids=uids,
        sandbox_mode=settings.sandbox,
        interpreters=found,
        lifeline=int(lifeline) if (lifeline := os.environ.pop(LIFELINE_FD_ENV, "")) else None,
    )


class Controller:
    def __init__(self, settings: Settings, backend_factory: BackendFactory = local_backend) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.load = LoadBook()
        self.autoscaler = Autoscaler(
            Tuning(
                stable_window=settings.stable_window,
                panic_window_percentage=settings.panic_window_percentage,
                panic_threshold_percentage=settings.panic_threshold_percentage,
                max_scale_up_rate=settings.max_scale_up_rate,
                max_scale_down_rate=settings.max_scale_down_rate,
                scale_down_delay=settings.scale_down_delay,
            )
        )
        self._backend_factory = backend_factory
        self._lock = asyncio.Lock()  # deploys and deletes of the function store happen one at a time
        self._tasks: set[asyncio.Task] = set()
        self._nc: nats_client.Client | None = None
        self.state_bytes: dict[str, int] | None = None  # the state dir's usage by kind, embedded mode

    async def start(self) -> None:
        s = self.settings
        self._nc = await nats_connect.connect(s.nats_url, s.nats_creds, "fx-controller")
        js = self._nc.jetstream()
        copies = s.nats_replicas
        await async_streams.ensure(js, copies)  # the gateways' NATS users may not create streams
        functions_kv = await open_kv(js, KV_FUNCTIONS, copies)
        self.store = FunctionStore(functions_kv)
        routes_kv = await open_kv(js, KV_ROUTES, copies)
        api_store = ApiStore(await open_kv(js, KV_APIS, copies))  # made now: the gateways wait for it to be ready
        self.artifacts = Artifacts(
            s.state_dir / "artifacts",
            await open_object_store(js, OBJ_ARTIFACTS, copies),
            s.max_unzipped_bytes,
            s.max_artifact_entries,
        )
        self.backend = self._backend_factory(s, self.artifacts)
        if isinstance(self.backend, Templating):
            self.metrics.watch_templates(self.backend.template_memory)
        secret_store = SecretStore(await open_kv(js, KV_SECRETS, copies))
        self.credentials = CredentialStore(await open_kv(js, KV_CREDENTIALS, copies))  # the Lambda API's keys
        self.api_keys = ApiKeyStore(await open_kv(js, KV_API_KEYS, copies))  # API routes' keys (gateways follow)
        self.api_key_usage = await ApiKeyUsage.open(js, copies, self._quota_keys)
        self.secrets = Secrets(secret_store, self.store, self._lock, self.backend.secret_mirror, s.max_secret_bytes)
        self.apis = Apis(api_store, self.store, self._lock, s.max_apis, s.max_routes_per_api)
        self.fleet = Fleet(
            self.backend,
            self.metrics,
            self._publish,
            drain_delay=s.drain_delay,
            init_timeout=s.init_timeout,
            secret_env=self.secrets.env,
            tokens=ReplicaTokens(load_key(s.state_dir / KEY_FILE)),
            version_of=self._version,
        )
        self.routes = RoutePublisher(routes_kv, self.store, self.fleet)
        self.activator = Activator(self.store, self.fleet, self.load, self.metrics)
        self.reconciler = Reconciler(
            self.store, self.fleet, self.load, self.autoscaler, self.metrics, connected=lambda: self._nc.is_connected
        )
        self.releases = Releases(self.store, self.routes, self.fleet, self.load, self._lock, s.keep_warm)
        self.dead_letters = DeadLetters(js, lambda name: self.store.get(name) is not None)
        self.blobs = Blobs(
            js,
            lambda name: self.store.get(name) is not None,
            s.blob_max_bytes,
            s.blob_ttl,
            s.blob_store_max_bytes,
            copies,
        )
        self.user_streams = UserStreams(js, self._live_specs, copies)
        self.usage = await UsageBook.open(js, s.usage_retention, copies)
        self.messages = Messages(self._nc)
        self.gate = Gate(self.store, self.routes, self.fleet, self.load, self.releases, self._lock, s.init_timeout)
        self.recovery = NatsRecovery(
            js,
            self.store,
            secret_store,
            self.artifacts,
            self.routes,
            self._lock,
            self._live_specs,
            copies,
            self.credentials,
            api_store,
            self.api_keys,
        )
        self._nc.on_reconnect(self._nats_back)
        self.metrics.is_leader.set(1)  # started: it holds the lease, or runs alone
        self.metrics.nats_connected.set_function(lambda: float(self._nc.is_connected))
        self.reconciler.reconcile = self.metrics.timed("scale", self.reconciler.reconcile)  # type: ignore[method-assign]
        self.releases.tick = self.metrics.timed("rollout", self.releases.tick)  # type: ignore[method-assign]

        if self.backend.store_source:  # NATS lost the store: what the backend kept comes back first
            await self.backend.store_source.restore(functions_kv)
        await self.store.load()
        await secret_store.load()
        await self.credentials.load()
        await api_store.load()
        await self.api_keys.load()
        if isinstance(self.backend, Adopting):
            # The replicas a previous run left (the local backend under `fx up`) are adopted first, so the
            # tables keep naming their endpoints and the gateways never lose a warm replica.
            await self.backend.open(self.fleet.on_event)
            await self.fleet.adopt(self._version)
            await self.routes.publish_all()
        else:
            # Replicas of a previous run are not this fleet's: every table starts with no endpoints, published
            # before the backend removes what is left of them (a failover on Kubernetes), so no gateway sends a
            # request to a pod on its way out, or to a new pod that got its address.
            await self.routes.publish_all()
            await self.backend.open(self.fleet.on_event)
        await self.secrets.open()
        await self._nc.subscribe(SUBJECT_ACTIVATE, cb=self._on_activate)
        await self._nc.subscribe(SUBJECT_LOAD, cb=self._on_load)
        await self.usage.serve(self._nc)
        await self.api_key_usage.serve(self._nc)
        self._spawn(self.reconciler.run())
        limit = log_files.Limit(s.log_max_bytes, s.log_keep)
        self._spawn(log_rotation.run(s.state_dir / "logs", limit, s.log_check_interval))
        self.collector = Collector(s.state_dir, self.artifacts, self.store, self._lock, s.gc_grace)
        await self.collector.sweep_or_log()  # what a controller that died halfway through a delete left
        self._spawn(self.collector.run(s.gc_interval))
        if s.backend == "local":
            self._spawn(usage.run(s.state_dir, self._note_usage))
        self._spawn(self.releases.run())
        for record in self.store.all():  # versions whose gate a previous run left open
            for version in record.versions:
                if version.state == "Pending":
                    self._spawn(self.gate.check(record.name, version.version))
        log.info("controller started: %d functions, backend %s", len(self.store.all()), s.backend)

    async def stop(self, drain_replicas: bool = True) -> None:
        """`drain_replicas` False: leave the replicas to the next controller (a standby taking over)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if hasattr(self, "fleet"):
            if drain_replicas:
                log.info("stopping %d replicas", len(self.fleet.replicas))
                grace = max((r.timeout for r in self.fleet.replicas.values()), default=0) + 6
                await self.fleet.stop_all(timeout=self.settings.drain_delay + grace)
            self.fleet.cancel_tasks()
            await self.backend.close()
        if self._nc:
            await self._nc.leave()
        log.info("controller stopped")

    def _quota_keys(self) -> list[str]:
        return [key.id for key in self.api_keys.all() if key.quota is not None]

    def _note_usage(self, measured: dict[str, int]) -> None:
        self.state_bytes = measured
        for kind, size in measured.items():
            self.metrics.state_bytes.labels(kind).set(size)

    def _version(self, function: str, number: int) -> VersionRecord | None:
        record = self.store.get(function)
        return record.version(number) if record is not None else None

    # --- NATS ------------------------------------------------------------------------

    async def _nats_back(self) -> None:
        self.recovery.request()

    async def _publish(self, name: str) -> None:
        try:
            await self.routes.publish(name)
        except Exception:
            log.exception("could not publish the route table of %s", name)

    async def _on_activate(self, msg: Msg) -> None:
        # Subscription callbacks run one at a time: answer in a task so one slow start blocks no other.
        self._spawn(self._answer_activation(msg))

    async def _answer_activation(self, msg: Msg) -> None:
        try:
            reply = await self.activator.activate(ActivationRequest.from_json(msg.data))
        except Exception as e:
            log.exception("activation failed")
            reply = ActivationReply(ok=False, status=503, error="Fx.ControllerError", cause=str(e))
        with contextlib.suppress(Exception):
            await msg.respond(reply.to_json())

    async def _on_load(self, msg: Msg) -> None:
        try:
            self.load.observe(LoadReport.from_json(msg.data), time.monotonic())
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed load report: %r", msg.data[:200])

    def _spawn(self, coro) -> None:
        spawn(coro, self._tasks)

    # --- admin operations --------------------------------------------------------------

    def _live_specs(self) -> list[tuple[str, FunctionSpec]]:
        """(function, spec) of every live version: taking traffic, aliased or the latest."""
        return [(record.name, version.spec) for record in self.store.all() for version in live_versions(record)]

    async def _check_streams(self, name: str, spec: FunctionSpec) -> None:
        """A durable trigger needs its stream: refuse the deploy rather than leave a trigger that never fires."""
        js = self._nc.jetstream()  # type: ignore[union-attr]
        for n, trigger in enumerate(spec.triggers):
            if trigger.jetstream is not None:
                stream, where = trigger.jetstream.stream, f"triggers.{n}.jetstream.stream"
                subjects = shlex.quote(trigger.jetstream.subject or f"{stream.lower()}.>")
                what = f"stream {stream!r} does not exist; create it first: fx stream create {stream} {subjects}"
            elif trigger.kv is not None:
                bucket = trigger.kv.bucket
                stream, where = kv_stream(bucket), f"triggers.{n}.kv.bucket"
                what = f"KV bucket {bucket!r} does not exist; create it first: fx kv create {bucket}"
            else:
                continue
            try:
                await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                raise ApiError(400, "StreamNotFound", f"{where}: {what}", function=name, field=where) from None

    async def _refusals(self, name: str, spec: FunctionSpec, traffic: bool) -> None:
        """Raise the ApiError a deploy of `spec` meets before the lock (the secrets are checked under it)."""
        if spec.name != name:
            raise ApiError(
                400,
                "InvalidSpec",
                f"name: the spec names {spec.name!r} but the URL names {name!r}",
                function=name,
                field="name",
            )
        if spec.image is not None and not self.backend.runs_images:
            raise ApiError(
                400,
                "ImageNotSupported",
                f"image: this fx runs functions as local processes ({self.settings.backend} backend), which"
                " cannot run a container image; deploy the code as a zip (leave out 'image' and let fx deploy"
                " build it) or deploy to fx on Kubernetes",
                function=name,
                field="image",
            )
        if spec.image is None and spec.runtime not in self.backend.runtimes:
            raise ApiError(
                400,
                "RuntimeNotAvailable",
                f"runtime: {spec.runtime} is not available on this fx ({self.settings.backend} backend); it has"
                f" {', '.join(self.backend.runtimes)}. {self.backend.runtime_remedy(spec.runtime)}",
                function=name,
                field="runtime",
            )
        for field, digest in (("artifact", spec.artifact), ("dependencies", spec.dependencies)):
            if digest is not None and not await self.artifacts.exists(digest):
                raise ApiError(
                    400,
                    "ArtifactNotFound",
                    f"{field} {digest} has not been uploaded: upload it first (fx deploy does)",
                    function=name,
                    field=field,
                )
        await self._check_streams(name, spec)
        if not traffic and self.store.get(name) is None:
            raise ApiError(
                400,
                "FirstVersionNeedsTraffic",
                f"{name!r} does not exist yet: its first version takes all traffic; deploy it without --no-traffic",
                function=name,
            )

    async def validate(self, name: str, spec: FunctionSpec, traffic: bool = True) -> DeployResult:
        """The dry run of a deploy: every refusal it would meet, nothing applied; else what it would do."""
        await self._refusals(name, spec, traffic)
        self.secrets.check_refs(name, spec)
        record = self.store.get(name)
        if self._identical(record, spec):
            return self._unchanged(name, record).model_copy(update={"dry_run": True})
        number = record.latest.version + 1 if record else 1
        message = f"valid: would deploy {name} version {number}"
        return DeployResult(
            function=name, version=number, created=True, digest=spec.code, message=message, dry_run=True
        )

    @staticmethod
    def _identical(record: FunctionRecord | None, spec: FunctionSpec) -> bool:
        """A deploy of the latest version's spec changes nothing, unless that version failed to initialise:
        then the same spec gets a new try."""
        return record is not None and record.latest.spec == spec and record.latest.state != "Failed"

    def _unchanged(self, name: str, record: FunctionRecord) -> DeployResult:
        number = record.latest.version
        return DeployResult(
            function=name,
            version=number,
            created=False,
            digest=record.latest.digest,
            message=f"{name} unchanged: identical to version {number}",
            state=record.latest.state,
            init_error=record.latest.init_error,
            traffic=record.traffic,
        )

    async def deploy(self, name: str, spec: FunctionSpec, traffic: bool = True) -> DeployResult:
        """`traffic`: the new version takes all traffic; else it is started warm, reachable only when pinned."""
        try:
            await self._refusals(name, spec, traffic)
        except ApiError:
            self.metrics.deploys.labels("rejected").inc()
            raise
        async with self._lock:
            try:  # under the lock: no secret goes away between this check and the write
                self.secrets.check_refs(name, spec)
            except ApiError:
                self.metrics.deploys.labels("rejected").inc()
                raise
            record = self.store.get(name)
            if self._identical(record, spec):
                self.metrics.deploys.labels("unchanged").inc()
                return self._unchanged(name, record)
            number = record.latest.version + 1 if record else 1
            version = VersionRecord(
                version=number, digest=spec.code, created_at=datetime.now(UTC), spec=spec, state="Pending"
            )
            if record is None:  # nothing to fall back to: it routes at once, and calls wait for its init
                updated = FunctionRecord(name=name, versions=[version], traffic={number: 100})
            elif traffic:  # the traffic moves when the gate finds it ready
                updated = record.model_copy(update={"versions": [*record.versions, version], "awaiting": number})
            else:
                updated = record.model_copy(update={"versions": [*record.versions, version]})
                updated = self.releases.warm_new(updated, version)
            await self.store.put(updated)
            await self.routes.publish(name)
        self._spawn(self.gate.check(name, number))
        self.metrics.deploys.labels("created").inc()
        log.info("deployed %s version %d (%s), pending its init", name, number, spec.code)
        return DeployResult(
            function=name,
            version=number,
            created=True,
            digest=spec.code,
            message=f"created {name} version {number}: it takes "
            + ("traffic" if traffic else "no traffic (pin it to call it)")
            + " once a replica of it has initialised",
            state="Pending",
            traffic=updated.traffic,
        )

    async def delete(self, name: str) -> None:
        async with self._lock:
            if self.store.get(name) is None:
                raise not_found(name)
            self.apis.check_unused(name)
            record = self.store.forget(name)
            await self.routes.delete(name)  # gateways stop routing before any replica stops
            self.fleet.drop_templates(name)
            await self.fleet.stop_function(name)
            grace = max(v.spec.timeout for v in record.versions) + 6
            await self.fleet.wait_gone(name, timeout=grace)
            await self.store.delete(name)
            logs.remove(self.settings.state_dir, name)  # a new function of this name starts with its own
            await self.collector.release(
                d for v in record.versions for d in (v.spec.artifact, v.spec.dependencies) if d
            )
            self.load.forget(name)
            for version in record.versions:
                self.reconciler.forget(name, version.version)
        log.info("deleted %s", name)

    def describe(self, name: str) -> FunctionInfo:
        record = self.store.get(name)
        if record is None:
            raise not_found(name)
        return self._info(record)

    def list(self) -> list[FunctionInfo]:
        return [self._info(record) for record in self.store.all()]

    def version(self, name: str, qualifier: str) -> VersionInfo:
        """One version by number, alias or $LATEST; 404 VersionNotFound naming what is there."""
        info = self.describe(name)
        number = info.latest if qualifier == "$LATEST" else info.aliases.get(qualifier, qualifier)
        found = next((v for v in info.versions if str(v.version) == str(number)), None)
        if found is None:
            known = ", ".join(str(v.version) for v in info.versions)
            aliases = ", ".join(sorted(info.aliases)) or "none"
            raise ApiError(
                404,
                "VersionNotFound",
                f"{name!r} has no version or alias {qualifier!r} (versions: {known}; aliases: {aliases})",
                function=name,
            )
        return found

    def _info(self, record: FunctionRecord) -> FunctionInfo:
        now = datetime.now(UTC)
        versions = []
        for v in record.versions:
            totals = self.load.totals.get(load_report_key(record.name, v.version))
            hold = record.warm.get(v.version)
            traffic = record.traffic.get(v.version, 0)
            desired, panic = self.autoscaler.last(load_report_key(record.name, v.version))
            versions.append(
                VersionInfo(
                    version=v.version,
                    digest=v.digest,
                    config_digest=v.spec.config_digest,
                    created_at=v.created_at,
                    spec=v.spec,
                    state=v.state,
                    init_error=v.init_error,
                    traffic=traffic,
                    replicas_ready=self.fleet.count(record.name, v.version, "ready"),
                    replicas_starting=self.fleet.count(record.name, v.version, "starting"),
                    replicas_desired=desired,
                    panic=panic,
                    requests=totals.requests if totals else 0,
                    errors=totals.errors if totals else 0,
                    aliases=sorted(a for a, n in record.aliases.items() if n == v.version),
                    warm_until=hold.until if hold and hold.until > now and not traffic else None,
                )
            )
        return FunctionInfo(
            name=record.name,
            latest=record.latest.version,
            traffic=record.traffic,
            aliases=record.aliases,
            alias_traffic=record.alias_traffic,
            versions=versions,
            status=self._status(record),
            sticky=record.sticky,
            previous=record.history[-1] if record.history else None,
            rollout=record.rollout,
            last_rollout=record.last_rollout,
        )

    def status(self) -> PlatformStatus:
        s = self.settings
        admin = s.nats_auth_dir / ADMIN_CREDS if s.nats_auth_dir else None  # the embedded mode's, from fx up
        return PlatformStatus(
            version=metadata.version("fx-controller"),
            backend=s.backend,
            functions=len(self.store.all()),
            nats_url=s.nats_url,
            nats_creds=str(admin.resolve()) if admin and admin.is_file() else None,
            state_bytes=self.state_bytes,
        )

    def _status(self, record: FunctionRecord) -> str:
        serving = [v for v, pct in record.traffic.items() if pct > 0]
        for number in serving:
            version = record.version(number)
            if version and version.state == "Failed" and version.init_error:
                return f"Failed: {version.init_error.error_type}: {version.init_error.message}"
            if version and version.state == "Pending":
                return "Starting"
            failure = self.fleet.last_failure(record.name, number)
            if failure:
                return f"Failed: {failure.error_type}: {failure.message}"
        if any(self.fleet.count(record.name, number, "ready") for number in serving):
            return "Ready"
        return "Scaled to zero"
