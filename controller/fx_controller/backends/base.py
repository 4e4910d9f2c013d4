"""The contract between the backend-independent controller and a replica backend.

The controller asks for replicas and gets events back; it never learns pids or pods.
A Kubernetes backend would map start_replica to a Pod (or a Deployment scale step),
stop_replica to a delete with a grace period, and pod status changes to events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from fx.models import FunctionSpec


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything a backend needs to start one replica of one immutable version."""

    id: str
    function: str
    version: int
    digest: str  # the version's code: "sha256:<hex>" of its zip, or its image reference
    spec: FunctionSpec


@dataclass(frozen=True)
class ReplicaEvent:
    id: str
    kind: Literal["ready", "init_error", "exit"]
    endpoint: str = ""  # ready: "host:port"
    error_type: str = ""  # init_error: Lambda's errorType, e.g. Runtime.ImportModuleError
    error_message: str = ""
    exit_code: int | None = None  # exit


EventSink = Callable[[ReplicaEvent], None]


class Backend(Protocol):
    runs_images: bool  # can it run a function whose code is a container image (FunctionSpec.image)?

    async def open(self, on_event: EventSink) -> None:
        """Get ready to start replicas; every later event goes to `on_event` (called on the event loop)."""

    async def start_replica(self, replica: ReplicaSpec) -> None:
        """Begin starting a replica; it reports `ready` or `init_error`, and `exit` when it ends."""

    async def stop_replica(self, replica_id: str, grace: float) -> None:
        """Ask the replica to finish its work and exit; force it after `grace` seconds."""

    async def close(self) -> None:
        """Stop everything this backend started."""
