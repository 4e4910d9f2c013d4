"""Schedule expressions of `schedule` triggers: when a scheduled function fires.

Three forms, so that what works in EventBridge Scheduler or a crontab works here:

- `cron(MIN HOUR DAY MONTH WEEKDAY YEAR)`: EventBridge's cron. One of DAY and WEEKDAY is `?`; WEEKDAY is 1-7 for
  SUN-SAT (or the names); `L`, `LW` and `N#K` as EventBridge has them; YEAR must be `*`.
- `rate(N minute|minutes|hour|hours|day|days)`: every N units, counted from the Unix epoch in UTC, so every gateway
  agrees on the ticks: `rate(5 minutes)` fires at :00, :05, :10, ...
- Unix cron: `MIN HOUR DAY MONTH WEEKDAY` (WEEKDAY 0-7, 0 and 7 are Sunday), or with a leading SECOND field.

Cron forms are read in the trigger's time zone (IANA name, UTC by default), DST handled as Debian cron does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

EXAMPLES = "e.g. 'cron(0/5 * * * ? *)', 'rate(5 minutes)' or '*/5 * * * *'"
# Field names as cronsim's errors give them ("Bad day-of-week"), in the order the user writes the fields.
AWS_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week", "year")
UNIX_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
# Patterns end in \Z, not $: "$" also matches before a trailing newline.
RATE_RE = re.compile(r"^rate\(\s*(\d+)\s+(minute|hour|day)s?\s*\)\Z")
# An IANA name: '/'-separated parts of ASCII letters, digits, '_', '+', '-' ('America/Argentina/Buenos_Aires').
TIMEZONE_RE = re.compile(r"^[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*\Z")
TIMEZONE_MAX = 64
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Schedule:
    expression: str
    timezone: str
    cron: str = ""  # the expression in cronsim's syntax, for the cron forms
    period: int = 0  # seconds, for rate()

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment` (an aware datetime), in UTC, whole seconds."""
        if self.period:
            return datetime.fromtimestamp((int(moment.timestamp()) // self.period + 1) * self.period, UTC)
        tick = next(CronSim(self.cron, moment.astimezone(ZoneInfo(self.timezone))))
        return tick.astimezone(UTC)


def parse(expression: str, timezone: str | None = None) -> Schedule:
    """The schedule (its expression without surrounding white space), or ValueError naming the field that is
    wrong, with examples of what is right."""
    zone = check_timezone(timezone or "UTC")
    text = expression.strip()
    if text.startswith("rate("):
        match = RATE_RE.match(text)
        if not match or int(match[1]) < 1:
            raise ValueError(
                f"schedule {expression!r}: a rate is 'rate(N minutes|hours|days)' with N >= 1"
                " (e.g. 'rate(1 minute)' or 'rate(5 minutes)')"
            )
        return Schedule(text, zone, period=int(match[1]) * UNIT_SECONDS[match[2]])
    if text.startswith("cron(") and text.endswith(")"):
        fields, names = text[5:-1].split(), AWS_FIELDS
        cron = _aws_cron(expression, fields)
    else:
        fields = text.split()
        names = UNIX_FIELDS[-len(fields) :]
        if len(fields) not in (5, 6):
            raise ValueError(
                f"schedule {expression!r} has {len(fields)} fields: a cron schedule has 5"
                f" (minute hour day-of-month month day-of-week) or 6 with a leading second; {EXAMPLES}"
            )
        if "?" in text:
            raise ValueError(f"schedule {expression!r}: '?' is EventBridge syntax; write it as cron(...); {EXAMPLES}")
        cron = text
    schedule = Schedule(text, zone, cron=cron)
    try:
        schedule.next_after(datetime.now(UTC))
    except CronSimError as exc:
        field = str(exc).removeprefix("Bad ")
        shown = f" {fields[names.index(field)]!r}" if field in names else ""
        raise ValueError(f"schedule {expression!r}: the {field} field{shown} is invalid; {EXAMPLES}") from None
    except StopIteration:
        raise ValueError(f"schedule {expression!r} never fires; {EXAMPLES}") from None
    return schedule


def check_timezone(name: str) -> str:
    """An IANA time zone name the zoneinfo database knows, or ValueError.

    The name is checked as a name before zoneinfo reads it as a path, and every way zoneinfo fails counts as
    unknown: a folder ('America': IsADirectoryError), an over-long name (ENAMETOOLONG), a file that is no zone."""
    known = len(name) <= TIMEZONE_MAX and TIMEZONE_RE.match(name) is not None
    if known:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            known = False
    if not known:
        shown = name if len(name) <= TIMEZONE_MAX else name[:TIMEZONE_MAX] + "..."
        raise ValueError(f"timezone {shown!r} is not an IANA time zone name (e.g. 'UTC' or 'Europe/Berlin')")
    return name


def _aws_cron(expression: str, fields: list[str]) -> str:
    """EventBridge's six fields as cronsim's five: '?' is '*', weekdays 1-7 become 0-6, the year must be '*'."""
    if len(fields) != 6:
        raise ValueError(
            f"schedule {expression!r} has {len(fields)} fields in cron(...); EventBridge's cron has 6"
            " (minutes hours day-of-month month day-of-week year), e.g. 'cron(0 12 * * ? *)'"
        )
    minute, hour, day, month, weekday, year = fields
    if (day == "?") == (weekday == "?"):
        raise ValueError(
            f"schedule {expression!r}: exactly one of day-of-month and day-of-week must be '?'"
            " (e.g. 'cron(0 12 * * ? *)' daily, 'cron(0 12 ? * MON-FRI *)' on weekdays)"
        )
    if year != "*":
        raise ValueError(f"schedule {expression!r}: the year field must be '*' (e.g. 'cron(0 12 * * ? *)')")
    return " ".join(
        [minute, hour, "*" if day == "?" else day, month, "*" if weekday == "?" else _aws_weekdays(weekday)]
    )


def _aws_weekdays(field: str) -> str:
    """Shift EventBridge's day numbers (1 = SUN) to cron's (0 = SUN); steps and '#K' stay as they are."""
    out = []
    for term in field.split(","):
        base, slash, step = term.partition("/")
        day, sharp, nth = base.partition("#")
        day = re.sub(r"\d+", lambda m: str(int(m[0]) - 1) if 1 <= int(m[0]) <= 7 else "x", day)
        out.append(day + sharp + nth + slash + step)
    return ",".join(out)


def schedule_key(expression: str, timezone: str | None) -> str:
    """A schedule trigger's key: in its events' `resources` and in the id that makes each tick run once."""
    return f"schedule:{expression}" + (f" {timezone}" if timezone and timezone != "UTC" else "")
