"""`fx logs --since` takes a duration or a timestamp; anything else, or a time out of the calendar, is exit 2
before any gateway is asked."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fx.cli import main
from fx.client import Client


@pytest.fixture
def asked(monkeypatch) -> list[httpx.Request]:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, text="- a line\n")

    fake = httpx.MockTransport(answer)
    monkeypatch.setattr("fx.client.Client", lambda gateway, token: Client(gateway, token, transport=fake))
    return requests


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
    sent = datetime.fromisoformat(asked[0].url.params["since"])
    assert abs(datetime.now(UTC) - timedelta(minutes=90) - sent) < timedelta(seconds=30)
