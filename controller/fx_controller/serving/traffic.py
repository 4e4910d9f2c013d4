"""Traffic splits as values: checked against a function's versions, shifted (the old split remembered
for rollback, the versions that lose traffic kept warm), and the proportional splits of a rollout."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from ..api.errors import ApiError
from ..state.store import FunctionRecord, VersionRecord, Warm

HISTORY_DEPTH = 20  # splits remembered for rollback


def check_versions(record: FunctionRecord, versions: Iterable[int], field: str) -> None:
    """Every version named must exist: the error names the first unknown one and the ones there are."""
    for number in versions:
        if record.version(number) is None:
            known = ", ".join(str(v.version) for v in record.versions)
            raise ApiError(
                400,
                "VersionNotFound",
                f"{field}: version {number} of {record.name!r} does not exist (versions: {known})",
                function=record.name,
                field=field,
            )


def check_serving(record: FunctionRecord, versions: Iterable[int], field: str, hint: str = "") -> None:
    """Only a Ready version may be given traffic: one still starting or one that failed to initialise is 409."""
    for number in versions:
        version = record.version(number)
        if version is None or version.state == "Ready":
            continue
        what = f"{field}: version {number} of {record.name!r}"
        if version.state == "Pending":
            code = "VersionNotReady"
            message = f"{what} is still starting: it can take traffic once a replica of it has initialised"
            hint = hint or f" (watch `fx versions {record.name}`)"
        else:
            code = "VersionFailed"
            cause = f"{version.init_error.error_type}: {version.init_error.message}" if version.init_error else "?"
            message = f"{what} failed to initialise ({cause})"
            hint = hint or "; deploy a fixed version"
        raise ApiError(409, code, message + hint, function=record.name, field=field)


def keep_warm_seconds(version: VersionRecord, default: float) -> float:
    """How long `version` stays warm after losing its traffic: its own scale.keep_warm, else the default."""
    own = version.spec.scale.keep_warm
    return default if own is None else own


def shift(
    record: FunctionRecord,
    traffic: dict[int, int],
    now: datetime,
    keep_warm: float,
    replicas: Callable[[int], int],
    remember: bool = True,
) -> FunctionRecord:
    """The record with `traffic` as its split. `keep_warm` is the default hold in seconds (a version's
    scale.keep_warm wins); `replicas(version)` how many it runs now, which the hold keeps (at least one)."""
    warm = {v: hold for v, hold in record.warm.items() if hold.until > now}
    for number, percent in record.traffic.items():
        version = record.version(number)
        if percent and not traffic.get(number) and version:
            seconds = keep_warm_seconds(version, keep_warm)
            if seconds > 0:
                warm[number] = Warm(until=now + timedelta(seconds=seconds), replicas=max(1, replicas(number)))
    history = record.history
    if remember and record.traffic and traffic != record.traffic:
        history = [*history, record.traffic][-HISTORY_DEPTH:]
    return record.model_copy(update={"traffic": dict(sorted(traffic.items())), "history": history, "warm": warm})


def toward(base: dict[int, int], version: int, weight: int) -> dict[int, int]:
    """`version` at `weight` percent; the other versions of `base` share the rest in their old proportions
    (largest remainder, so the percents are whole and sum to exactly 100)."""
    others = {v: p for v, p in base.items() if v != version and p}
    if weight >= 100 or not others:
        return {version: 100}
    rest, total = 100 - weight, sum(others.values())
    exact = {v: p * rest / total for v, p in others.items()}
    split = {v: int(x) for v, x in exact.items()}
    by_remainder = sorted(exact, key=lambda v: (split[v] - exact[v], v))
    for v in by_remainder[: rest - sum(split.values())]:
        split[v] += 1
    if weight:
        split[version] = weight
    return {v: p for v, p in sorted(split.items()) if p}
