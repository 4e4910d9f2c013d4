"""`fx logs --since` takes a duration or a timestamp; anything else, or a time out of the calendar, is exit 2
before any gateway is asked."""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from fx.cli import main


@pytest.fixture
def asked(scripted, isolated, monkeypatch) -> list[tuple[str, str | None]]:
    """The paths the CLI asked the scripted gateway (FX_GATEWAY, set after `isolated` clears it) for."""
    handler, url = scripted
    handler.answer = (200, b"- a line\n")
    monkeypatch.setenv("FX_GATEWAY", url)
    return handler.seen


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("yesterday", "is neither a duration"),
        ("10 m", "is neither a duration"),
        ("99999999999999h", "further back than the calendar goes"),
        ("999999999999999999999999s", "further back than the calendar goes"),
        ("0001-01-01T00:00:00", "--since '0001-01-01T00:00:00'"),  # as local time, out of the calendar
    ],
)
def test_a_since_that_is_no_time_is_exit_2(asked, capsys, since, message):
    assert main(["logs", "fn", "--since", since]) == 2
    assert message in capsys.readouterr().err
    assert asked == []


def test_a_duration_is_sent_as_the_time_that_long_ago(asked):
    assert main(["logs", "fn", "--since", "90m"]) == 0
    sent = datetime.fromisoformat(parse_qs(urlsplit(asked[0][0]).query)["since"][0])
    assert abs(datetime.now(UTC) - timedelta(minutes=90) - sent) < timedelta(seconds=30)
