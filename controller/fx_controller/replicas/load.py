"""What the gateways report on fx.load, summed over gateways; a gateway silent for 5 s is forgotten."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from fx.protocol import LoadReport

GATEWAY_SILENCE_S = 5.0


@dataclass
class Totals:
    requests: int = 0
    errors: int = 0


class LoadBook:
    """Keys are "function/version", as in LoadReport."""

    def __init__(self) -> None:
        self._gateways: dict[str, tuple[float, LoadReport]] = {}
        self._last_active: dict[str, float] = {}
        self.totals: dict[str, Totals] = defaultdict(Totals)  # since the controller started

    def observe(self, report: LoadReport, now: float) -> None:
        self._gateways[report.gateway] = (now, report)
        for key, load in report.versions.items():
            totals = self.totals[key]
            totals.requests += load.requests
            totals.errors += load.errors
            if load.requests or load.in_flight or load.queued:
                self._last_active[key] = now

    def touch(self, key: str, now: float) -> None:
        """Count an activation as activity, so a replica started for it is not idle before reports arrive."""
        self._last_active[key] = now

    def observed(self, key: str, now: float) -> int:
        """In flight plus held requests for a version, over every gateway heard from recently."""
        for gateway in [g for g, (at, _) in self._gateways.items() if now - at > GATEWAY_SILENCE_S]:
            del self._gateways[gateway]
        total = 0
        for _, report in self._gateways.values():
            load = report.versions.get(key)
            if load:
                total += load.in_flight + load.queued
        return total

    def reported_since(self, t: float, now: float) -> bool:
        """Whether every gateway heard from in the last GATEWAY_SILENCE_S has reported at or after `t`, so the
        totals count every request those gateways had answered by `t` (a report counts up to when it is sent)."""
        return all(at >= t for at, _ in self._gateways.values() if now - at <= GATEWAY_SILENCE_S)

    def idle_for(self, key: str, now: float) -> float:
        last = self._last_active.get(key)
        return float("inf") if last is None else now - last

    def forget(self, function: str) -> None:
        prefix = f"{function}/"
        for table in (self._last_active, self.totals):
            for key in [k for k in table if k.startswith(prefix)]:
                del table[key]
