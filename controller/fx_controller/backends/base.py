"""The contract between the backend-independent controller and a replica backend.

The controller asks for replicas and gets events back; it never learns pids or pods.
A Kubernetes backend would map start_replica to a Pod (or a Deployment scale step),
stop_replica to a delete with a grace period, and pod status changes to events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from fx.models import FunctionSpec
from nats.js.kv import KeyValue


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything a backend needs to start one replica of one immutable version."""

    id: str
    function: str
    version: int
    digest: str  # the version's code: "sha256:<hex>" of its zip, or its image reference
    spec: FunctionSpec
    # The values of the spec's secrets, read when the replica is asked for (never in a repr, hence a log line).
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    token: str = field(default="", repr=False)  # the version's replica token (FX_REPLICA_TOKEN); "" = none


@dataclass(frozen=True)
class ReplicaEvent:
    id: str
    # standby: a version's next replica, made before it is needed, serves at `endpoint` ("": none now) as soon as
    # a caller connects to it (no replica `id` yet); claimed: a caller did, and it is replica `id`, ready
    kind: Literal["ready", "init_error", "exit", "standby", "claimed"]
    endpoint: str = ""  # ready, standby, claimed: "host:port" or "unix:path"
    function: str = ""  # standby, claimed: the version's (other events are of a replica the fleet asked for)
    version: int = 0
    # ready, claimed: the runtime's init, when the backend heard it; a measurement, not part of what the event is
    init_ms: float | None = field(default=None, compare=False)
    error_type: str = ""  # init_error: Lambda's errorType, e.g. Runtime.ImportModuleError
    error_message: str = ""
    stack_trace: tuple[str, ...] = ()  # init_error: the traceback's lines, as the runtime formats them
    exit_code: int | None = None  # exit


EventSink = Callable[[ReplicaEvent], None]


def init_error_event(replica_id: str, report: dict) -> ReplicaEvent:
    """The runtime's `init_error` report (errorType, errorMessage, stackTrace) as an event."""
    trace = report.get("stackTrace")
    return ReplicaEvent(
        replica_id,
        "init_error",
        error_type=str(report.get("errorType") or "Runtime.Unknown"),
        error_message=str(report.get("errorMessage", "")),
        stack_trace=tuple(str(line) for line in trace) if isinstance(trace, list) else (),
    )


class SecretMirror(Protocol):
    """A backend's own copies of the secrets, where its replicas read them (kubernetes: one Secret each).
    Its errors name secrets, never values: the admin API shows them."""

    async def put(self, name: str, values: dict[str, str]) -> None: ...
    async def delete(self, name: str) -> None: ...
    async def sync(self, secrets: dict[str, dict[str, str]]) -> None:
        """Make the copies exactly these (on start: a controller may have missed changes)."""


class StoreSource(Protocol):
    """Where a backend keeps copies of the function records (kubernetes: the Function resources)."""

    async def restore(self, kv: KeyValue) -> list[str]:
        """Create in the store's bucket the records it lacks (NATS lost them); the names restored."""


class Backend(Protocol):
    runs_images: bool  # can it run a function whose code is a container image (FunctionSpec.image)?
    # None: replicas get their secrets only in the environment the backend starts them with (ReplicaSpec).
    secret_mirror: SecretMirror | None
    store_source: StoreSource | None  # None: the store has no copy outside NATS
    runtimes: Mapping[str, str]  # the `runtime:` values it can run -> what runs each (interpreter, image)

    def runtime_remedy(self, runtime: str) -> str:
        """How an operator makes `runtime` available here (the message of a deploy refused for want of it)."""

    async def open(self, on_event: EventSink) -> None:
        """Get ready to start replicas; every later event goes to `on_event` (called on the event loop)."""

    async def start_replica(self, replica: ReplicaSpec) -> None:
        """Begin starting a replica; it reports `ready` or `init_error`, and `exit` when it ends."""

    async def stop_replica(self, replica_id: str, grace: float) -> None:
        """Ask the replica to finish its work and exit; force it after `grace` seconds."""

    async def close(self) -> None:
        """Stop everything this backend started."""


def token_digest(token: str) -> str:
    """What a record keeps of a replica token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Running:
    """A live replica a previous controller started, whose process the backend vouches for."""

    id: str
    function: str
    version: int
    endpoint: str
    token_sha256: str  # of the token it was started with: the fleet checks it is its version's


@runtime_checkable
class Adopting(Protocol):
    """A backend whose replicas can outlive the controller (local under `fx up`): the next one adopts them."""

    def running(self) -> list[Running]:
        """The replicas found alive at open() that it vouches for (once: the fleet adopts or stops each)."""

    def adopt(self, replica: ReplicaSpec) -> None:
        """The fleet took this replica over."""


@runtime_checkable
class Templating(Protocol):
    """A backend that keeps per-version templates (local, `snap_start`): processes that ran a version's init."""

    def drop_templates(self, function: str, version: int | None = None) -> None:
        """The function (every version) or the version was deleted: its templates go."""

    def template_memory(self) -> dict[tuple[str, int], int]:
        """Bytes each version's idle templates hold, by (function, version)."""
