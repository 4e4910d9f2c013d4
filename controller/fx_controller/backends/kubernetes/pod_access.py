"""What the controller hands to a function pod, the pod being known by its source IP from the pod watch.

- Code: a zip goes only to a pod of a version with that digest (its `fx.dev/digest` annotation, or its
  dependency layer's, `fx.dev/dependencies`), or to a pool pod while it is being specialised to it. Any other
  pod, or an address that is no fx pod, is refused.
- Assignments: a pool pod being specialised fetches its replica environment here, once. The specialize
  request the controller sends the pod is only a doorbell: the pod trusts what it fetched from the
  controller's Service, never what it was sent, so nobody but the controller can turn a pool pod into a
  replica (see fx_runtime.pool).

Source addresses are trustworthy here because function pods drop every capability (no raw sockets, so no
forged source address), and pod-to-Service traffic keeps the pod's address (kube-proxy does not masquerade it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from .pods import PodState

UNKNOWN_WAIT_S = 10.0  # a new pod may ask for its code before the watch has told us its address


@dataclass
class _Assignment:
    body: dict | None  # {"env", "files"}; None once fetched: an assignment is served once
    digests: frozenset[str]  # the code (and dependency layer) it may fetch meanwhile (hex)


class PodAccess:
    def __init__(self, unknown_wait: float = UNKNOWN_WAIT_S) -> None:
        self._unknown_wait = unknown_wait
        self._pods: dict[str, PodState] = {}  # pod IP -> latest state of the pod there
        self._assignments: dict[str, _Assignment] = {}  # pod IP -> what it is being specialised to
        self._changed = asyncio.Event()

    def observe(self, kind: str, pod: PodState) -> None:
        """Every event of the pod watch (the backend forwards them)."""
        if not pod.ip:
            return
        if kind == "DELETED":
            if self._pods.get(pod.ip, pod).name == pod.name:
                self._pods.pop(pod.ip, None)
        else:
            self._pods[pod.ip] = pod
        self._changed.set()
        self._changed = asyncio.Event()

    def is_function_pod(self, ip: str) -> bool:
        """A function or warm-pool pod the watch knows at this address."""
        return ip in self._pods

    def assign(self, ip: str, env: dict[str, str], files: dict[str, str] | None = None) -> None:
        """`files`: path under the pod's /tmp -> text (a granted version's NATS user), never in its environment."""
        body = {"env": dict(env), "files": dict(files or {})}
        digests = frozenset(env[k] for k in ("FX_ARTIFACT_SHA256", "FX_LAYER_SHA256") if env.get(k))
        self._assignments[ip] = _Assignment(body, digests)
        self._changed.set()
        self._changed = asyncio.Event()

    def finish(self, ip: str) -> None:
        """The specialisation ended (ready or not): the pod's own annotation speaks for it from now on."""
        self._assignments.pop(ip, None)

    def take(self, ip: str) -> dict | None:
        """The assignment ({"env", "files"}) waiting for the pool pod at `ip`, once."""
        assignment = self._assignments.get(ip)
        if assignment is None or assignment.body is None:
            return None
        body, assignment.body = assignment.body, None
        return body

    async def may_fetch(self, ip: str, hexdigest: str) -> bool:
        """Whether the pod at `ip` runs (or is becoming) a version with this code; an address the watch does
        not know yet is waited for a few seconds."""
        deadline = time.monotonic() + self._unknown_wait
        while True:
            assignment = self._assignments.get(ip)
            if assignment is not None:
                return hexdigest in assignment.digests
            pod = self._pods.get(ip)
            if pod is not None:
                return not pod.pool and f"sha256:{hexdigest}" in (pod.digest, pod.layer)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
