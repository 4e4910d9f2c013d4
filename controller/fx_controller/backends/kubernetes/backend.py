"""The kubernetes backend: a replica is a pod, either specialised from the warm pool or of its version's Deployment.

- Warm pool (when the chart runs one and the function fits its pods' memory and grace): start_replica takes
  an idle pool pod, relabels it as the version's (its ReplicaSet lets it go and makes a new pool pod; the
  Function becomes its owner), leaves the replica environment for it on the artifact port and rings it; the
  pod fetches that environment from the controller (so only the controller can specialise it), runs the
  replica in its already-started runtime and answers when it is ready. No container start: ~the handler's
  import.
- Otherwise start_replica raises the version's Deployment scale by one and queues the replica; the pod
  watch hands the next ready pod of that version to the oldest queued replica (`ready`, endpoint = pod IP).
  A container that exits before it was ever ready is an init error.

stop_replica (the fleet has already unpublished the replica and waited its drain delay) deletes a pool
pod, or marks a Deployment pod with the lowest pod-deletion-cost and lowers the scale so the ReplicaSet
removes exactly that pod; the pods' preStop sleep covers gateways still holding the address; `exit` follows
when the pod is gone. No polling: everything after the API calls comes from the watch.

A pod that becomes a replica has its log copied into the function's log file (pod_logs), for `fx logs`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import httpx
from fx.nats_auth import Signer
from fx.protocol import REPLICA_HEALTH_PATH

from ...settings import Settings
from ...state.artifacts import Artifacts
from ...tasks import spawn
from ..base import EventSink, ReplicaEvent, ReplicaSpec, SecretMirror, StoreSource, init_error_event
from . import kube, manifests, nats_identities
from .admission import WebhookServer
from .artifact_server import ArtifactServer
from .config import KubeConfig
from .functions import FunctionSync
from .pod_access import PodAccess
from .pod_logs import PodLogs
from .pods import PodState
from .records import StoreFromResources
from .secrets import KubeSecrets

log = logging.getLogger("fx_controller.kubernetes")

Key = tuple[str, int]  # (function, version)
DRAINED_COST = -1000
RING_ATTEMPTS, RING_INTERVAL_S = 250, 0.02  # 5 s for a pool pod's runtime to listen
# A Deployment pod is asked for its health from the moment its container runs, at these intervals (doubling), so
# its replica is ready when the runtime is, not at the kubelet's next readiness probe (every second).
PROBE_FIRST_S, PROBE_MAX_S, PROBE_TIMEOUT_S = 0.01, 0.05, 1.0
# A new pod's NetworkPolicy may drop the first connections to it, as it does those from it (fx_runtime.artifact): a
# dropped SYN would hold a probe for the kernel's 1 s retransmission, so a probe not connected in time is given up.
PROBE_CONNECT_S = 0.1
RESIZE_WAIT_S = 10.0  # for the kubelet to take a pool pod's in-place resize; then the Deployment instead
# (pod IP, replica env, files for the pod's /tmp) -> the runtime's event
Specialize = Callable[[str, dict[str, str], dict[str, str]], Awaitable[dict]]
Probe = Callable[[str], Awaitable[bool]]  # pod IP -> whether its replica answers its health check


class Api(Protocol):
    """What the backend uses of kube.KubeApi (a fake in the unit tests)."""

    cfg: KubeConfig

    async def get_function(self, name: str) -> dict | None: ...
    async def create_function(self, body: dict) -> dict: ...
    async def create_deployment(self, body: dict) -> None: ...
    async def scale(self, name: str, replicas: int) -> None: ...
    async def deployments(self) -> dict[str, int]: ...
    async def set_deletion_cost(self, pod: str, cost: int) -> None: ...
    async def claim_pod(self, pod: str, patch: dict) -> None: ...
    async def resize_pod(self, pod: str, memory: int) -> None: ...
    async def delete_pod(self, pod: str, grace: int | None = None) -> None: ...
    async def standalone_pods(self) -> list[str]: ...
    async def read_secret(self, name: str) -> dict[str, str] | None: ...
    async def create_secret(self, body: dict) -> bool: ...
    def watch_pods(self, on_event) -> None: ...
    def close(self) -> None: ...


class Companion(Protocol):
    """Runs beside the backend: the artifact server, the Function resource sync."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class HttpSpecialize:
    """Leave the replica environment for the pool pod to fetch (once, by its address), then ring it: POST
    /_fx/specialize, which carries nothing the pod trusts. It answers once the replica is ready or failed.
    One HTTP client for every pool pod: making one costs ~20 ms of CPU (its TLS context), on the cold start path."""

    def __init__(self, access: PodAccess, timeout: float) -> None:
        self._access = access
        self._http = httpx.AsyncClient(timeout=timeout)

    async def __call__(self, ip: str, env: dict[str, str], files: dict[str, str]) -> dict:
        url = f"http://{ip}:{manifests.PORT}/_fx/specialize"
        self._access.assign(ip, env, files)
        try:
            for attempt in range(RING_ATTEMPTS):  # a pool pod's runtime may still be importing: refused a moment
                try:
                    answer = await self._http.post(url)
                    if answer.status_code in (200, 500):
                        return answer.json()
                    raise RuntimeError(f"answered {answer.status_code}: {answer.text[:200]}")
                except httpx.ConnectError:
                    if attempt == RING_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(RING_INTERVAL_S)
        finally:
            self._access.finish(ip)
        raise AssertionError("unreachable")

    async def probe(self, ip: str) -> bool:
        """Whether the replica at `ip` answers its health check (what the pods' readiness probe asks)."""
        try:
            url = f"http://{ip}:{manifests.PORT}{REPLICA_HEALTH_PATH}"
            answer = await self._http.get(url, timeout=httpx.Timeout(PROBE_TIMEOUT_S, connect=PROBE_CONNECT_S))
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    async def aclose(self) -> None:
        await self._http.aclose()


