"""The alert rules (charts/fx/alerts/fx-alerts.yaml) in the real Prometheus that scraped the scenario: promtool
checks them against made-up series (tests/unit/charts/test_alerts.py); here they meet the series fx really
exports: a rule that fails on them (a join that matches many series to many) is unhealthy, and the alert the
scenario must cause (its dead letter) fires, so a renamed metric or label shows."""

from __future__ import annotations

from tests.observability.conftest import Scenario
from tests.waiting import wait_for


def test_every_rule_evaluates_on_the_real_series(scenario: Scenario):
    def evaluated() -> bool:
        return all(rule.get("lastEvaluation", "").startswith("20") for rule in scenario.prometheus.rules())

    wait_for(evaluated, 30, "every rule to be evaluated once")
    broken = {rule["name"]: rule.get("lastError") for rule in scenario.prometheus.rules() if rule["health"] != "ok"}
    assert not broken, broken


def test_the_scenarios_dead_letter_fires_its_alert_and_nothing_pages(scenario: Scenario):
    def alerts() -> dict[str, set[str]]:
        firing: dict[str, set[str]] = {}
        for rule in scenario.prometheus.rules():
            for alert in rule.get("alerts", []):
                firing.setdefault(rule["name"], set()).add(alert["labels"].get("function", ""))
        return firing

    wait_for(lambda: "failing" in alerts().get("FxDeadLettersGrowing", set()), 30, "FxDeadLettersGrowing for 'failing'")
    # The platform is healthy: no critical alert about the platform itself is pending or firing.
    platform_alerts = {"FxNatsDisconnected", "FxControllerLeaderMissing", "FxGatewaysDown", "FxScrapeDown"}
    assert not platform_alerts & set(alerts()), alerts()
