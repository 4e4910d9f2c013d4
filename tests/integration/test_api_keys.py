"""API keys, quotas and throttles of API routes on the real platform, driven as a user would (`fx apikey`, plain
HTTP calls): 403 without a valid key; a daily quota refused with Retry-After, and still after the controller and
the gateway are killed and restarted; the usage `fx apikey ls` shows; a route throttle measured over a bounded
window; a removed key refused; per-key metrics naming the key, never its value; two gateways sharing a throttle
and a quota.

The routes are mocks: no replica is involved, so the throttle is measured on the gateway alone."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fx.platform import Restarts

from tests.loopback import free_port
from tests.waiting import wait_for

from .conftest import RunningPlatform

RATE, BURST = 20, 5  # the throttled route's: requests per second, bucket size
SEND_RATE = 3 * RATE
WINDOW_S = 5.0
REPORTS_OK = 'fx_gateway_api_usage_reports_total{result="ok"}'
MOCK = {"mock": {"status": 200, "body": {"ok": True}}}
SHOP = {
    "routes": {
        "GET /keyed": {**MOCK, "api_key": True},
        "GET /open": MOCK,
        "GET /throttled": {**MOCK, "throttle": {"rate": RATE, "burst": BURST}},
        "GET /shared": {**MOCK, "throttle": {"rate": 0.5, "burst": 10}},
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


def test_a_quota_refuses_the_sixth_call_with_retry_after_and_still_after_controller_and_gateway_restarts(
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

    # a restarted gateway starts from the controller's totals, not from zero
    restarts = launcher.restart_count("gateway")
    os.kill(launcher.pid("gateway"), signal.SIGKILL)
    wait_for(lambda: launcher.restart_count("gateway") > restarts, 30, "the gateway to be restarted")
    wait_for(lambda: _reachable_sample(client, REPORTS_OK) >= 1, 60, "the new gateway's first report acknowledged")
    assert client.get("/keyed", headers=key).status_code == 429
    # the killed gateway stops counting as live after three of its intervals: N is 1 again
    wait_for(lambda: _sample(client, "fx_gateway_api_gateways") == 1, 30, "the killed gateway to be forgotten")


def _reachable_sample(client: httpx.Client, series: str) -> float:
    """`_sample`, or -1 while the gateway does not answer (restarting)."""
    try:
        return _sample(client, series)
    except httpx.TransportError:
        return -1.0


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


def test_two_gateways_share_a_throttle_and_see_each_others_quota_use(
    fx: RunningPlatform, client: httpx.Client, tmp_path: Path
) -> None:
    """A second gateway on the same NATS: each learns from the controller that two share the throttles and
    enforces half of each; a quota used half on each gateway is refused on both once the totals come back."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("fx-gateway")),
        *("--nats", fx.nats_url, "--nats-creds", str(fx._platform.nats_auth_dir / "gateway.creds")),
        *("--listen", f"127.0.0.1:{port}", "--controller", fx.controller_url, "--gateway-id", "second"),
    ]
    with (tmp_path / "second-gateway.log").open("wb") as log:
        gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as second:
            wait_for(lambda: _healthy(second), 60, "the second gateway to be ready")
            for each in (client, second):
                wait_for(lambda c=each: _sample(c, "fx_gateway_api_gateways") == 2, 30, "N = 2 on both gateways")

            started = time.monotonic()
            admitted = [sum(c.get("/shared").status_code == 200 for _ in range(8)) for c in (client, second)]
            # burst 10 shared by two: 5 each, plus what the whole rate (0.5/s) refills meanwhile, at most
            most = 5 + math.ceil(0.5 * (time.monotonic() - started))
            assert all(5 <= n <= most for n in admitted), admitted

            value = create_key(fx, "shared", "--quota", "4/day")
            key = {"x-api-key": value}
            for each in (client, second):  # one admitted call on each once it has the key, then one more
                wait_for(lambda c=each: c.get("/keyed", headers=key).status_code == 200, 30, "the key on each")
                assert each.get("/keyed", headers=key).status_code == 200
            wait_for(lambda: listed(fx)["shared"]["used_today"] == 4, 30, "both gateways' counts to be stored")
            # two more acknowledged reports each: the second was answered after the controller had all four
            reported = [_sample(c, REPORTS_OK) for c in (client, second)]
            for each, before in zip((client, second), reported, strict=True):
                wait_for(lambda c=each, n=before: _sample(c, REPORTS_OK) >= n + 2, 30, "two reports acknowledged")
            for each in (client, second):  # each counted 2 of 4 itself: the other's 2 came with the totals
                refused = each.get("/keyed", headers=key)
                assert (refused.status_code, refused.json()) == (429, {"message": "Limit Exceeded"})
    finally:
        gateway.terminate()
        try:
            gateway.wait(15)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