class KubernetesBackend:
    runs_images = True
    secret_mirror: SecretMirror | None = None  # create() sets the Secrets a version's Deployment takes them from
    store_source: StoreSource | None = None  # create() sets the Function resources the records are mirrored into

    @property
    def runtimes(self) -> dict[str, str]:
        return self._cfg.images

    def runtime_remedy(self, runtime: str) -> str:
        version = runtime.removeprefix("python")
        return (
            f"Build its image (runtime-images/Dockerfile with --build-arg PYTHON_VERSION={version}) and map it with"
            f" the chart value runtimeImages.{runtime} (the controller's FX_K8S_RUNTIME_IMAGES)"
        )

    def __init__(
        self,
        api: Api,
        companions: tuple[Companion, ...] = (),
        on_replicas: Callable[[str], None] = lambda function: None,
        specialize: Specialize | None = None,
        probe: Probe | None = None,
        logs: PodLogs | None = None,
        access: PodAccess | None = None,
        signer: Signer | None = None,
        init_timeout: float = 60.0,
    ) -> None:
        self._api = api
        self._cfg = api.cfg
        self._companions = companions
        self._on_replicas = on_replicas  # a function's ready replicas changed (its Function status follows)
        # Told of every pod event: code and pool assignments are handed out by pod address (the artifact server).
        self._access = access or PodAccess()
        self._http = HttpSpecialize(self._access, init_timeout)
        self._specialize = specialize or self._http
        self._probe = probe or self._http.probe
        self._signer = signer  # mints granted versions' NATS users; None: NATS without authorization
        self._logs = logs
        self._on_event: EventSink = lambda _: None
        self._keys: dict[str, Key] = {}  # replica id -> version, for every replica not yet exited
        self._began: dict[str, float] = {}  # replica id -> when it was asked for (monotonic), until it is ready
        self._pending: dict[Key, deque[str]] = defaultdict(deque)  # replicas waiting for a Deployment pod
        self._pod_of: dict[str, str] = {}  # replica id -> pod name
        self._replica_of: dict[str, str] = {}  # pod name -> replica id
        self._pods: dict[str, PodState] = {}  # the latest state of every function pod seen
        self._idle: dict[str, PodState] = {}  # ready pool pods nobody claimed
        self._standalone: set[str] = set()  # pods taken from the pool: no Deployment scales them
        self._specializing: set[str] = set()  # replicas whose pool pod is loading their code
        self._probing: set[str] = set()  # Deployment pods whose health the controller asks until they answer
        self._kube_ready: set[str] = set()  # pods the kubelet has reported Ready (a later not-Ready: gone bad)
        self._pod_changed = asyncio.Event()  # set (and replaced) on every pod event
        self._stopping: set[str] = set()  # replicas whose pod is being removed
        self._desired: dict[Key, int] = defaultdict(int)
        self._made: set[tuple[str, str]] = set()  # (Deployment, owner uid) this process made or gave its template
        self._locks: dict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task] = set()

    async def open(self, on_event: EventSink) -> None:
        self._on_event = on_event
        for companion in self._companions:
            await companion.start()
        # The fleet of a new controller starts empty: pods of a previous run are not its replicas. Remove
        # them (idempotent, so a controller killed mid-reconcile converges) and let demand start anew. All at
        # once: a failover waits for this.
        removals = []
        for name, replicas in (await self._api.deployments()).items():
            if replicas:
                log.info("scaling %s from %d to 0: a previous controller's replicas", name, replicas)
                removals.append(self._api.scale(name, 0))
        for pod in await self._api.standalone_pods():
            log.info("deleting pod %s: a previous controller's replica from the pool", pod)
            removals.append(self._api.delete_pod(pod))
        await asyncio.gather(*removals)
        self._api.watch_pods(self._on_pod)

    async def start_replica(self, replica: ReplicaSpec) -> None:
        key = (replica.function, replica.version)
        pool_pod = self._take_idle() if manifests.fits_pool(self._cfg, replica.spec) else None
        self._keys[replica.id] = key
        self._began[replica.id] = time.monotonic()
        if pool_pod is None:
            async with self._locks[key]:
                await self._start_in_deployment(replica, await self._owner(replica))
            return
        self._assign(replica.id, pool_pod)
        self._standalone.add(pool_pod.name)
        self._specializing.add(replica.id)
        self._spawn(self._start_in_pool(replica, pool_pod))

    async def _owner(self, replica: ReplicaSpec) -> str:
        """The uid of the replica's Function, made if missing. Looked up on every start: a Function deleted and
        made again has a new uid to own things by."""
        function = await self._api.get_function(replica.function) or await self._api.create_function(
            manifests.function_resource(self._cfg, replica.spec)
        )
        return function["metadata"]["uid"]

    async def _start_in_deployment(self, replica: ReplicaSpec, owner: str) -> None:
        key = (replica.function, replica.version)
        body = manifests.deployment(self._cfg, *key, replica.digest, replica.spec, owner, replica.token)
        if replica.spec.nats is not None and self._signer is not None:  # the user its pods mount, made once
            await nats_identities.ensure_function_secret(self._api, self._signer, *key, replica.spec, owner)
        made = (body["metadata"]["name"], owner)
        fresh = made not in self._made  # once per version and Function: its template changes only with this process
        if fresh:
            await self._api.create_deployment(body)  # made once; an existing one takes today's template
            self._made.add(made)
        self._pending[key].append(replica.id)
        self._desired[key] += 1
        try:
            await self._scale(key)
        except Exception:
            if fresh:
                raise
            log.warning("scaling %s failed: making it again (deleted by someone else?)", body["metadata"]["name"])
            await self._api.create_deployment(body)
            await self._scale(key)

    async def _claim_pool_pod(self, replica: ReplicaSpec, pod: PodState) -> None:
        """The pool pod becomes the version's: out of the pool's ReplicaSet, owned by the Function."""
        key = (replica.function, replica.version)
        patch = manifests.claim_patch(self._cfg, *key, replica.digest, replica.spec, await self._owner(replica))
        await self._api.claim_pod(pod.name, patch)
        self._follow_log(pod.name, replica.function)  # from here on the pod's output is the function's

    async def _resize_and_ring(self, pod: PodState, memory: int, env: dict[str, str], files: dict[str, str]) -> dict:
        """A function bigger than the pool's pods gets its memory first: the pod is rung once the kubelet has
        taken the resize (it writes the cgroup limit as it does, before the code is even fetched)."""
        if memory > self._cfg.pool_memory:
            await self._api.resize_pod(pod.name, memory)
            await self._resized(pod.name, memory)
        return await self._specialize(pod.ip, env, files)

    async def _shrink(self, name: str, memory: int) -> None:
        """A function smaller than the pool's pods gets its own memory limit, as in a pod of its Deployment. Asked
        once its replica is ready and not waited for: asked with the claim, it wrote the same pod at the same time
        (warm pool p50 37-71 -> 89 ms in the e2e tier); waited for, it would add the kubelet's tens of ms to every
        cold start from the pool. The kubelet defers a limit below what the pod already uses."""
        try:
            await self._api.resize_pod(name, memory)
        except Exception as e:  # the pod gone meanwhile, or a cluster without in-place resize
            log.warning("pool pod %s keeps the pool's memory limit, not the function's %d MiB: %s", name, memory, e)

    async def _resized(self, name: str, memory: int) -> None:
        deadline = time.monotonic() + RESIZE_WAIT_S
        while True:
            pod = self._pods.get(name)
            if pod is None or pod.deleting:
                raise RuntimeError("the pod went away")
            if pod.resize.startswith("pending"):
                raise RuntimeError(f"the kubelet cannot resize it to {memory} MiB ({pod.resize})")
            if pod.resize == "in progress" or pod.memory >= memory:
                return
            changed = self._pod_changed
            try:
                await asyncio.wait_for(changed.wait(), deadline - time.monotonic())
            except TimeoutError:
                raise RuntimeError(f"the kubelet did not resize it to {memory} MiB in {RESIZE_WAIT_S:.0f} s") from None

    async def _start_in_pool(self, replica: ReplicaSpec, pod: PodState) -> None:
        key = (replica.function, replica.version)
        spec, creds = replica.spec, manifests.POOL_NATS_CREDS
        listed = manifests.replica_env(self._cfg, *key, replica.digest, spec, creds, replica.token)
        env = {e["name"]: e["value"] for e in listed}
        env.update(replica.secret_env)  # a pool pod has no envFrom: the values come with its specialization
        files = {}  # no Secret volume either: a granted version's NATS user comes in the assignment
        if spec.nats is not None and self._signer is not None:
            files[creds] = nats_identities.function_creds(self._signer, *key, spec)
        # The claim (two API calls) and the code's loading overlap: only the controller can ring the pod, and its
        # replica is reported ready (reachable through the gateway) once both are done.
        claimed, answer = await asyncio.gather(
            self._claim_pool_pod(replica, pod),
            self._resize_and_ring(pod, spec.memory, env, files),
            return_exceptions=True,
        )
        failure = claimed if isinstance(claimed, BaseException) else answer
        if isinstance(failure, BaseException):  # the pod is of no use: drop it, start the replica the slow way
            log.warning(
                "pool pod %s could not become replica %s (%s): using the Deployment", pod.name, replica.id, failure
            )
            self._release(replica.id)
            self._spawn(self._api.delete_pod(pod.name))
            if replica.id in self._keys:
                async with self._locks[key]:
                    await self._start_in_deployment(replica, await self._owner(replica))
            return
        assert isinstance(answer, dict)
        if self._pod_of.get(replica.id) != pod.name:
            return  # stopped or gone meanwhile: that path reported the exit and removes the pod
        self._specializing.discard(replica.id)
        if answer.get("event") == "ready":
            log.info("replica %s is pool pod %s at %s%s", replica.id, pod.name, pod.endpoint, self._took(replica.id))
            if spec.memory < self._cfg.pool_memory and self._cfg.pool_resize:
                self._spawn(self._shrink(pod.name, spec.memory))
            self._on_event(ReplicaEvent(replica.id, "ready", endpoint=pod.endpoint, init_ms=answer.get("init_ms")))
            self._on_replicas(key[0])
        else:
            self._on_event(init_error_event(replica.id, answer))
            self._exited(replica.id, 1)
            self._spawn(self._api.delete_pod(pod.name))

    async def stop_replica(self, replica_id: str, grace: float) -> None:
        """`grace` is the pod's terminationGracePeriodSeconds here, set from the function timeout."""
        key = self._keys.get(replica_id)
        if key is None or replica_id in self._stopping:
            return
        async with self._locks[key]:
            pod = self._pod_of.get(replica_id)
            if pod is None:  # no pod yet: one fewer to make; the ReplicaSet drops a not-ready pod first
                self._pending[key].remove(replica_id)
                self._forget(replica_id)
                self._desired[key] -= 1
                await self._scale(key)
                self._on_event(ReplicaEvent(replica_id, "exit"))
                return
            if self._pending[key] and replica_id not in self._specializing:
                # A replica of this version waits for a pod: it gets this ready one. (Scaling down instead would
                # remove the waiting replica's not-yet-ready pod, as the ReplicaSet prefers those to any cost.)
                self._exited(replica_id, None)
                self._desired[key] -= 1
                self._claim(key, self._pods[pod])
                await self._scale(key)
                return
            self._stopping.add(replica_id)
            if pod in self._standalone:
                await self._api.delete_pod(pod)
                return
            await self._api.set_deletion_cost(pod, DRAINED_COST)
            self._desired[key] -= 1
            await self._scale(key)

    async def close(self) -> None:
        self._api.close()
        for task in list(self._tasks):
            task.cancel()
        await self._http.aclose()
        for companion in reversed(self._companions):
            await companion.stop()

    def ready_count(self, function: str) -> int:
        return sum(
            1
            for replica_id in self._pod_of
            if replica_id not in self._stopping
            and replica_id not in self._specializing
            and self._keys[replica_id][0] == function
        )

    # --- the pod watch ------------------------------------------------------------------

    def _on_pod(self, kind: str, pod: PodState) -> None:
        self._access.observe(kind, pod)
        gone = kind == "DELETED"
        if gone:
            self._pods.pop(pod.name, None)
            self._standalone.discard(pod.name)
            self._kube_ready.discard(pod.name)
        else:
            self._pods[pod.name] = pod
        was_ready = pod.name in self._kube_ready
        self._pod_changed.set()
        self._pod_changed = asyncio.Event()
        if pod.ready and not gone:
            self._kube_ready.add(pod.name)
        if pod.pool:
            if not gone and pod.ready and pod.ip and not pod.deleting and pod.name not in self._replica_of:
                self._idle[pod.name] = pod
            else:
                self._idle.pop(pod.name, None)
            return
        key = (pod.function, pod.version)
        replica_id = self._replica_of.get(pod.name)
        if replica_id is None:
            if not gone and not pod.deleting and self._pending.get(key) and pod.name not in self._standalone:
                if pod.ready and pod.ip:
                    self._claim(key, pod)
                elif pod.init_error:
                    self._init_failed(key, pod)
                elif pod.running and pod.ip and pod.name not in self._probing:
                    self._probing.add(pod.name)
                    self._spawn(self._probe_until_ready(key, pod.name))
            return
        if replica_id in self._stopping:
            if gone:
                self._exited(replica_id, None)
            return
        # Not asked for: deleted by someone else, evicted, the container crashed, or it lost readiness. (A pod
        # taken when it answered the controller's probe is not Ready for the kubelet until its own probe.)
        if gone or pod.deleting or not pod.running or (was_ready and not pod.ready):
            log.warning("pod %s of replica %s went away (%s)", pod.name, replica_id, kind)
            self._exited(replica_id, pod.init_error[2] if pod.init_error else None)
            if pod.name in self._standalone:
                if not gone:
                    self._spawn(self._api.delete_pod(pod.name))
            else:
                self._desired[key] -= 1
                self._spawn(self._scale_locked(key))

    async def _probe_until_ready(self, key: Key, name: str) -> None:
        """Ask a running Deployment pod's replica for its health until it answers, then hand the pod to the oldest
        replica waiting, as the kubelet's Ready would a little later; stops once the pod is taken, not wanted, or
        gone."""
        interval = PROBE_FIRST_S
        try:
            while self._wants_probed(key, name):
                if await self._probe(self._pods[name].ip):
                    if self._wants_probed(key, name):  # the watch may have moved on while the probe waited
                        self._claim(key, self._pods[name])
                    return
                await asyncio.sleep(interval)
                interval = min(interval * 2, PROBE_MAX_S)
        finally:
            self._probing.discard(name)

    def _wants_probed(self, key: Key, name: str) -> bool:
        pod = self._pods.get(name)
        alive = pod is not None and pod.running and not pod.deleting
        return alive and name not in self._replica_of and bool(self._pending.get(key))

    def _follow_log(self, pod: str, function: str) -> None:
        if self._logs:
            self._logs.follow(pod, function)

    def _take_idle(self) -> PodState | None:
        if not self._idle:
            return None
        name = next(iter(self._idle))
        return self._idle.pop(name)

    def _assign(self, replica_id: str, pod: PodState) -> None:
        self._pod_of[replica_id] = pod.name
        self._replica_of[pod.name] = replica_id

    def _claim(self, key: Key, pod: PodState) -> None:
        replica_id = self._pending[key].popleft()
        self._assign(replica_id, pod)
        log.info("replica %s is pod %s at %s%s", replica_id, pod.name, pod.endpoint, self._took(replica_id))
        self._follow_log(pod.name, key[0])
        self._on_event(ReplicaEvent(replica_id, "ready", endpoint=pod.endpoint))
        self._on_replicas(key[0])

    def _took(self, replica_id: str) -> str:
        """How long the replica's start took, for the log (where a cold start's time goes)."""
        began = self._began.pop(replica_id, None)
        return "" if began is None else f" ({(time.monotonic() - began) * 1000:.0f} ms after it was asked for)"

    def _init_failed(self, key: Key, pod: PodState) -> None:
        assert pod.init_error
        error_type, message, code = pod.init_error
        replica_id = self._pending[key].popleft()
        if self._logs:  # the crashed container's output goes with its pod: keep what matters of it
            self._logs.note(key[0], f"[ERROR] {error_type}: {message} (pod {pod.name}, exit code {code})")
        self._on_event(
            ReplicaEvent(
                replica_id, "init_error", error_type=error_type, error_message=message, stack_trace=pod.init_trace
            )
        )
        # The crash-looping pod goes with its replica: the fleet decides when to try again.
        self._desired[key] -= 1
        self._exited(replica_id, code)
        self._spawn(self._scale_locked(key))

    def _exited(self, replica_id: str, code: int | None) -> None:
        key = self._keys.get(replica_id)
        self._forget(replica_id)
        self._on_event(ReplicaEvent(replica_id, "exit", exit_code=code))
        if key:
            self._on_replicas(key[0])

    def _release(self, replica_id: str) -> None:
        """Unbind a replica from its pod, keeping the replica."""
        self._specializing.discard(replica_id)
        pod = self._pod_of.pop(replica_id, None)
        if pod is not None:
            self._replica_of.pop(pod, None)

    def _forget(self, replica_id: str) -> None:
        self._release(replica_id)
        self._keys.pop(replica_id, None)
        self._began.pop(replica_id, None)
        self._stopping.discard(replica_id)

    # --- scale ------------------------------------------------------------------------------

    async def _scale(self, key: Key) -> None:
        await self._api.scale(manifests.deployment_name(*key), max(0, self._desired[key]))

    async def _scale_locked(self, key: Key) -> None:
        async with self._locks[key]:
            await self._scale(key)

    def _spawn(self, coro) -> None:
        spawn(coro, self._tasks)


