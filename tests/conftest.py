"""What every test shares: an exception in a task the gateway or the controller `spawn`ed fails the test that
caused it, and with FX_REQUIRE_E2E=1 (CI, .ci/run) a skipped end-to-end or chart test is a failure."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
# Debian tools tests use wherever they run, installed before the first test on a machine where we may (root):
# promtool checks the metrics and alert rules (also in tests/unit and tests/integration, which run before the
# observability tier that starts Prometheus), dot renders `fx graph`.
DEBIAN_TOOLS = {"prometheus": "prometheus", "promtool": "prometheus", "dot": "graphviz"}


def pytest_sessionstart(session: pytest.Session) -> None:
    # Under pytest-xdist the controller installs them before it starts its workers (its own sessionstart hook
    # runs last); workers installing too would race for dpkg's lock.
    if sys.platform == "linux" and os.geteuid() == 0 and "PYTEST_XDIST_WORKER" not in os.environ:
        from tools.shell import ensure_apt_packages

        ensure_apt_packages(DEBIAN_TOOLS)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test` runs these tiers on pytest-xdist workers (-n 2): a test file goes whole to one worker, so a
    module-scoped platform (or Keycloak) starts once, and the observability tier, whose files share one
    session-scoped scenario (a platform and a Prometheus), goes whole to one worker too."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "tests/observability" if path.startswith("tests/observability/") else path

    return ByFile(config, log)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def spawned_tasks_do_not_fail() -> Iterator[_Collect]:
    """fx_gateway.tasks and fx_controller.tasks log a spawned task's exception when it ends (no one awaits
    those tasks)."""
    collect, loggers = _Collect(), [logging.getLogger(f"{c}.tasks") for c in ("fx_gateway", "fx_controller")]
    for logger in loggers:
        logger.addHandler(collect)
    try:
        yield collect
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
    if collect.records:
        failures = "\n".join(collect.format(r) for r in collect.records)
        pytest.fail(f"a spawned task failed during the test:\n{failures}", pytrace=False)


def _required(item: pytest.Item) -> bool:
    """Whether FX_REQUIRE_E2E forbids skipping `item`: the e2e tier always; the chart tests in that tier's run
    (FX_E2E or FX_E2E_KUBECONFIG; the plain run before it may not have helm yet, which the tier builds)."""
    if os.environ.get("FX_REQUIRE_E2E") != "1":
        return False
    if item.path.is_relative_to(TESTS / "e2e"):
        return True
    in_tier = os.environ.get("FX_E2E") == "1" or bool(os.environ.get("FX_E2E_KUBECONFIG"))
    return in_tier and item.path.is_relative_to(TESTS / "unit" / "charts")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _required(item):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but FX_REQUIRE_E2E=1 requires this test to run: {reason}"
