"""What the backend needs from a function pod, read from the API's V1Pod: readiness, address, init failures."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from .manifests import DIGEST_ANNOTATION, FUNCTION_LABEL, LAYER_ANNOTATION, POOL_LABEL, PORT, VERSION_LABEL

ERROR_LINE = re.compile(r"^\[ERROR\] ([\w.]+): (.*)$", re.M)  # how the runtime logs an init error


@dataclass(frozen=True)
class PodState:
    name: str
    function: str
    version: int
    ip: str = ""
    ready: bool = False
    running: bool = False  # its container runs (ready or not yet): the controller may probe it
    deleting: bool = False
    # The container exited before it was ever ready (an init error): Lambda's errorType, its message, exit code.
    init_error: tuple[str, str, int | None] | None = None
    init_trace: tuple[str, ...] = ()  # that init error's traceback lines, as far as the termination message has them
    pool: bool = False  # an idle warm-pool pod (function "" and version 0)
    digest: str = ""  # the code it runs (fx.dev/digest): what the artifact server hands it
    layer: str = ""  # its dependency layer (fx.dev/dependencies), handed out likewise; "" for none
    memory: int = 0  # MiB: the memory limit its container runs with, as the kubelet reports it; 0 unknown
    # An in-place resize: "in progress" (the kubelet took it), "pending: <reason> <message>" (it cannot, for now
    # or ever), "" (none going on)
    resize: str = ""

    @property
    def endpoint(self) -> str:
        return f"{self.ip}:{PORT}"


def init_error_of(message: str, exit_code: int | None) -> tuple[str, str, int | None]:
    """The runtime's `[ERROR] Type: message` line from the termination message (its last log lines)."""
    found = ERROR_LINE.search(message or "")
    if found:
        return found.group(1), found.group(2), exit_code
    return "Runtime.ExitError", f"the function's container exited with code {exit_code}", exit_code


def init_trace_of(message: str) -> tuple[str, ...]:
    """The traceback the runtime logs under its `[ERROR]` line, up to its INIT_REPORT line."""
    found = ERROR_LINE.search(message or "")
    if not found:
        return ()
    lines = message[found.end() :].splitlines()[1:]
    if lines and lines[0].startswith("Traceback"):
        lines = lines[1:]
    return tuple(itertools.takewhile(lambda line: not line.startswith("INIT_REPORT"), lines))


def pod_state(pod: Any) -> PodState | None:
    """A V1Pod as PodState; None for a pod that is neither a function pod of fx nor a pool pod."""
    meta, status = pod.metadata, pod.status
    labels = meta.labels or {}
    pool = labels.get(POOL_LABEL) == "true"
    if not pool and (FUNCTION_LABEL not in labels or not labels.get(VERSION_LABEL, "").isdigit()):
        return None
    ready = any(c.type == "Ready" and c.status == "True" for c in (status and status.conditions) or [])
    failure, trace, running, memory = None, (), False, 0
    for cs in (status and status.container_statuses) or []:
        running = running or bool(cs.state and cs.state.running)
        if cs.resources and cs.resources.limits and cs.resources.limits.get("memory"):
            memory = int(parse_quantity(cs.resources.limits["memory"]) // (1 << 20))
        terminated = (cs.state and cs.state.terminated) or (cs.last_state and cs.last_state.terminated)
        if terminated and terminated.exit_code and not ready:
            failure = init_error_of(terminated.message or "", terminated.exit_code)
            trace = init_trace_of(terminated.message or "")
    return PodState(
        name=meta.name,
        function="" if pool else labels[FUNCTION_LABEL],
        version=0 if pool else int(labels[VERSION_LABEL]),
        ip=(status and status.pod_ip) or "",
        ready=ready,
        running=running,
        deleting=meta.deletion_timestamp is not None,
        init_error=failure,
        init_trace=trace,
        pool=pool,
        digest=(meta.annotations or {}).get(DIGEST_ANNOTATION, ""),
        layer=(meta.annotations or {}).get(LAYER_ANNOTATION, ""),
        memory=memory,
        resize=_resize_of(status),
    )


def _resize_of(status: Any) -> str:
    for c in (status and status.conditions) or []:
        if c.type == "PodResizePending" and c.status == "True":
            return f"pending: {c.reason or ''} {c.message or ''}".strip()
        if c.type == "PodResizeInProgress" and c.status == "True":
            return "in progress"
    return ""
