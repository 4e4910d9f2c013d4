"""Every panel of every dashboard (charts/fx/dashboards) answers with data from a real Prometheus scraping the
platform, and the panels an operator acts on show what the scenario did (conftest.py)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from tests.observability.conftest import ORDERS_MESSAGES, Scenario
from tests.observability.prometheus import finite_points
from tests.observability.render import render

DASHBOARDS = Path(__file__).resolve().parents[2] / "charts" / "fx" / "dashboards"
DOCS_PICTURES = Path(__file__).resolve().parents[2] / "docs" / "dashboards"
# The variables as an operator would set them on the function dashboard: both versions side by side.
VARIABLES = {"$function": "shop", "$version": "1|2", "$__rate_interval": "1m"}


def substituted(expr: str, rate_interval: str = "1m") -> str:
    for name, value in {**VARIABLES, "$__rate_interval": rate_interval}.items():
        expr = expr.replace(name, value)
    return expr


def targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every query of every dashboard."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append((path.stem, panel["title"], target["expr"]))
    return out


def panel_expr(dashboard: str, title: str) -> str:
    [expr] = [e for d, t, e in targets() if d == dashboard and t == title]
    return expr


@pytest.mark.parametrize(("dashboard", "title", "expr"), targets(), ids=[f"{d}:{t}" for d, t, _ in targets()])
def test_every_panel_query_returns_data(scenario: Scenario, dashboard: str, title: str, expr: str):
    series = scenario.prometheus.query_range(substituted(expr), scenario.started, time.time())
    assert finite_points(series), f"{dashboard} / {title}: no data for {substituted(expr)}"


def test_the_function_variables_list_the_function_and_both_versions(scenario: Scenario):
    board = json.loads((DASHBOARDS / "fx-function.json").read_text())
    queries = {v["name"]: v.get("definition", "") for v in board["templating"]["list"]}
    match = queries["function"].removeprefix("label_values(").rpartition(",")[0]
    assert "shop" in scenario.prometheus.label_values("function", match)
    match = queries["version"].removeprefix("label_values(").rpartition(",")[0].replace("$function", "shop")
    assert set(scenario.prometheus.label_values("version", match)) == {"1", "2"}


def window(scenario: Scenario, since: float = 0.0) -> str:
    """A range covering the whole scenario (or from `since`, and the scrape before it), for the panels' rate
    windows: the values are then the scenario's."""
    return f"{math.ceil(time.time() - (since or scenario.started)) + (1 if since else 5)}s"


def by_version(scenario: Scenario, expr: str) -> dict[str, float]:
    return {s["metric"]["version"]: float(s["value"][1]) for s in scenario.prometheus.query(expr)}


def test_the_canary_error_rate_panel_shows_the_injected_errors(scenario: Scenario):
    expr = substituted(panel_expr("fx-function", "Error rate (5xx) by version"), window(scenario))
    shown = by_version(scenario, expr)
    # The seeding requests are their series' first samples, which no increase() counts: the load's share alone.
    injected = scenario.canary_errors / (scenario.canary_errors + scenario.canary_ok)
    assert shown["1"] == 0
    assert shown["2"] == pytest.approx(injected, abs=0.05)
    assert scenario.canary_errors > 0


def test_the_traffic_split_panel_shows_the_canary_share(scenario: Scenario):
    expr = substituted(panel_expr("fx-function", "Traffic split"), window(scenario))
    shown = by_version(scenario, expr)
    assert shown["1"] + shown["2"] == pytest.approx(1.0)
    assert 0.03 < shown["2"] < 0.25  # 10 % of the load, plus the few requests pinned to v2


def test_the_cold_start_panel_counts_the_cold_start_caused(scenario: Scenario):
    since = window(scenario, scenario.cold_start_at)
    expr = substituted(panel_expr("fx-function", "Cold starts by version"), since)
    assert round(by_version(scenario, expr)["1"]) == scenario.cold_starts
    # Each cold start here was one request held (they came one at a time): the controller saw as many, by phase.
    held = scenario.prometheus.value('fx_gateway_cold_starts_total{function="shop", version="1"}')
    phases = scenario.prometheus.query(
        'sum by (phase) (fx_controller_cold_start_phase_seconds_count{function="shop", version="1"})'
    )
    assert {s["metric"]["phase"]: float(s["value"][1]) for s in phases} == dict.fromkeys(
        ("queueing", "spawn", "init"), held
    )


def test_the_dead_letter_panel_shows_the_dead_letter(scenario: Scenario):
    series = scenario.prometheus.query(panel_expr("fx-events", "Dead letters"))
    shown = {(s["metric"]["function"], s["metric"]["reason"]): float(s["value"][1]) for s in series}
    assert shown == {("failing", "retries_exhausted"): 1}


def test_the_backlog_and_redelivery_panels_show_the_queues(scenario: Scenario):
    backlog = scenario.prometheus.query_range(panel_expr("fx-events", "Async backlog"), scenario.started, time.time())
    peaks = {s["metric"]["function"]: max(float(v) for _, v in s["values"]) for s in backlog}
    assert peaks.get("slow", 0) >= 2  # calls waited behind the one replica
    series = scenario.prometheus.query(panel_expr("fx-events", "Trigger redeliveries"))
    assert [float(s["value"][1]) for s in series if s["metric"]["function"] == "orders"] == [ORDERS_MESSAGES]


def test_each_dashboard_renders_from_the_queried_data(scenario: Scenario, tmp_path):
    """A picture of each dashboard from Prometheus's answers; FX_RENDER_DASHBOARDS=docs writes them to
    docs/dashboards/ (the pictures docs/dashboards.md shows) instead of a temporary folder."""
    out = DOCS_PICTURES if os.environ.get("FX_RENDER_DASHBOARDS") == "docs" else tmp_path
    end = time.time()
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        results = {
            (panel["id"], target["refId"]): scenario.prometheus.query_range(
                substituted(target["expr"]), scenario.started, end
            )
            for panel in board["panels"]
            for target in panel["targets"]
        }
        picture = out / f"{path.stem}.png"
        render(board, results, picture)
        assert picture.stat().st_size > 10_000
