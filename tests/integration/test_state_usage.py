"""The state dir's usage by kind, as `fx status` and the controller's /metrics show it."""

from __future__ import annotations

import json
import re

import httpx


def test_fx_status_and_metrics_show_the_state_dir_s_usage_by_kind(platform):
    shown = platform.fx("status")
    assert shown.returncode == 0
    line = next(line for line in shown.stdout.splitlines() if line.startswith("state dir:"))
    assert re.fullmatch(
        r"state dir: +[\d.]+ MB on disk \(code [\d.]+ MB, artifacts [\d.]+ MB, logs [\d.]+ MB, nats [\d.]+ MB,"
        r" other [\d.]+ MB\)",
        line,
    )
    usage = json.loads(platform.fx("status", "-o", "json").stdout)["controller"]["state_bytes"]
    assert set(usage) == {"code", "artifacts", "logs", "nats", "other"}
    assert usage["nats"] > 0 and usage["logs"] > 0 and usage["other"] > 0  # JetStream, platform logs, the token

    metrics = httpx.get(
        f"{platform.controller_url}/metrics", headers={"Authorization": f"Bearer {platform.token}"}, timeout=10
    ).text
    assert f'fx_controller_state_bytes{{kind="nats"}} {float(usage["nats"])}' in metrics
