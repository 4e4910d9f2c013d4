"""Scale to zero, scale from zero, replacement of dead replicas, and draining on scale-down."""

import asyncio
import os
import signal
import time

import httpx

from tests.integration.helpers import call_many, metric, wait_until


def test_idle_function_scales_to_zero_and_a_burst_wakes_it_with_nothing_dropped(platform, make_function):
    project = make_function("sleepy", body="return {'statusCode': 200, 'body': 'awake'}", scale={"idle_timeout": 2})
    assert platform.fx("deploy", cwd=project).returncode == 0
    url = f"{platform.gateway_url}/function/sleepy"

    assert httpx.get(url, timeout=30).text == "awake"
    assert platform.replica_pids("sleepy")
    wait_until(lambda: not platform.replica_pids("sleepy"), 20, "the idle replica to stop")

    # 60 requests arrive while the function is at zero: all are held and answered.
    answers = asyncio.run(call_many(url, 60, concurrency=60))
    assert [r.status_code for r in answers] == [200] * 60
    assert {r.text for r in answers} == {"awake"}
    metrics = httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text
    assert metric(metrics, "fx_gateway_cold_starts_total", function="sleepy", version="1") >= 2


def test_a_replica_that_cannot_start_fails_the_held_requests_fast_and_clearly(platform, make_function):
    project = make_function("broken", body="return 1", imports="import module_that_does_not_exist")
    assert platform.fx("deploy", cwd=project).returncode == 1  # the readiness gate found it broken
    url = f"{platform.gateway_url}/function/broken"

    started = time.monotonic()
    answers = asyncio.run(call_many(url, 10, concurrency=10))
    assert time.monotonic() - started < 15
    for r in answers:
        assert r.status_code in (502, 503), r.text
        error = r.json()["error"]
        assert error["function"] == "broken"
        assert "Runtime.ImportModuleError" in error["code"] + error["message"]
        assert "module_that_does_not_exist" in error["message"]
    logs = platform.fx("logs", "broken").stdout
    assert "module_that_does_not_exist" in logs


def test_a_replica_that_dies_is_replaced(platform, make_function):
    project = make_function("phoenix", body="return {'statusCode': 200, 'body': 'ok'}", scale={"min": 1})
    assert platform.fx("deploy", cwd=project).returncode == 0
    first = wait_until(lambda: platform.replica_pids("phoenix"), 20, "the min=1 replica")
    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: platform.replica_pids("phoenix") not in ([], first), 20, "a replacement replica")
    assert httpx.get(f"{platform.gateway_url}/function/phoenix", timeout=30).text == "ok"


def test_scaling_up_and_back_down_under_load_loses_no_request(platform, make_function):
    project = make_function(
        "busy",
        body="import time; time.sleep(0.05); return {'statusCode': 200, 'body': 'done'}",
        scale={"max": 4, "concurrency": 1, "idle_timeout": 2},
    )
    assert platform.fx("deploy", cwd=project).returncode == 0
    url = f"{platform.gateway_url}/function/busy"

    # Eight callers at once against one-at-a-time replicas: the autoscaler adds replicas.
    burst = asyncio.run(call_many(url, 400, concurrency=8))
    assert [r.status_code for r in burst] == [200] * 400
    peak = len(platform.replica_pids("busy"))
    assert peak >= 2

    # One caller from here on: replicas beyond the first are drained and stopped meanwhile.
    trickle = []
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline and len(platform.replica_pids("busy")) > 1:
            trickle.append(client.get(url).status_code)
    assert len(platform.replica_pids("busy")) <= 1, "replicas did not scale down within 30 s"
    assert trickle and set(trickle) == {200}
