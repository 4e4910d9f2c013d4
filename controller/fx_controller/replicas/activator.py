"""Answers fx.activate: a gateway holds requests for a version with no ready replica and asks for one."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fx.protocol import ActivationReply, ActivationRequest, load_report_key

from ..metrics import Metrics
from ..state.store import FunctionStore
from .fleet import Fleet, StartFailed
from .load import LoadBook

log = logging.getLogger("fx_controller.replicas.activator")

FAILURE_BACKOFF_S = 2.0  # after an init failure, answer at once with it instead of forking again


class Activator:
    def __init__(
        self,
        store: FunctionStore,
        fleet: Fleet,
        load: LoadBook,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._fleet = fleet
        self._load = load
        self._metrics = metrics
        self._clock = clock

    async def activate(self, request: ActivationRequest) -> ActivationReply:
        name = request.function
        record = self._store.get(name)
        version = record.version(int(request.version)) if record and request.version.isdigit() else None
        if record is None or version is None:
            self._metrics.activations.labels(name if record else "", "notfound").inc()
            what = f"function {name!r}" if record is None else f"version {request.version} of function {name!r}"
            code = "FunctionNotFound" if record is None else "VersionNotFound"
            return ActivationReply(ok=False, status=404, error=code, cause=f"{what} not found")

        now = self._clock()
        self._load.touch(load_report_key(name, version.version), now)
        if endpoints := self._fleet.endpoints(name, version.version):
            self._metrics.activations.labels(name, "ok").inc()
            return ActivationReply(ok=True, endpoints=endpoints)

        if version.state == "Failed" and version.init_error:  # never started again: its code cannot init
            self._metrics.activations.labels(name, "failed").inc()
            error = version.init_error
            cause = f"version {version.version} failed to initialise: {error.message}"
            return ActivationReply(ok=False, status=502, error=error.error_type, cause=cause)

        failure = self._fleet.last_failure(name, version.version)
        if failure and now - failure.at < FAILURE_BACKOFF_S:
            self._metrics.activations.labels(name, "backoff").inc()
            return ActivationReply(ok=False, status=502, error=failure.error_type, cause=failure.message)

        # Concurrent activations of one version share the replica already starting.
        queued_since = now - request.held_ms / 1000
        if not self._fleet.count(name, version.version, "starting"):
            await self._fleet.start(name, version, queued_since=queued_since, held=request.queued)
        else:  # e.g. the autoscaler started it, for these same held requests: a cold start all the same
            self._fleet.cold(name, version.version, queued_since)
        try:
            endpoints = await self._fleet.wait_ready(name, version.version, since=now)
        except StartFailed as e:
            self._metrics.activations.labels(name, "failed").inc()
            return ActivationReply(ok=False, status=502, error=e.error_type, cause=e.message)
        self._metrics.activations.labels(name, "ok").inc()
        return ActivationReply(ok=True, endpoints=endpoints)
