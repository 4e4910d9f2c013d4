"""The alert rules (charts/fx/alerts/fx-alerts.yaml) as Prometheus takes them: `promtool check rules` clean,
`promtool test rules` passing cases that fire each alert and cases that must not, and every alert tested both
ways and given a runbook section in docs/operations.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "charts" / "fx" / "alerts" / "fx-alerts.yaml"
# The cases, in two files for two evaluation intervals (alerts_slow_test.yaml says why).
CASES = (Path(__file__).with_name("alerts_test.yaml"), Path(__file__).with_name("alerts_slow_test.yaml"))
OPERATIONS = REPO / "docs" / "operations.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if not found:
        pytest.skip("no promtool: install Debian's prometheus package (apt-get install prometheus)")
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=120)


def _alerts() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_pass_promtool_check() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    rules = sum(len(group["rules"]) for group in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in done.stdout


def test_every_alert_fires_and_holds_as_its_cases_say() -> None:
    done = _promtool("test", "rules", *map(str, CASES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_case_that_fires_it_and_one_that_does_not() -> None:
    tests = [test for cases in CASES for test in yaml.safe_load(cases.read_text())["tests"]]
    checks = [c for test in tests for c in test["alert_rule_test"]]
    for alert in _alerts():
        fired = [c for c in checks if c["alertname"] == alert and c["exp_alerts"]]
        assert fired, f"no case fires {alert}"
        # Each firing case names the functions/instances it fires for; the others of its series stay quiet, and
        # alerts without such labels have a case expecting none.
        quiet = [c for c in checks if c["alertname"] == alert and not c["exp_alerts"]]
        singled_out = any(
            len(c["exp_alerts"]) == 1 and c["exp_alerts"][0]["exp_labels"].keys() - {"severity"} for c in fired
        )
        assert quiet or singled_out, f"no case shows {alert} staying quiet"


def test_every_alert_has_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9-]", "", line.lstrip("#").strip().lower().replace(" ", "-"))
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("### ")
    }
    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    for alert, rule in rules.items():
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{alert.lower()}"
        assert alert.lower() in anchors, f"docs/operations.md has no section ### {alert}"
