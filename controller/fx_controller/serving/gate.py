"""The readiness gate: a new version takes traffic only once a replica of it has initialised.

A deploy stores the version as Pending (and, when it asked for traffic, remembers that in the record's
`awaiting`). The gate starts one replica of it, whatever its scale minimum, and waits for it: ready, the
version becomes Ready and, if still awaited, takes all traffic; an init error (or no readiness within the
fleet's init timeout), it becomes Failed with the error, and the traffic stays where it was. A Failed
version is never started again: the activator answers its error and the reconciler leaves it alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fx.models import InitError
from fx.protocol import load_report_key

from ..replicas.fleet import Fleet, StartFailed
from ..replicas.load import LoadBook
from ..state.routes import RoutePublisher
from ..state.store import FunctionStore
from .releases import Releases

log = logging.getLogger("fx_controller.serving.gate")

MARGIN_S = 5.0  # beyond the fleet's own init deadline, in case a replica vanishes without a report


class Gate:
    def __init__(
        self,
        store: FunctionStore,
        routes: RoutePublisher,
        fleet: Fleet,
        load: LoadBook,
        releases: Releases,
        lock: asyncio.Lock,
        init_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._routes = routes
        self._fleet = fleet
        self._load = load
        self._releases = releases
        self._lock = lock
        self._init_timeout = init_timeout
        self._clock = clock

    async def check(self, name: str, number: int) -> None:
        """Start a replica of a Pending version, wait for its init, and settle the version either way."""
        record = self._store.get(name)
        version = record.version(number) if record else None
        if version is None or version.state != "Pending":
            return
        now = self._clock()
        # Counts as activity: the replica stays up for the idle timeout, so the first call finds it warm.
        self._load.touch(load_report_key(name, number), now)
        if not self._fleet.count(name, number, "starting") and not self._fleet.endpoints(name, number):
            log.info("gate: starting a replica of %s version %d", name, number)
            await self._fleet.start(name, version)
        error = None
        try:
            await asyncio.wait_for(self._fleet.wait_ready(name, number, since=now), self._init_timeout + MARGIN_S)
        except StartFailed as e:
            error = InitError(error_type=e.error_type, message=e.message, stack_trace=list(e.stack_trace))
        except TimeoutError:
            message = f"no replica of {name} version {number} became ready within {self._init_timeout:g} s"
            error = InitError(error_type="Runtime.InitTimeout", message=message)
        await self.settle(name, number, error)

    async def settle(self, name: str, number: int, error: InitError | None) -> None:
        async with self._lock:
            record = self._store.get(name)
            version = record.version(number) if record else None
            if record is None or version is None or version.state != "Pending":
                return  # deleted meanwhile
            settled = version.model_copy(update={"state": "Failed" if error else "Ready", "init_error": error})
            record = record.model_copy(
                update={"versions": [settled if v.version == number else v for v in record.versions]}
            )
            if record.awaiting == number:
                record = record.model_copy(update={"awaiting": None})
                if error is None:
                    record = self._releases.shifted(self._releases.cancelled(record, "a deploy"), {number: 100})
            await self._store.put(record)
            await self._routes.publish(name)
        if error:
            log.warning("%s version %d failed to initialise: %s: %s", name, number, error.error_type, error.message)
        else:
            log.info("%s version %d is ready; traffic %s", name, number, record.traffic)
