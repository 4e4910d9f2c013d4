"""How many replicas a version should have: a pure function of load, its scale spec and the clock."""

from __future__ import annotations

import math
from collections import defaultdict, deque

from fx.models import ScaleSpec

UNLIMITED_PER_REPLICA = 100  # concurrency 0 ("no limit") still adds a replica per 100 in flight


class Autoscaler:
    """Scale up at once; scale down only to the highest demand of the last `stable_window` seconds;
    to zero only after `idle_timeout` seconds without any request (and only when scale.min is 0)."""

    def __init__(self, stable_window: float = 10.0) -> None:
        self.stable_window = stable_window
        self._history: dict[str, deque[tuple[float, int]]] = defaultdict(deque)

    def desired(
        self, key: str, scale: ScaleSpec, observed: int, idle_for: float, now: float, serving: bool, warm: int = 0
    ) -> int:
        """`serving`: the version gets traffic, so scale.min applies (old versions may go to zero).
        `warm`: replicas kept, load or not, while the version is held warm after losing its traffic."""
        floor = max(scale.min if serving else 0, warm)
        history = self._history[key]
        if floor == 0 and observed == 0 and idle_for >= scale.idle_timeout:
            history.clear()
            return 0
        want = math.ceil(observed / (scale.concurrency or UNLIMITED_PER_REPLICA))
        want = min(max(want, 1, floor), scale.max)  # not idle yet: keep at least one
        history.append((now, want))
        while history and history[0][0] < now - self.stable_window:
            history.popleft()
        return max(w for _, w in history)

    def forget(self, key: str) -> None:
        self._history.pop(key, None)
