"""The periods API-key quotas count in: UTC days and UTC months, as API Gateway's usage plans. Stdlib only (the
gateway imports it). A day is a whole number of days since the Unix epoch; a month is (year, month)."""

from __future__ import annotations

from datetime import UTC, datetime

DAY_S = 86400
PERIODS = ("day", "month")


def day_of(now: float) -> int:
    """The UTC day of a Unix time."""
    return int(now // DAY_S)


def month_of(day: int) -> tuple[int, int]:
    moment = datetime.fromtimestamp(day * DAY_S, UTC)
    return moment.year, moment.month


def month_start(year: int, month: int) -> int:
    """The first day of a month."""
    return day_of(datetime(year, month, 1, tzinfo=UTC).timestamp())


def period_end(now: float, period: str) -> float:
    """The Unix time the period (`day` or `month`) holding `now` ends, when its quota starts again."""
    day = day_of(now)
    if period == "day":
        return (day + 1) * DAY_S
    year, month = month_of(day)
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return month_start(year, month) * DAY_S
