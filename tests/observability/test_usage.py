"""`fx usage --prometheus URL` against the real Prometheus agrees with the controller's own hourly counts."""

from __future__ import annotations

import json

import pytest

from tests.observability.conftest import ASYNC_CALLS, LOAD_REQUESTS, Scenario
from tests.waiting import wait_for


def usage(scenario: Scenario, *args: str) -> dict[str, dict]:
    result = scenario.platform.fx("usage", "-o", "json", *args)
    assert result.returncode == 0, result.stderr
    return {row["function"]: row for row in json.loads(result.stdout)["rows"]}


def test_usage_from_prometheus_agrees_with_the_controllers(scenario: Scenario):
    text = scenario.platform.fx("usage", "--prometheus", scenario.prometheus.url)
    assert text.returncode == 0 and "(Prometheus)" in text.stdout and "shop" in text.stdout

    # Two paths to one count: the gateways report to the controller every second, Prometheus scrapes every second.
    def agreeing() -> tuple[dict, dict] | None:
        kept, queried = usage(scenario), usage(scenario, "--prometheus", scenario.prometheus.url)
        for function in ("shop", "slow"):
            if queried[function]["invocations"] != kept[function]["invocations"]:
                return None
            if queried[function]["gb_seconds"] != pytest.approx(kept[function]["gb_seconds"], rel=1e-9):
                return None
        return kept, queried

    kept, queried = wait_for(agreeing, 15, "the controller's counts and Prometheus's to agree exactly")
    assert queried["slow"]["invocations"] == ASYNC_CALLS
    assert kept["shop"]["invocations"] >= LOAD_REQUESTS + 4  # the load and the four seeding calls
