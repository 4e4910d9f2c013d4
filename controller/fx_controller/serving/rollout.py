"""A stepwise promote as pure decisions on an injected clock: where it starts, and what each due step does
(step up, finish, or roll back by itself when the version's error rate over the last interval is too high)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fx.models import PromoteSpec, RolloutInfo

from .traffic import toward


@dataclass
class Outcome:
    traffic: dict[int, int]
    rollout: RolloutInfo | None  # None: the rollout is over
    message: str = ""  # how it ended, when it did
    aborted: bool = False


def begin(traffic: dict[int, int], spec: PromoteSpec, now: datetime) -> Outcome:
    """The first step is taken at once; a promote without a step (or one step from 100 %) is immediate."""
    weight = min(100, traffic.get(spec.version, 0) + (spec.step or 100))
    if weight >= 100:
        return Outcome({spec.version: 100}, None, f"version {spec.version} promoted to 100 %")
    assert spec.step is not None
    rollout = RolloutInfo(
        version=spec.version,
        weight=weight,
        step=spec.step,
        interval=spec.interval,
        next_step_at=now + timedelta(seconds=spec.interval),
        base=traffic,
        max_error_rate=spec.max_error_rate,
        min_requests=spec.min_requests,
    )
    return Outcome(toward(traffic, spec.version, weight), rollout)


def advance(rollout: RolloutInfo, now: datetime, requests: int, errors: int) -> Outcome | None:
    """None until the step is due. `requests` / `errors`: the version's answers since the previous step;
    fewer than `min_requests` say nothing about its health, so the rollout goes on."""
    if now < rollout.next_step_at:
        return None
    v = rollout.version
    limit = rollout.max_error_rate
    if limit is not None and requests >= rollout.min_requests and errors / requests > limit:
        message = (
            f"version {v} rolled back at {rollout.weight} %: error rate {errors / requests:.3f}"
            f" ({errors} of {requests} requests) passed {limit}"
        )
        return Outcome(rollout.base, None, message, aborted=True)
    weight = min(100, rollout.weight + rollout.step)
    if weight >= 100:
        return Outcome({v: 100}, None, f"version {v} promoted to 100 % in steps of {rollout.step} %")
    updated = rollout.model_copy(update={"weight": weight, "next_step_at": now + timedelta(seconds=rollout.interval)})
    return Outcome(toward(rollout.base, v, weight), updated)
