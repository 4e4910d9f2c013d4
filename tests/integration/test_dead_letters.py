"""Dead letters on the real platform: what they say about the failure, and the `fx dlq` verbs that list, show
and redrive them without a NATS client."""

import json

import httpx
import pytest
from fx.protocol import DEAD_ATTEMPTS, DEAD_ERROR, DEAD_MESSAGE, DEAD_STATUS

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import wait_until
from tests.integration.test_events import dead_letters

BAD_ORDER = 'raise ValueError("bad order")'


@pytest.fixture
def fast_platform(tmp_path, monkeypatch):
    """A platform whose gateway gives up on a failing async call after one quick retry."""
    monkeypatch.setenv("FX_ASYNC_BACKOFF", "0.1")
    monkeypatch.setenv("FX_ASYNC_RETRIES", "1")
    running = RunningPlatform(tmp_path / "state", tmp_path / "fx-config.json")
    try:
        yield running
    finally:
        running.stop()


def test_a_dead_letter_names_the_functions_error_on_both_async_paths(fast_platform, make_function):
    project = make_function("orders", BAD_ORDER)
    assert fast_platform.fx("deploy", cwd=project).returncode == 0
    gateway = fast_platform.gateway_url
    by_http = httpx.post(f"{gateway}/async-function/orders/new", content=b'{"id": 1}')
    by_invoke = httpx.post(
        f"{gateway}/2015-03-31/functions/orders/invocations",
        content=b'{"id": 2}',
        headers={"X-Amz-Invocation-Type": "Event"},
    )
    assert by_http.status_code == by_invoke.status_code == 202

    letters = wait_until(lambda: len(dead_letters(fast_platform)) == 2 and dead_letters(fast_platform), 30, "2 letters")
    by_body = {json.loads(letter.data)["id"]: letter.headers for letter in letters}
    for headers in by_body.values():
        assert headers[DEAD_ERROR] == "ValueError"
        assert headers[DEAD_MESSAGE] == "bad order"
        assert headers[DEAD_ATTEMPTS] == "2"
    assert by_body[1][DEAD_STATUS] == "502"  # what the HTTP trigger answers a failed function
    assert by_body[2][DEAD_STATUS] == "200"  # the Invoke API's: the error is in X-Amz-Function-Error
    # A synchronous caller of the HTTP trigger still gets API Gateway's opaque 502, even when asking for more.
    sync = httpx.post(f"{gateway}/function/orders", headers={"X-Fx-Error-Detail": "1"})
    assert sync.status_code == 502 and sync.json() == {"message": "Internal Server Error"}
