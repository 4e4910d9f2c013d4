"""Leader election on a coordination.k8s.io Lease, so two controller replicas never act at once.

The leader renews the Lease every `lease_renew` s; a standby checks it every `lease_retry` s and takes it over
only when it has not been renewed for `lease_duration` s. Every write carries the resourceVersion it read, so
of two candidates racing for an expired Lease exactly one wins (the other gets 409 Conflict).

Every controller pod is Ready (a standby answers its health check), so the Services reach only the leader by
a label it puts on its own pod once it serves (LEADER_LABEL) and takes off the pod it took over from (which
may live on: a controller that lost the Lease exits, and its container restarts in the same pod). The Lease is
owned by the controller Deployment, so `helm uninstall` removes it with the Deployment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .config import KubeConfig

log = logging.getLogger("fx_controller.leader")

LEADER_LABEL = "fx.dev/leader"


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElection:
    def __init__(self, cfg: KubeConfig, api: client.CoordinationV1Api | None = None, clock=_now) -> None:
        self._cfg = cfg
        self._api = api or client.CoordinationV1Api()
        self._clock = clock
        # Its own thread: a renewal never waits behind the other API calls (asyncio.to_thread's shared pool),
        # and each call is bounded, so a leader whose API server stalls finds out within the lease.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="fx-lease")
        self._timeout = max(cfg.lease_renew, cfg.lease_duration / 2)
        self.identity = cfg.pod_name
        self.previous: str | None = None  # the holder this process took the Lease over from
        self.owners: list[client.V1OwnerReference] | None = None  # the Lease's, once known (owner_references)

    def try_acquire(self) -> bool:
        """One attempt (blocking): True if this process holds the Lease afterwards."""
        cfg, now = self._cfg, self._clock()
        try:
            lease = self._api.read_namespaced_lease(cfg.lease, cfg.namespace, _request_timeout=self._timeout)
        except ApiException as e:
            if e.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=cfg.lease, namespace=cfg.namespace, owner_references=self.owners),
                spec=self._spec(now, now, 0),
            )
            try:
                self._api.create_namespaced_lease(cfg.namespace, body, _request_timeout=self._timeout)
            except ApiException as e:
                if e.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or renewed + timedelta(seconds=spec.lease_duration_seconds or 0) < now
        if holder and holder != self.identity and not expired:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        acquired = spec.acquire_time if holder == self.identity else now
        lease.spec = self._spec(acquired, now, transitions)
        if self.owners and not lease.metadata.owner_references:  # a Lease an older chart's controller made
            lease.metadata.owner_references = self.owners
        try:
            # carries the resourceVersion read
            self._api.replace_namespaced_lease(cfg.lease, cfg.namespace, lease, _request_timeout=self._timeout)
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        if holder != self.identity:
            self.previous = holder
        return True

    def release(self) -> None:
        """Give the Lease up (blocking), so the next controller need not wait for it to expire."""
        cfg = self._cfg
        lease = self._api.read_namespaced_lease(cfg.lease, cfg.namespace)
        if lease.spec.holder_identity == self.identity:
            lease.spec.holder_identity = None
            lease.spec.renew_time = None
            self._api.replace_namespaced_lease(cfg.lease, cfg.namespace, lease)

    def _spec(self, acquired: datetime, renewed: datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=int(self._cfg.lease_duration),
            acquire_time=acquired,
            renew_time=renewed,
            lease_transitions=transitions,
        )

    async def acquire(self) -> None:
        """Wait until this process is the leader."""
        logged = False
        while not await self._attempt():
            if not logged:
                log.info("standby: waiting for the lease %s (another controller leads)", self._cfg.lease)
                logged = True
            await asyncio.sleep(self._cfg.lease_retry)
        log.info("leading as %s (lease %s, taken over from %s)", self.identity, self._cfg.lease, self.previous)

    async def hold(self, on_lost: Callable[[], None]) -> None:
        """Renew until cancelled; call `on_lost` once the lease could not be renewed within its duration."""
        clock = asyncio.get_running_loop().time
        last = clock()
        while True:
            await asyncio.sleep(self._cfg.lease_renew)
            tried = clock()  # a renewal counts from when it was sent: the others see the time it wrote
            if await self._attempt():
                last = tried
            elif clock() - last > self._cfg.lease_duration:
                log.error("lost the lease %s", self._cfg.lease)
                on_lost()
                return

    async def _attempt(self) -> bool:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self.try_acquire)
        except Exception as e:  # API server away: not leading this round
            log.warning("lease %s: %s", self._cfg.lease, e)
            return False


def owner_references(cfg: KubeConfig, apps: client.AppsV1Api) -> list[client.V1OwnerReference] | None:
    """The controller Deployment as the Lease's owner (None when not named, or not readable)."""
    if not cfg.controller_deployment:
        return None
    try:
        found = apps.read_namespaced_deployment(cfg.controller_deployment, cfg.namespace)
    except ApiException as e:
        log.warning("Deployment %s not readable (%s): the Lease gets no owner", cfg.controller_deployment, e.reason)
        return None
    return [
        client.V1OwnerReference(
            api_version="apps/v1", kind="Deployment", name=found.metadata.name, uid=found.metadata.uid
        )
    ]


def label_pod(core: client.CoreV1Api, cfg: KubeConfig, pod: str, leading: bool) -> None:
    """Put LEADER_LABEL on `pod` or take it off (a pod that is gone has nothing to take off)."""
    patch = {"metadata": {"labels": {LEADER_LABEL: "true" if leading else None}}}
    try:
        core.patch_namespaced_pod(pod, cfg.namespace, patch)
    except ApiException as e:
        if e.status != 404:
            raise


async def lead(on_lost: Callable[[], None]) -> Leadership:
    """Wait to lead (KubeConfig from the environment); the Lease is renewed until Leadership.end()."""
    from .kube import load_client_config

    load_client_config()
    cfg = KubeConfig.from_env()
    core = client.CoreV1Api()
    # A container restarted in the pod that led (it lost the Lease) must not keep the Services' traffic.
    await asyncio.to_thread(label_pod, core, cfg, cfg.pod_name, False)
    election = LeaderElection(cfg)
    election.owners = await asyncio.to_thread(owner_references, cfg, client.AppsV1Api())
    await election.acquire()
    return Leadership(cfg, election, asyncio.create_task(election.hold(on_lost)), core)


class Leadership:
    def __init__(self, cfg: KubeConfig, election: LeaderElection, renewing: asyncio.Task, core: client.CoreV1Api):
        self._cfg = cfg
        self._election = election
        self._renewing = renewing
        self._core = core

    async def serve(self) -> None:
        """The controller serves: the Services now route to this pod, no longer to the one that led before."""
        await asyncio.to_thread(label_pod, self._core, self._cfg, self._election.identity, True)
        previous = self._election.previous
        if previous and previous != self._election.identity:
            await asyncio.to_thread(label_pod, self._core, self._cfg, previous, False)

    async def end(self) -> None:
        self._renewing.cancel()
        try:
            await asyncio.to_thread(self._election.release)
        except Exception as e:  # it expires on its own
            log.warning("could not release the lease: %s", e)
