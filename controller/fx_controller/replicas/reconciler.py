"""The scaling loop: every half second, bring each version's replica count to what the autoscaler wants."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from fx.protocol import load_report_key
from prometheus_client import Gauge

from ..metrics import Metrics
from ..state.store import FunctionRecord, FunctionStore, VersionRecord
from .autoscaler import UNLIMITED_PER_REPLICA, Autoscaler
from .fleet import Fleet
from .load import LoadBook

log = logging.getLogger("fx_controller.scale")

INTERVAL_S = 0.5
# A pass lets the event loop run after about this many versions: at 1,000 functions a whole pass at once (38 ms before
# Fleet's index, 11 ms with it) held up a replica's "ready" and a held request's reply each half second.
SLICE = 64


class Reconciler:
    def __init__(
        self,
        store: FunctionStore,
        fleet: Fleet,
        load: LoadBook,
        autoscaler: Autoscaler,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        connected: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._fleet = fleet
        self._load = load
        self._autoscaler = autoscaler
        self._metrics = metrics
        self._clock = clock
        self._wall_clock = wall_clock  # keep-warm holds are wall-clock times, as they outlive a restart
        self._connected = connected  # to NATS: else no gateway learns that a replica goes, so none is stopped
        self._stopping: set[asyncio.Task] = set()
        self._series: dict[tuple[str, int], tuple[Gauge, Gauge, Gauge]] = {}  # each version's, once made

    async def run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:  # one bad pass must not stop scaling for good
                log.exception("reconcile pass failed")
            await asyncio.sleep(INTERVAL_S)

    async def reconcile(self) -> None:
        now, wall = self._clock(), self._wall_clock()
        since_pause = 0
        for name in [record.name for record in self._store.all()]:
            if since_pause >= SLICE:  # between functions: a record is never scaled from a copy older than a pause
                await asyncio.sleep(0)
                since_pause = 0
            record = self._store.get(name)
            for version in record.versions if record else ():
                await self._scale(record, version, now, wall)
                since_pause += 1

    async def _scale(self, record: FunctionRecord, version: VersionRecord, now: float, wall: datetime) -> None:
        name, number = record.name, version.version
        if version.state != "Ready":
            return  # the gate starts a Pending version's one replica; a Failed one is never started again
        key = load_report_key(name, number)
        serving = record.traffic.get(number, 0) > 0 or number in record.aliases.values()
        hold = record.warm.get(number)
        warm = hold.replicas if hold and hold.until > wall else 0
        observed = self._load.observed(key, now)
        replicas = [r for r in self._fleet.of(name, number) if r.state != "draining"]
        ready = sum(r.state == "ready" for r in replicas)
        totals = self._load.totals.get(key)
        scale = version.spec.scale
        desired = self._autoscaler.desired(
            key,
            scale,
            observed,
            self._load.idle_for(key, now),
            now,
            serving,
            warm,
            ready=ready,
            requests=totals.requests if totals else 0,
        )
        desired_gauge, target_gauge, panic_gauge = self._series_of(name, number)
        desired_gauge.set(desired)
        target_gauge.set(scale.concurrency or UNLIMITED_PER_REPLICA)
        panic_gauge.set(self._autoscaler.last(key)[1])
        if len(replicas) < desired:
            if now < self._fleet.retry_at(name, number):
                return  # crashing: back off before forking again
            log.info("scale %s: %d -> %d replicas (%d in flight/held)", key, len(replicas), desired, observed)
            for _ in range(desired - len(replicas)):
                await self._fleet.start(name, version)
        elif len(replicas) > desired and self._connected():
            # Only ready replicas are stopped: a starting one may be what a held request waits for.
            ready = [r for r in replicas if r.state == "ready"]
            surplus = ready[: len(replicas) - desired]
            if surplus:
                log.info("scale %s: %d -> %d replicas (%d in flight/held)", key, len(replicas), desired, observed)
            for replica in surplus:
                task = asyncio.create_task(self._fleet.stop(replica.id))
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    def _series_of(self, name: str, number: int) -> tuple[Gauge, Gauge, Gauge]:
        """The version's desired replicas, concurrency target and panic mode gauges (labels() is ~15 µs a call)."""
        series = self._series.get((name, number))
        if series is None:
            desired, target, panic = (gauge.labels(name, str(number)) for gauge in self._gauges())
            series = self._series[name, number] = (desired, target, panic)
        return series

    def _gauges(self) -> tuple[Gauge, Gauge, Gauge]:
        return self._metrics.replicas_desired, self._metrics.concurrency_target, self._metrics.panic_mode

    def forget(self, name: str, number: int) -> None:
        """A deleted version: its decision and its series go."""
        self._autoscaler.forget(load_report_key(name, number))
        self._series.pop((name, number), None)
        for gauge in self._gauges():
            with contextlib.suppress(KeyError):  # never scaled (it failed to initialise)
                gauge.remove(name, str(number))
