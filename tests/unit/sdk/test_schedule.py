"""Schedule expressions as a user writes them in fx.yaml: when they fire, and what a bad one is told."""

from datetime import UTC, datetime

import pytest
from fx.models import FunctionSpec
from fx.schedule import parse
from pydantic import ValidationError

WEDNESDAY = datetime(2025, 3, 5, 10, 2, 30, tzinfo=UTC)
ARTIFACT = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("expression", "timezone", "fires"),
    [
        ("cron(0/5 * * * ? *)", None, "2025-03-05 10:05:00"),
        ("cron(0 12 ? * MON-FRI *)", None, "2025-03-05 12:00:00"),
        ("cron(0 9 ? * 2 *)", None, "2025-03-10 09:00:00"),  # EventBridge's 2 is Monday
        ("cron(0 9 ? * 6L *)", None, "2025-03-28 09:00:00"),  # the last Friday
        ("cron(0 9 ? * 3#2 *)", None, "2025-03-11 09:00:00"),  # the second Tuesday
        ("cron(0 0 L * ? *)", None, "2025-03-31 00:00:00"),
        ("rate(1 minute)", None, "2025-03-05 10:03:00"),
        ("rate(5 minutes)", None, "2025-03-05 10:05:00"),
        ("rate(1 day)", "Europe/Berlin", "2025-03-06 00:00:00"),  # a rate counts in UTC
        ("*/5 * * * *", None, "2025-03-05 10:05:00"),
        ("0 9 * * *", "Europe/Berlin", "2025-03-06 08:00:00"),
        ("15 * * * * *", None, "2025-03-05 10:03:15"),  # a leading seconds field
    ],
)
def test_a_schedule_fires_when_its_users_expect(expression, timezone, fires):
    tick = parse(expression, timezone).next_after(WEDNESDAY)
    assert tick == datetime.fromisoformat(fires).replace(tzinfo=UTC)


def test_a_cron_in_a_time_zone_follows_daylight_saving():
    nine_in_berlin = parse("cron(0 9 * * ? *)", "Europe/Berlin")
    winter = nine_in_berlin.next_after(datetime(2025, 3, 28, 12, tzinfo=UTC))
    summer = nine_in_berlin.next_after(winter)
    assert (winter.hour, summer.hour) == (8, 7)  # 09:00 CET on the 29th, 09:00 CEST on the 30th


@pytest.mark.parametrize(
    ("expression", "timezone", "told"),
    [
        ("cron(61 * * * ? *)", None, "the minute field '61' is invalid"),
        ("cron(0 9 ? * 8 *)", None, "the day-of-week field '8' is invalid"),
        ("cron(0 9 15W * ? *)", None, "the day-of-month field '15W' is invalid"),
        ("cron(0 12 * * * *)", None, "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 * * ? 2030)", None, "the year field must be '*'"),
        ("cron(0 12 * * ?)", None, "EventBridge's cron has 6"),
        ("0/5 * * * ? *", None, "write it as cron(...)"),
        ("* * *", None, "has 3 fields"),
        ("* * 31 2 *", None, "the day-of-month field '31' is invalid"),
        ("rate(0 minutes)", None, "rate(N minutes|hours|days)"),
        ("rate(10 seconds)", None, "rate(N minutes|hours|days)"),
        ("rate(1 minute)", "Mars/Olympus", "not an IANA time zone name"),
    ],
)
def test_a_bad_schedule_is_refused_naming_what_is_wrong(expression, timezone, told):
    with pytest.raises(ValueError, match=r"e\.g\.") as caught:
        parse(expression, timezone)
    assert told in str(caught.value)


def test_the_function_spec_takes_schedules_as_a_fourth_trigger_kind():
    spec = FunctionSpec(
        name="report",
        artifact=ARTIFACT,
        triggers=[{"schedule": "rate(5 minutes)"}, {"schedule": "cron(0 9 * * ? *)", "timezone": "Europe/Berlin"}],
    )
    assert [t.key for t in spec.triggers] == ["schedule:rate(5 minutes)", "schedule:cron(0 9 * * ? *) Europe/Berlin"]
    with pytest.raises(ValidationError) as caught:
        FunctionSpec(name="report", artifact=ARTIFACT, triggers=[{"schedule": "cron(0 9 * * * *)"}])
    assert caught.value.errors()[0]["loc"] == ("triggers", 0, "schedule")
    with pytest.raises(ValidationError, match="exactly one of"):
        FunctionSpec(name="report", artifact=ARTIFACT, triggers=[{"nats": "a.b", "schedule": "rate(1 minute)"}])
    with pytest.raises(ValidationError, match="timezone goes with a schedule"):
        FunctionSpec(name="report", artifact=ARTIFACT, triggers=[{"nats": "a.b", "timezone": "UTC"}])
    with pytest.raises(ValidationError, match="listed twice"):
        FunctionSpec(name="report", artifact=ARTIFACT, triggers=[{"schedule": "rate(1 minute)"}] * 2)
