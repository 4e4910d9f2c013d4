"""How many replicas a version should have: a pure function of load, its scale spec and the clock.

Knative's algorithm (docs/autoscaling.md has the formulas): averages of concurrency and request rate over a
stable and a panic window; panic mode while the panic window asks for `panic_threshold` times the ready
replicas; bounded scale-up and scale-down rates; an optional scale-down delay; fx's own idle timeout for zero.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from fx.models import ScaleSpec

UNLIMITED_PER_REPLICA = 100  # concurrency 0 ("no limit") still adds a replica per 100 in flight
RATE_MIN_WINDOW_S = 2.0  # gateways report completed requests once a second: a shorter rate would only flicker


@dataclass(frozen=True)
class Tuning:
    """The controller's defaults (its flags); a function's scale spec may override the per-version ones."""

    stable_window: float = 10.0
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_down_delay: float = 0.0


@dataclass
class _State:
    samples: deque[tuple[float, int, int]] = field(default_factory=deque)  # (time, concurrency, requests total)
    decisions: deque[tuple[float, int]] = field(default_factory=deque)  # for the scale-down delay
    panic_since: float | None = None  # last time the panic window was over the threshold, while panicking
    panic_peak: int = 0  # never scale below this while panicking
    desired: int = 0


class Autoscaler:
    def __init__(self, tuning: Tuning = Tuning()) -> None:
        self.tuning = tuning
        self._state: dict[str, _State] = {}

    def desired(
        self,
        key: str,
        scale: ScaleSpec,
        observed: int,
        idle_for: float,
        now: float,
        serving: bool,
        warm: int = 0,
        ready: int = 0,
        requests: int = 0,
    ) -> int:
        """`observed`: in flight plus held, now; `requests`: completed since the controller started (a counter).
        `serving`: the version gets traffic, so scale.min applies (old versions may go to zero).
        `warm`: replicas kept, load or not, while the version is held warm after losing its traffic.
        `ready`: the version's ready replicas, the base of the panic threshold and of the rate bounds."""
        state = self._state.setdefault(key, _State())
        floor = max(scale.min if serving else 0, warm)
        if floor == 0 and observed == 0 and idle_for >= scale.idle_timeout:
            self._state[key] = _State()
            return 0
        stable_window = _pick(scale.stable_window, self.tuning.stable_window)
        panic_window = stable_window * _pick(scale.panic_window_percentage, self.tuning.panic_window_percentage) / 100
        threshold = _pick(scale.panic_threshold_percentage, self.tuning.panic_threshold_percentage) / 100
        delay = _pick(scale.scale_down_delay, self.tuning.scale_down_delay)

        state.samples.append((now, observed, requests))
        while state.samples[0][0] < now - max(stable_window, RATE_MIN_WINDOW_S):
            state.samples.popleft()
        stable_load = _replicas_for(scale, *_load(state.samples, now, stable_window))
        panic_load = _replicas_for(scale, *_load(state.samples, now, panic_window))

        base = max(ready, 1)  # Knative's: from zero, the first replica counts as ready
        most = math.ceil(self.tuning.max_scale_up_rate * base)
        least = math.floor(ready / self.tuning.max_scale_down_rate)
        stable = min(max(math.ceil(stable_load), least), most)
        panic = min(max(math.ceil(panic_load), least), most)
        if panic_load / base >= threshold:
            state.panic_since = now
        elif state.panic_since is not None and now - state.panic_since > stable_window:
            state.panic_since, state.panic_peak = None, 0  # the surge has reached the stable average
        if state.panic_since is not None:
            state.panic_peak = want = max(panic, state.panic_peak)
        else:
            want = stable

        state.decisions.append((now, want))
        while state.decisions[0][0] < now - delay:
            state.decisions.popleft()
        want = max(w for _, w in state.decisions)
        state.desired = min(max(want, 1, floor), scale.max)  # not idle yet: keep at least one
        return state.desired

    def last(self, key: str) -> tuple[int, bool]:
        """The latest decision for a version and whether it was made in panic mode."""
        state = self._state.get(key)
        return (state.desired, state.panic_since is not None) if state else (0, False)

    def forget(self, key: str) -> None:
        self._state.pop(key, None)


def _pick(value: float | None, default: float) -> float:
    return default if value is None else value


def _load(samples: deque[tuple[float, int, int]], now: float, window: float) -> tuple[float, float]:
    """The average concurrency over `window` (of the samples there are: a version just started has fewer)
    and the request rate over `window`, or RATE_MIN_WINDOW_S if longer."""
    recent = [c for t, c, _ in samples if t > now - window] or [samples[-1][1]]
    start = next((s for s in samples if s[0] >= now - max(window, RATE_MIN_WINDOW_S)), samples[-1])
    elapsed = now - start[0]
    rate = (samples[-1][2] - start[2]) / elapsed if elapsed > 0 else 0.0
    return sum(recent) / len(recent), rate


def _replicas_for(scale: ScaleSpec, concurrency: float, rate: float) -> float:
    """Replicas' worth of load, not yet rounded up: by concurrency, and by request rate when a target is set
    (the higher wins)."""
    want = concurrency / (scale.concurrency or UNLIMITED_PER_REPLICA)
    return max(want, rate / scale.target_rps) if scale.target_rps else want
