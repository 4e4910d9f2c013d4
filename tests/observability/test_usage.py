"""`fx usage --prometheus URL` against the real Prometheus agrees with the controller's own hourly counts."""

from __future__ import annotations

import json

import pytest

from tests.observability.conftest import Scenario
from tests.waiting import wait_for


def usage(scenario: Scenario, *args: str) -> dict[str, dict]:
    result = scenario.platform.fx("usage", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    return {row["function"]: row for row in json.loads(result.stdout)["rows"]}


def test_usage_from_prometheus_agrees_with_the_controllers(scenario: Scenario):
    text = scenario.platform.fx("usage", "--prometheus", scenario.prometheus.url)
    assert text.returncode == 0 and "(Prometheus)" in text.stdout and "shop" in text.stdout
    # The gateways report every second here; Prometheus scrapes every second.
    kept = wait_for(
        lambda: (u := usage(scenario))["shop"]["invocations"] >= scenario.canary_ok + scenario.stable_ok and u,
        15,
        "the controller to have the load's usage",
    )
    queried = usage(scenario, "--prometheus", scenario.prometheus.url)
    for function in ("shop", "slow"):
        # A version's counter first scraped after its first calls starts above 0, which increase() cannot see.
        invocations, gb_seconds = kept[function]["invocations"], kept[function]["gb_seconds"]
        assert queried[function]["invocations"] == pytest.approx(invocations, abs=3)
        assert queried[function]["gb_seconds"] == pytest.approx(gb_seconds, abs=3 * gb_seconds / invocations + 1e-6)
