"""FX_REQUIRE_E2E=1 (.ci/run) turns a skipped end-to-end or chart test into a failure: CI cannot pass without
Kubernetes. Run as CI would run them, in a pytest of their own."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_run(tmp_path: Path, target: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FX_")}
    # no helm: not on PATH, none cached under HOME
    clean.update(HOME=str(tmp_path), PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin", **env)
    command = [sys.executable, "-m", "pytest", target, "-q", "-p", "no:cacheprovider", "-x"]
    return subprocess.run(command, cwd=REPO, env=clean, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("target", "tier"),
    [
        ("tests/e2e/test_cluster.py", {}),  # no cluster named: the e2e tier skips itself
        ("tests/unit/charts/test_chart.py", {"FX_E2E": "1"}),  # the tier's run of the chart tests, no helm
    ],
)
def test_a_skipped_e2e_or_chart_test_fails_only_when_required(tmp_path, target, tier):
    skipped = pytest_run(tmp_path, target, **tier)
    assert skipped.returncode == 0 and "skipped" in skipped.stdout, skipped.stdout
    required = pytest_run(tmp_path, target, FX_REQUIRE_E2E="1", **tier)
    assert required.returncode == 1, required.stdout
    assert "skipped, but FX_REQUIRE_E2E=1 requires this test to run" in required.stdout


def test_the_plain_run_may_skip_the_chart_tests_before_the_tier_builds_helm(tmp_path):
    assert pytest_run(tmp_path, "tests/unit/charts/test_chart.py", FX_REQUIRE_E2E="1").returncode == 0


def test_make_fails_when_the_e2e_tier_cannot_run_and_it_is_required(tmp_path):
    """Where the harness cannot run (not root: run as nobody here) the tier says so, and fails with the switch."""
    as_user = ["runuser", "-u", "nobody", "--"] if os.getuid() == 0 else []
    command = [*as_user, "make", "--no-print-directory", "e2e-tier", f"FX_CLUSTER_STATE={tmp_path / 'none'}"]

    def make(**env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FX_")}
        return subprocess.run(command, cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=60)

    allowed = make()
    assert allowed.returncode == 0 and "e2e tier not run" in allowed.stdout, allowed.stdout + allowed.stderr
    required = make(FX_REQUIRE_E2E="1")
    assert required.returncode != 0 and "FX_REQUIRE_E2E=1: the e2e tier must run" in required.stdout