async def prepare_nats(settings: Settings) -> None:
    """Before the controller connects to NATS (a standby does it while it waits): when the chart runs NATS with
    authorization, the NATS identities (made once, race-free) and this controller's own user, into its settings."""
    cfg = KubeConfig.from_env()
    if cfg.nats_auth_secret:
        kube.load_client_config()
        api = kube.KubeApi(cfg)
        settings.nats_creds, settings.nats_auth_dir = await nats_identities.prepare_platform(api, settings.state_dir)
        await nats_identities.prepare_replica_token_key(api, settings.state_dir)


def _admin_client(settings: Settings, timeout: float) -> httpx.AsyncClient:
    """This controller's own admin API, with the admin token (as `fx` calls it)."""
    headers = {"Authorization": f"Bearer {settings.token}"}
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}", headers=headers, timeout=timeout)


def create(settings: Settings, artifacts: Artifacts) -> KubernetesBackend:
    """The backend as the controller runs it in a cluster (the chart sets the FX_K8S_* variables)."""
    cfg = KubeConfig.from_env()
    kube.load_client_config()
    api = kube.KubeApi(cfg)
    sync = FunctionSync(api, settings.nats_url, _admin_client(settings, 60), settings.nats_creds)
    access = PodAccess()
    companions: tuple[Companion, ...] = (ArtifactServer(artifacts, cfg.artifact_listen, access), sync)
    if cfg.webhook_cert_dir:  # within the API server's webhook timeout (10 s)
        webhook = WebhookServer(_admin_client(settings, 8), cfg.webhook_listen, Path(cfg.webhook_cert_dir), access)
        companions += (webhook,)
    signer = Signer.load(settings.nats_auth_dir) if settings.nats_auth_dir else None
    backend = KubernetesBackend(
        api,
        companions=companions,
        on_replicas=sync.replicas_changed,
        init_timeout=settings.init_timeout,
        logs=PodLogs(api, settings.state_dir / "logs"),
        access=access,
        signer=signer,
    )
    sync.ready_count = backend.ready_count
    sync.artifact_exists = artifacts.exists
    backend.secret_mirror = KubeSecrets(api)
    backend.store_source = StoreFromResources(api)
    return backend
