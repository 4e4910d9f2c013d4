"""Which versions serve: traffic splits, aliases, promotes (stepped in the background) and rollbacks.

Every change is written to the function record first, then published as a route table, under the
controller's lock, so a deploy, a traffic change and a rollout step never interleave.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fx.models import PromoteSpec, RolloutInfo, TrafficSpec
from fx.protocol import load_report_key

from ..api.errors import ApiError, not_found
from ..replicas.fleet import Fleet
from ..replicas.load import GATEWAY_SILENCE_S, LoadBook
from ..state.routes import RoutePublisher
from ..state.store import FunctionRecord, FunctionStore, VersionRecord, Warm
from . import rollout
from .traffic import check_serving, check_versions, keep_warm_seconds, shift

log = logging.getLogger("fx_controller.serving.releases")

TICK_S = 0.5  # how often due rollout steps are looked for


def utc_now() -> datetime:
    return datetime.now(UTC)


class Releases:
    def __init__(
        self,
        store: FunctionStore,
        routes: RoutePublisher,
        fleet: Fleet,
        load: LoadBook,
        lock: asyncio.Lock,
        keep_warm: float,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._routes = routes
        self._fleet = fleet
        self._load = load
        self._lock = lock
        self.keep_warm = keep_warm
        self.clock = clock  # wall-clock UTC; rollout times and keep-warm holds outlive a restart
        self.monotonic = monotonic  # the load reports' clock
        # Per function: the promoted version's (requests, errors) totals at its previous step. In memory
        # only: after a restart the first step's window starts at the restart.
        self._seen: dict[str, tuple[int, int]] = {}

    # --- used by deploy ------------------------------------------------------------------

    def shifted(self, record: FunctionRecord, traffic: dict[int, int], remember: bool = True) -> FunctionRecord:
        """The record with a new split, the old one remembered and the versions losing traffic kept warm."""

        def replicas(number: int) -> int:
            return self._fleet.count(record.name, number, "ready") + self._fleet.count(record.name, number, "starting")

        return shift(record, traffic, self.clock(), self.keep_warm, replicas, remember)

    def warm_new(self, record: FunctionRecord, version: VersionRecord) -> FunctionRecord:
        """A version deployed without traffic gets one replica at once, kept for the keep-warm time."""
        seconds = keep_warm_seconds(version, self.keep_warm)
        if seconds <= 0:
            return record
        hold = Warm(until=self.clock() + timedelta(seconds=seconds), replicas=1)
        return record.model_copy(update={"warm": {**record.warm, version.version: hold}})

    @staticmethod
    def cancelled(record: FunctionRecord, by: str) -> FunctionRecord:
        """The record with its rollout (if any) cancelled, and a Pending version's wish for traffic dropped,
        by another traffic change: the latest one asked for wins."""
        update: dict = {"awaiting": None}
        if r := record.rollout:
            message = f"rollout of version {r.version} cancelled at {r.weight} % by {by}"
            update |= {"rollout": None, "last_rollout": message}
        return record.model_copy(update=update)

    # --- admin operations ----------------------------------------------------------------

    async def set_traffic(self, name: str, spec: TrafficSpec) -> None:
        async with self._lock:
            record = self._get(name)
            check_versions(record, spec.traffic, "traffic")
            check_serving(record, [v for v, pct in spec.traffic.items() if pct], "traffic")
            record = self.shifted(self.cancelled(record, "a traffic change"), spec.traffic)
            if "sticky" in spec.model_fields_set:
                record = record.model_copy(update={"sticky": spec.sticky})
            await self._save(record)
        log.info("traffic of %s: %s (sticky %s)", name, record.traffic, record.sticky)

    async def set_alias(self, name: str, alias: str, version: int, split: dict[int, int] | None = None) -> None:
        """`split`: the alias's own traffic split (version -> percent, `version` included); None: all to `version`."""
        async with self._lock:
            record = self._get(name)
            check_versions(record, [version, *(split or ())], "version")
            if split:
                check_serving(record, [v for v in split if v != version], "routing")
            alias_traffic = {a: s for a, s in record.alias_traffic.items() if a != alias}
            if split and len(split) > 1:
                alias_traffic[alias] = split
            update = {"aliases": {**record.aliases, alias: version}, "alias_traffic": alias_traffic}
            await self._save(record.model_copy(update=update))
        log.info("alias %s of %s -> version %d (split %s)", alias, name, version, split or "none")

    async def delete_alias(self, name: str, alias: str) -> None:
        async with self._lock:
            record = self._get(name)
            if alias not in record.aliases:
                known = ", ".join(sorted(record.aliases)) or "none"
                raise ApiError(
                    404, "AliasNotFound", f"{name!r} has no alias {alias!r} (aliases: {known})", function=name
                )
            aliases = {a: v for a, v in record.aliases.items() if a != alias}
            alias_traffic = {a: s for a, s in record.alias_traffic.items() if a != alias}
            await self._save(record.model_copy(update={"aliases": aliases, "alias_traffic": alias_traffic}))
        log.info("alias %s of %s removed", alias, name)

    async def delete_version(self, name: str, number: int) -> None:
        """Remove one version (the Lambda API's DeleteFunction with a Qualifier): not the latest, nor one that takes
        traffic or is named by an alias (409); its replicas stop."""
        async with self._lock:
            record = self._get(name)
            check_versions(record, [number], "version")
            aliases = sorted(
                {a for a, v in record.aliases.items() if v == number}
                | {a for a, split in record.alias_traffic.items() if number in split}
            )
            if number == record.latest.version or record.traffic.get(number) or aliases:
                why = (
                    f"alias {', '.join(aliases)} names it"
                    if aliases
                    else "it is the latest"
                    if number == record.latest.version
                    else "it takes traffic"
                )
                message = f"version {number} of {name!r} cannot be deleted: {why}"
                raise ApiError(409, "VersionInUse", message, function=name, field="version")
            update = {
                "versions": [v for v in record.versions if v.version != number],
                "history": [split for split in record.history if number not in split],
                "warm": {v: hold for v, hold in record.warm.items() if v != number},
            }
            await self._save(record.model_copy(update=update))
        self._fleet.drop_templates(name, number)
        for replica in self._fleet.of(name, number):
            await self._fleet.stop(replica.id)
        log.info("version %d of %s deleted", number, name)

    async def promote(self, name: str, spec: PromoteSpec) -> None:
        async with self._lock:
            record = self._get(name)
            check_versions(record, [spec.version], "version")
            check_serving(record, [spec.version], "version")
            record = self.cancelled(record, "a promote")
            outcome = rollout.begin(record.traffic, spec, self.clock())
            record = self.shifted(record, outcome.traffic)
            update = {"rollout": outcome.rollout, "last_rollout": outcome.message or record.last_rollout}
            await self._save(record.model_copy(update=update))
            self._seen[name] = self._totals(name, spec.version)
        log.info("promote %s version %d: traffic %s", name, spec.version, record.traffic)

    async def rollback(self, name: str, force: bool = False) -> None:
        """`force`: go back even onto a version that failed to initialise (or is still starting)."""
        async with self._lock:
            record = self._get(name)
            if not record.history:
                raise ApiError(
                    409,
                    "NothingToRollBack",
                    f"{name!r} has had no other traffic split to go back to",
                    function=name,
                )
            previous = record.history[-1]
            if not force:
                hint = f"; `fx rollback {name} --force` goes back anyway, or deploy a fixed version"
                check_serving(record, [v for v, pct in previous.items() if pct], "rollback", hint)
            record = self.shifted(self.cancelled(record, "a rollback"), previous, remember=False)
            await self._save(record.model_copy(update={"history": record.history[:-1]}))
        log.info("rollback %s: traffic %s", name, previous)

    # --- the rollout loop ----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # one bad pass must not stop every rollout for good
                log.exception("rollout pass failed")
            await asyncio.sleep(TICK_S)

    async def tick(self) -> None:
        """Take every rollout step that is due."""
        now = self.clock()
        for name in [r.name for r in self._store.all() if r.rollout and r.rollout.next_step_at <= now]:
            async with self._lock:
                record = self._store.get(name)
                if record is None or record.rollout is None:
                    continue  # deleted or cancelled meanwhile
                if not self._counts_cover(record.rollout, now):
                    continue  # judged on the next pass, once the gateways' reports cover the whole step
                current = self._totals(name, record.rollout.version)
                seen = self._seen.get(name, current)
                outcome = rollout.advance(record.rollout, now, current[0] - seen[0], current[1] - seen[1])
                if outcome is None:
                    continue
                self._seen[name] = current
                updated = self.shifted(record, outcome.traffic, remember=False)
                history = updated.history
                if outcome.aborted and history and history[-1] == outcome.traffic:
                    history = history[:-1]  # the split before the rollout is where we are again
                update = {
                    "rollout": outcome.rollout,
                    "history": history,
                    "last_rollout": outcome.message or record.last_rollout,
                }
                await self._save(updated.model_copy(update=update))
            log.info("rollout of %s: traffic %s %s", name, outcome.traffic, outcome.message)

    # --- plumbing ------------------------------------------------------------------------

    def _get(self, name: str) -> FunctionRecord:
        record = self._store.get(name)
        if record is None:
            raise not_found(name)
        return record

    def _counts_cover(self, r: RolloutInfo, now: datetime) -> bool:
        """Whether the load reports cover the step up to its end, so its error rate is judged on all its requests
        (a gateway reports once a second). A gateway that stops reporting is waited for only until it counts as
        gone; a rollout without an error limit judges nothing, and waits for nothing."""
        if r.max_error_rate is None:
            return True
        late = (now - r.next_step_at).total_seconds()
        mono = self.monotonic()
        return late > GATEWAY_SILENCE_S or self._load.reported_since(mono - late, mono)

    def _totals(self, name: str, version: int) -> tuple[int, int]:
        totals = self._load.totals.get(load_report_key(name, version))
        return (totals.requests, totals.errors) if totals else (0, 0)

    async def _save(self, record: FunctionRecord) -> None:
        await self._store.put(record)
        await self._routes.publish(record.name)
