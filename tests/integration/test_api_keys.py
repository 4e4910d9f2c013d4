"""API keys, quotas and throttles of API routes on the real platform, driven as a user would (`fx apikey`, plain
HTTP calls): 403 without a valid key, a daily quota refused with Retry-After and still refused after a controller
restart, the usage `fx apikey ls` shows, a route throttle measured over a bounded window, a removed key refused,
and the per-key metrics naming the key, never its value.

The routes are mocks: no replica is involved, so the throttle is measured on the gateway alone."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from fx.platform import Restarts

from tests.waiting import wait_for

from .conftest import RunningPlatform

RATE, BURST = 20, 5  # the throttled route's: requests per second, bucket size
SEND_RATE = 3 * RATE
WINDOW_S = 5.0
MOCK = {"mock": {"status": 200, "body": {"ok": True}}}
SHOP = {
    "routes": {
        "GET /keyed": {**MOCK, "api_key": True},
        "GET /open": MOCK,
        "GET /throttled": {**MOCK, "throttle": {"rate": RATE, "burst": BURST}},
    }
}


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    root = tmp_path_factory.mktemp("api-keys")
    running = RunningPlatform(root / "state", root / "fx-config.json", Restarts())  # a killed part comes back
    try:
        with httpx.Client(base_url=running.gateway_url, timeout=30) as admin:
            r = admin.put("/system/apis/shop", json=SHOP, headers={"Authorization": f"Bearer {running.token}"})
            assert r.status_code == 200, r.text
            wait_for(lambda: admin.get("/open").status_code == 200, 30, "the API to be served")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(fx: RunningPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fx.gateway_url, timeout=30) as c:
        yield c


def create_key(fx: RunningPlatform, name: str, *flags: str) -> str:
    created = fx.fx("apikey", "create", name, "--api", "shop", *flags, "-o", "json")
    assert created.returncode == 0, created.stderr
    return json.loads(created.stdout)["value"]


def listed(fx: RunningPlatform) -> dict[str, dict]:
    done = fx.fx("apikey", "ls", "-o", "json")
    assert done.returncode == 0, done.stderr
    return {key["name"]: key for key in json.loads(done.stdout)}


def test_a_keyed_route_refuses_callers_without_a_valid_key(fx: RunningPlatform, client: httpx.Client) -> None:
    value = create_key(fx, "mobile")
    wait_for(lambda: client.get("/keyed", headers={"x-api-key": value}).status_code == 200, 30, "the key to work")
    denied_before = _sample(client, 'fx_gateway_api_denied_total{api="shop",reason="no_api_key",route="GET /keyed"}')
    for headers in ({}, {"x-api-key": "not-a-key"}, {"x-api-key": value[:-1]}):
        r = client.get("/keyed", headers=headers)
        assert (r.status_code, r.json()) == (403, {"message": "Forbidden"}), headers
    assert client.get("/open").status_code == 200  # a route without api_key takes no key

    text = fx.fx("apikey", "ls")
    assert "mobile" in text.stdout and value not in text.stdout  # shown once, at its creation, never again
    denied = _sample(client, 'fx_gateway_api_denied_total{api="shop",reason="no_api_key",route="GET /keyed"}')
    assert denied - denied_before == 3
    assert _sample(client, 'fx_gateway_api_key_requests_total{api="shop",key="mobile"}') == 1
    assert value not in client.get("/metrics").text


def _sample(client: httpx.Client, series: str) -> float:
    """A series' value on the gateway's /metrics, 0 before it exists."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_quota_refuses_the_sixth_call_with_retry_after_and_still_after_a_controller_restart(
    fx: RunningPlatform, client: httpx.Client
) -> None:
    value = create_key(fx, "daily", "--quota", "5/day")
    key = {"x-api-key": value}
    wait_for(lambda: client.get("/keyed", headers=key).status_code == 200, 30, "the key to work")  # call 1
    answers = [client.get("/keyed", headers=key) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    refused = answers[-1]
    assert refused.json() == {"message": "Limit Exceeded"}
    seconds_to_midnight = 86400 - time.time() % 86400
    assert abs(int(refused.headers["Retry-After"]) - seconds_to_midnight) < 60
    wait_for(lambda: listed(fx)["daily"]["used_today"] == 5, 30, "the usage to reach the controller")
    assert listed(fx)["daily"]["used_month"] >= 5

    launcher = fx._platform
    restarts = launcher.restart_count("controller")
    os.kill(launcher.pid("controller"), signal.SIGKILL)
    wait_for(lambda: launcher.restart_count("controller") > restarts, 30, "the controller to be restarted")
    wait_for(lambda: _listed_or_none(fx) is not None, 60, "the restarted controller to answer")
    assert listed(fx)["daily"]["used_today"] == 5  # read back from NATS, not counted again
    assert client.get("/keyed", headers=key).status_code == 429
    text = fx.fx("apikey", "ls").stdout
    assert "quota 5/day" in text


def _listed_or_none(fx: RunningPlatform) -> dict | None:
    done = fx.fx("apikey", "ls", "-o", "json")
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_a_throttled_route_refuses_what_its_rate_and_burst_do_not_cover(client: httpx.Client) -> None:
    """A client at three times the rate for about five seconds: the 429 share is what the token bucket leaves,
    computed from the measured send times (a slow machine sends fewer and expects fewer refusals)."""
    sent = []  # (send time, status)
    refusal = None
    start = time.monotonic()
    while (now := time.monotonic()) - start < WINDOW_S:
        r = client.get("/throttled")
        sent.append((now, r.status_code))
        refusal = refusal or (r if r.status_code == 429 else None)
        pause = start + len(sent) / SEND_RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing the sender, not waiting for a state
    assert {status for _, status in sent} <= {200, 429}
    span = sent[-1][0] - sent[0][0]
    refused = sum(status == 429 for _, status in sent) / len(sent)
    expected = max(0.0, 1 - (RATE * span + BURST) / len(sent))
    assert abs(refused - expected) <= 0.10, f"{len(sent)} sent over {span:.2f} s: {refused:.1%} refused, {expected:.1%}"
    if refusal is not None:  # a machine too slow to send faster than the rate gets none
        assert refusal.headers["Retry-After"] == "1" and refusal.json() == {"message": "Too Many Requests"}


def test_a_removed_key_is_refused(fx: RunningPlatform, client: httpx.Client) -> None:
    value = create_key(fx, "leaving", "--rate", "100")
    key = {"x-api-key": value}
    wait_for(lambda: client.get("/keyed", headers=key).status_code == 200, 30, "the key to work")
    removed = fx.fx("apikey", "rm", "leaving")
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: client.get("/keyed", headers=key).status_code == 403, 30, "the removed key to be refused")
    assert "leaving" not in listed(fx)
    missing = fx.fx("apikey", "rm", "leaving")
    assert missing.returncode == 2 and "fx apikey ls" in missing.stderr
