"""Billed usage as an operator reads it: `fx usage` (invocations, GB-seconds, cost per function or version), which
survives a restart, and the metrics behind it, which pass `promtool check metrics` (docs/metrics.md)."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import metric
from tests.waiting import wait_for


@pytest.fixture(autouse=True)
def fast_reports(monkeypatch):
    """Gateways report usage every 0.2 s (10 s by default) and sample queues every 0.5 s; autouse fixtures come
    first, so the platform is started with these."""
    monkeypatch.setenv("FX_USAGE_INTERVAL", "0.2")
    monkeypatch.setenv("FX_BACKLOG_INTERVAL", "0.5")


def usage(platform: RunningPlatform, *args: str) -> dict:
    result = platform.fx("usage", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def gateway_metrics(platform: RunningPlatform) -> str:
    return httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text


def test_usage_shows_invocations_gb_seconds_and_cost_and_survives_a_restart(platform, make_function):
    project = make_function("billed", body="return {'statusCode': 200, 'body': 'ok'}", config={"memory": 256})
    assert platform.fx("deploy", cwd=project).returncode == 0
    for _ in range(5):
        assert httpx.get(f"{platform.gateway_url}/function/billed", timeout=30).status_code == 200

    text = gateway_metrics(platform)
    assert metric(text, "fx_gateway_invocations_total", function="billed", version="1") == 5
    billed = metric(text, "fx_gateway_billed_gigabyte_seconds_total", function="billed", version="1")
    assert billed >= 5 * 256 / 1024 / 1000  # at least 1 ms each, at 0.25 GB
    assert metric(text, "fx_gateway_function_duration_seconds_count", function="billed", version="1") == 5

    shown = wait_for(
        lambda: (u := usage(platform))["rows"] and u["rows"][0]["invocations"] == 5 and u,
        timeout=15,
        what="the controller to have the gateway's usage report",
    )
    row = shown["rows"][0]
    assert row["function"] == "billed" and row["gb_seconds"] == pytest.approx(billed, rel=1e-6)
    assert row["cost"] == pytest.approx(billed * 0.0000166667 + 5 / 1e6 * 0.20)
    assert shown["total"]["invocations"] == 5

    by_version = usage(platform, "--by", "version", "--price-gb-second", "1", "--price-per-million", "0")
    assert by_version["rows"][0]["version"] == 1 and by_version["rows"][0]["cost"] == pytest.approx(billed)

    table = platform.fx("usage", "--since", "7d")
    assert table.returncode == 0 and "billed" in table.stdout and "GB-SECONDS" in table.stdout

    platform.restart()  # kept in NATS, not in the controller's memory
    assert usage(platform)["rows"][0]["invocations"] == 5


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not a duration"),
        (["--since", "0s"], "--since '0s' is not a duration"),
        (["--price-gb-second", "-1"], "--price-gb-second -1.0 is negative"),
        (["--by", "team"], "invalid choice: 'team'"),
    ],
)
def test_usage_refuses_bad_input(platform, args, complaint):
    result = platform.fx("usage", *args)
    assert result.returncode == 2 and complaint in result.stderr and "Traceback" not in result.stderr


def test_usage_without_a_reachable_prometheus_fails_with_a_reason(platform):
    result = platform.fx("usage", "--prometheus", "http://127.0.0.1:9")  # the discard port: nothing listens
    assert result.returncode == 1 and "Prometheus at http://127.0.0.1:9 did not answer" in result.stderr


def test_every_metric_passes_promtool(platform, make_function):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (tests/observability does it)"
    project = make_function("linted", body="return {'statusCode': 200, 'body': 'ok'}", scale={"idle_timeout": 1})
    assert platform.fx("deploy", cwd=project).returncode == 0
    assert httpx.get(f"{platform.gateway_url}/function/linted", timeout=30).status_code == 200
    wait_for(lambda: not platform.replica_pids("linted"), 20, "the idle replica to stop")
    assert httpx.get(f"{platform.gateway_url}/function/linted", timeout=30).status_code == 200  # a cold start
    auth = {"Authorization": f"Bearer {platform.token}"}
    controller = httpx.get(f"{platform.controller_url}/metrics", headers=auth, timeout=10).text
    for name, text in (("gateway", gateway_metrics(platform)), ("controller", controller)):
        checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert checked.returncode == 0, f"{name}: {checked.stdout}{checked.stderr}"
    assert metric(controller, "fx_controller_is_leader") == 1
    assert metric(controller, "fx_controller_nats_connected") == 1
    for phase in ("queueing", "spawn", "init"):
        assert metric(controller, "fx_controller_cold_start_phase_seconds_count", function="linted", phase=phase) == 1
    assert metric(controller, "fx_controller_reconcile_seconds_count", loop="scale") > 0
    gateway = gateway_metrics(platform)
    assert metric(gateway, "fx_gateway_nats_connected") == 1
    assert metric(gateway, "fx_gateway_hold_seconds_count", function="linted", version="1") == 1
