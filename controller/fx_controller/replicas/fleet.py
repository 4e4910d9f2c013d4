"""The replicas the controller has asked for, their states, and the rules for starting and stopping them.

Backend-independent: it speaks to a Backend and hears back ReplicaEvents. A replica is
`starting` until it reports ready, `ready` while it is in the route table, `draining`
once it has been taken out of routing and is being stopped.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from fx.models import FunctionSpec

from ..backends.base import Adopting, Backend, ReplicaEvent, ReplicaSpec, Templating, token_digest
from ..metrics import Metrics
from ..state.store import VersionRecord
from ..tasks import spawn
from .tokens import ReplicaTokens

log = logging.getLogger("fx_controller.replicas.fleet")

Key = tuple[str, int]  # (function, version)
CRASH_MEMORY_S = 60.0  # crashes older than this no longer slow down replacements
MAX_BACKOFF_S = 30.0
TABLE_AFTER_READY_S = 0.01  # a ready replica's route table waits this long after the activation replies


@dataclass
class Failure:
    at: float
    error_type: str
    message: str
    stack_trace: tuple[str, ...] = ()


class StartFailed(Exception):
    def __init__(self, error_type: str, message: str, stack_trace: tuple[str, ...] = ()) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace


@dataclass
class Replica:
    id: str
    function: str
    version: int
    timeout: float  # the function timeout: how long a SIGTERMed replica may take to finish
    asked_at: float
    state: str = "starting"  # starting | ready | draining
    endpoint: str = ""
    init_error: Failure | None = None
    timed_out: bool = False
    queued_s: float | None = None  # a cold start's: how long its callers waited before it was asked for


PHASES = ("queueing", "spawn", "init")  # of a cold start (fx_controller_cold_start_phase_seconds)


class Fleet:
    def __init__(
        self,
        backend: Backend,
        metrics: Metrics,
        on_change: Callable[[str], Awaitable[None]],
        *,
        drain_delay: float = 1.0,
        init_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        secret_env: Callable[[FunctionSpec], dict[str, str]] = lambda spec: {},
        tokens: ReplicaTokens | None = None,
        version_of: Callable[[str, int], VersionRecord | None] = lambda function, version: None,
    ) -> None:
        self._backend = backend
        self._version_of = version_of  # a claimed replica's version (a replica of no version is stopped)
        self._standbys: dict[Key, str] = {}  # a version's next replica, prepared: a caller may claim it (local)
        self._tokens = tokens  # None: replicas are started without a token, and check none
        self._secret_env = secret_env  # a version's secret values, read at each start; StartFailed if gone
        self._metrics = metrics
        self._on_change = on_change  # publishes the function's route table
        self._drain_delay = drain_delay
        self._init_timeout = init_timeout
        self._clock = clock
        self._replicas: dict[str, Replica] = {}
        self.replicas: Mapping[str, Replica] = MappingProxyType(self._replicas)  # changed by _add and _forget only
        # function -> version -> its replicas (by id, in start order): the reconciler asks for each version's at
        # every tick, and a scan of every replica per version made that O(n²) at n functions.
        self._index: dict[str, dict[int, dict[str, Replica]]] = {}
        self._waiters: dict[Key, list[asyncio.Future[list[str]]]] = defaultdict(list)
        self._failures: dict[Key, Failure] = {}
        self._crashes: dict[Key, deque[float]] = defaultdict(deque)
        self._tasks: set[asyncio.Task] = set()
        self._exited = asyncio.Event()

    # --- queries ------------------------------------------------------------------

    def of(self, function: str, version: int | None = None) -> list[Replica]:
        versions = self._index.get(function)
        if versions is None:
            return []
        if version is not None:
            return list(versions.get(version, {}).values())
        return [r for replicas in versions.values() for r in replicas.values()]

    def endpoints(self, function: str, version: int) -> list[str]:
        return sorted(r.endpoint for r in self.of(function, version) if r.state == "ready")

    def standby(self, function: str, version: int) -> str:
        """Where the version's standby serves (a prepared spare of its template), "" if it has none now."""
        return self._standbys.get((function, version), "")

    def token(self, function: str, version: int) -> str:
        """The replica token of a version: what its replicas are given and the gateway shows them."""
        return self._tokens.token(function, version) if self._tokens is not None else ""

    def count(self, function: str, version: int, state: str) -> int:
        return sum(1 for r in self.of(function, version) if r.state == state)

    def last_failure(self, function: str, version: int) -> Failure | None:
        """The latest start failure of this version, cleared when one of its replicas becomes ready."""
        return self._failures.get((function, version))

    def retry_at(self, function: str, version: int) -> float:
        """When the autoscaler may start this version again after crashes (exponential backoff)."""
        crashes = self._crashes.get((function, version))
        if not crashes:
            return 0.0
        while crashes and crashes[0] < self._clock() - CRASH_MEMORY_S:
            crashes.popleft()
        if not crashes:
            return 0.0
        return crashes[-1] + min(MAX_BACKOFF_S, 2.0 ** (len(crashes) - 1))

    # --- starting -------------------------------------------------------------------

    async def start(
        self, function: str, version: VersionRecord, queued_since: float | None = None, held: int = 0
    ) -> Replica:
        """`queued_since`: a cold start's, when its callers began to wait (on this clock); `held`: how many wait."""
        asked_at = self._clock()
        replica = Replica(
            id=f"{function}-{version.version}-{secrets.token_hex(4)}",
            function=function,
            version=version.version,
            timeout=version.spec.timeout,
            asked_at=asked_at,
            queued_s=None if queued_since is None else max(asked_at - queued_since, 0.0),
        )
        self._add(replica)
        for phase in PHASES:  # at 0 from the first start on: rate() and increase() then see the first cold start
            self._metrics.cold_start_phase.labels(function, str(version.version), phase)
        # one line per start, on a cold start's path too: an activation's says how many requests wait for it
        why = f", {held} held" if held else ""
        log.info("replica %s starting (%s version %d%s)", replica.id, function, version.version, why)
        self._spawn(self._init_deadline(replica))
        try:
            secret_env = self._secret_env(version.spec)
            await self._backend.start_replica(
                ReplicaSpec(
                    replica.id,
                    function,
                    version.version,
                    version.digest,
                    version.spec,
                    secret_env,
                    self.token(function, version.version),
                )
            )
        except StartFailed as e:  # e.g. a secret the version names was removed
            self._fail(replica, Failure(self._clock(), e.error_type, e.message))
            self._forget(replica, "crashed")
        except Exception as e:  # e.g. the artifact could not be fetched
            log.exception("backend could not start replica %s", replica.id)
            self._fail(replica, Failure(self._clock(), "Fx.BackendError", str(e) or type(e).__name__))
            self._forget(replica, "crashed")
        return replica

    def cold(self, function: str, version: int, queued_since: float) -> None:
        """Callers held since `queued_since` wait for the version's starting replicas: each is a cold start."""
        for replica in self.of(function, version):
            if replica.state == "starting" and replica.queued_s is None:
                replica.queued_s = max(replica.asked_at - queued_since, 0.0)

    async def adopt(self, version_of: Callable[[str, int], VersionRecord | None]) -> None:
        """Take over the replicas a previous controller left running (the backend vouches for their processes):
        each becomes ready at once, if its version still exists and its token is that version's; any other is
        stopped."""
        if not isinstance(self._backend, Adopting):
            return
        for found in self._backend.running():
            version = version_of(found.function, found.version)
            token = self.token(found.function, found.version)
            if version is None or not hmac.compare_digest(token_digest(token), found.token_sha256):
                log.warning("replica %s is of no version this controller knows: stopped", found.id)
                self._add(Replica(found.id, found.function, found.version, 1.0, self._clock(), "draining"))
                await self._backend.stop_replica(found.id, grace=1.0)
                continue
            replica = Replica(found.id, found.function, found.version, version.spec.timeout, self._clock())
            replica.state, replica.endpoint = "ready", found.endpoint
            self._add(replica)
            spec = ReplicaSpec(found.id, found.function, found.version, version.digest, version.spec, token=token)
            self._backend.adopt(spec)
            log.info("replica %s adopted at %s", replica.id, found.endpoint)

    async def wait_ready(self, function: str, version: int, since: float) -> list[str]:
        """Endpoints once a replica of the version is ready; StartFailed if a start fails after `since`."""
        if endpoints := self.endpoints(function, version):
            return endpoints
        failure = self._failures.get((function, version))
        if failure and failure.at >= since:
            raise StartFailed(failure.error_type, failure.message, failure.stack_trace)
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiters[(function, version)].append(future)
        return await future

    async def _init_deadline(self, replica: Replica) -> None:
        await asyncio.sleep(self._init_timeout)
        if self.replicas.get(replica.id) is replica and replica.state == "starting":
            replica.timed_out = True
            message = (
                f"replica of {replica.function} version {replica.version} not ready within {self._init_timeout:g} s"
            )
            self._fail(replica, Failure(self._clock(), "Runtime.InitTimeout", message))
            await self._backend.stop_replica(replica.id, grace=1.0)

    # --- events from the backend ----------------------------------------------------

    def on_event(self, event: ReplicaEvent) -> None:
        if event.kind == "standby":
            return self._standby(event)
        if event.kind == "claimed":
            return self._claimed(event)
        replica = self.replicas.get(event.id)
        if replica is None:
            return
        if event.kind == "ready" and replica.state == "starting":
            self._ready(replica, event.endpoint)
            self._cold_start_phases(replica, event.init_ms)
        elif event.kind == "init_error":
            self._fail(replica, Failure(self._clock(), event.error_type, event.error_message, event.stack_trace))
            self._crashes[(replica.function, replica.version)].append(self._clock())
        elif event.kind == "exit":
            self._on_exit(replica, event.exit_code)

    def _standby(self, event: ReplicaEvent) -> None:
        key = (event.function, event.version)
        if event.endpoint:
            self._standbys[key] = event.endpoint
        elif self._standbys.pop(key, None) is None:
            return
        self._spawn(self._on_change(event.function))

    def _claimed(self, event: ReplicaEvent) -> None:
        """A caller connected to a version's standby before a replica was asked for (the gateway sends a cold start
        there): the spare serves it already, and is a replica now, ready; the fleet takes it over as it adopts one."""
        function, number = event.function, event.version
        version = self._version_of(function, number)
        running = sum(r.state != "draining" for r in self.of(function, number))
        replica = Replica(event.id, function, number, version.spec.timeout if version else 1.0, self._clock())
        self._add(replica)
        # Its own function's code can connect to a spare too (the socket is in its directory): a claim past the
        # version's scale.max is stopped, or a function could grow itself a replica per spare the zygote forks.
        why = "which is gone" if version is None else "at its max" if running >= version.spec.scale.max else ""
        if why:
            log.warning(
                "replica %s claimed at a standby of %s version %d, %s: stopped", event.id, function, number, why
            )
            self._spawn(self.stop(replica.id))
            return
        assert version is not None
        if isinstance(self._backend, Adopting):  # its token in the record a later controller checks; its NATS creds
            token = self.token(function, number)
            self._backend.adopt(ReplicaSpec(event.id, function, number, version.digest, version.spec, token=token))
        log.info("replica %s claimed by a caller at %s version %d's standby", event.id, function, number)
        self._ready(replica, event.endpoint)
        replica.queued_s = 0.0  # a cold start no caller waited on the controller for, forked before it was needed
        self._cold_start_phases(replica, event.init_ms)

    def _ready(self, replica: Replica, endpoint: str) -> None:
        self._gauge(replica, -1)
        replica.state, replica.endpoint = "ready", endpoint
        self._gauge(replica, +1)
        took = self._clock() - replica.asked_at
        self._metrics.replica_start_seconds.labels(replica.function, str(replica.version)).observe(took)
        log.info("replica %s ready at %s in %.1f ms", replica.id, endpoint, took * 1000)
        key = (replica.function, replica.version)
        if self._standbys.get(key) == endpoint:  # a spawn took the spare: the next one is the next standby
            del self._standbys[key]
        self._failures.pop(key, None)
        endpoints = self.endpoints(*key)
        for future in self._waiters.pop(key, []):
            if not future.done():
                future.set_result(endpoints)
        self._spawn(self._publish_after_replies(replica.function))

    async def _publish_after_replies(self, function: str) -> None:
        """The route table of a replica just ready, once the requests its activations held have likely had their
        first answers: a gateway that asked has the replica from the reply already, and building, sending and
        reading the table took the CPU from their cold starts (measured: 0.5 ms of the p50 on 2 cores)."""
        await asyncio.sleep(TABLE_AFTER_READY_S)
        await self._on_change(function)

    def _cold_start_phases(self, replica: Replica, init_ms: float | None) -> None:
        """A cold start (a replica an activation asked for, or a standby a caller claimed) split into queueing,
        spawn and init."""
        if replica.queued_s is None:
            return
        phase = self._metrics.cold_start_phase
        labels = (replica.function, str(replica.version))
        took = self._clock() - replica.asked_at
        init = (init_ms or 0.0) / 1000
        phase.labels(*labels, "queueing").observe(replica.queued_s)
        phase.labels(*labels, "spawn").observe(max(took - init, 0.0))
        if init_ms is not None:
            phase.labels(*labels, "init").observe(init)

    def _fail(self, replica: Replica, failure: Failure) -> None:
        replica.init_error = failure
        key = (replica.function, replica.version)
        self._failures[key] = failure
        log.warning("replica %s failed to start: %s: %s", replica.id, failure.error_type, failure.message)
        for future in self._waiters.pop(key, []):
            if not future.done():
                future.set_exception(StartFailed(failure.error_type, failure.message, failure.stack_trace))

    def _on_exit(self, replica: Replica, code: int | None) -> None:
        if replica.state == "draining":
            reason = "stopped"
        elif replica.timed_out:
            reason = "timeout"
        elif replica.init_error:
            reason = "init_error"
        else:
            reason = "crashed"
            self._crashes[(replica.function, replica.version)].append(self._clock())
            if replica.state == "starting":
                self._fail(replica, Failure(self._clock(), "Runtime.ExitError", f"replica exited with code {code}"))
        was_routed = replica.state == "ready"
        self._forget(replica, reason)
        log.info("replica %s exited (code %s, %s)", replica.id, code, reason)
        if was_routed:
            self._spawn(self._on_change(replica.function))

    def _add(self, replica: Replica) -> None:
        self._replicas[replica.id] = replica
        self._index.setdefault(replica.function, {}).setdefault(replica.version, {})[replica.id] = replica
        self._gauge(replica, +1)

    def _forget(self, replica: Replica, reason: str) -> None:
        if self._replicas.pop(replica.id, None) is None:
            return
        versions = self._index[replica.function]
        del versions[replica.version][replica.id]
        if not versions[replica.version]:
            del versions[replica.version]
            if not versions:
                del self._index[replica.function]
        self._gauge(replica, -1)
        self._metrics.replica_exits.labels(replica.function, reason).inc()
        self._exited.set()

    # --- stopping --------------------------------------------------------------------

    async def stop(self, replica_id: str) -> None:
        """Drain: out of the route table first, then (after the drain delay) SIGTERM, SIGKILL after a grace."""
        replica = self.replicas.get(replica_id)
        if replica is None or replica.state == "draining":
            return
        was_routed = replica.state == "ready"
        self._gauge(replica, -1)
        replica.state = "draining"
        self._gauge(replica, +1)
        log.info("replica %s draining", replica.id)
        if was_routed:
            await self._on_change(replica.function)
            await asyncio.sleep(self._drain_delay)
        await self._backend.stop_replica(replica.id, grace=replica.timeout + 5.0)

    def drop_templates(self, function: str, version: int | None = None) -> None:
        """A deleted function or version: the backend's templates of it go too (else only the LRU retires them)."""
        if isinstance(self._backend, Templating):
            self._backend.drop_templates(function, version)

    async def stop_function(self, function: str) -> None:
        await asyncio.gather(*(self.stop(r.id) for r in self.of(function)))
        for key in [k for k in self._failures if k[0] == function]:
            del self._failures[key]
        for key in [k for k in self._crashes if k[0] == function]:
            del self._crashes[key]

    async def stop_all(self, timeout: float) -> None:
        """Drain every replica and wait (up to `timeout`) until they have exited."""
        await asyncio.gather(*(self.stop(r.id) for r in list(self.replicas.values())))
        await self._wait_for(lambda: not self.replicas, timeout)

    async def wait_gone(self, function: str, timeout: float) -> None:
        await self._wait_for(lambda: not self.of(function), timeout)

    async def _wait_for(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = self._clock() + timeout
        while not done() and self._clock() < deadline:
            self._exited.clear()
            try:
                await asyncio.wait_for(self._exited.wait(), timeout=max(0.0, deadline - self._clock()))
            except TimeoutError:
                return

    # --- helpers -----------------------------------------------------------------------

    def _gauge(self, replica: Replica, delta: int) -> None:
        self._metrics.replicas.labels(replica.function, str(replica.version), replica.state).inc(delta)

    def _spawn(self, coro: Awaitable) -> None:
        spawn(coro, self._tasks)

    def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
