"""The deployable probe (tests/security/probe) on the embedded platform: every attack it tries from inside a
function must report blocked. The same probe runs on Kubernetes in the e2e tier."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx

PROBE = Path(__file__).parent / "probe"


def test_every_attack_of_the_probe_is_blocked(platform, make_function, tmp_path):
    # Another function, running, with a secret in its env and code on disk: what the probe goes after.
    victim = make_function(
        "victim", body="return {'statusCode': 200, 'body': 'victim'}", config={"env": {"DB_PASSWORD": "s3cret"}}
    )
    assert platform.fx("deploy", cwd=victim).returncode == 0
    assert httpx.get(f"{platform.gateway_url}/function/victim", timeout=30).text == "victim"

    probe = tmp_path / "probe"
    shutil.copytree(PROBE, probe, ignore=shutil.ignore_patterns("__pycache__"))
    deployed = platform.fx("deploy", cwd=probe)
    assert deployed.returncode == 0, deployed.stderr
    hints = {"state_dir": str(platform.state_dir), "nats_urls": platform.nats_url}
    result = platform.fx("invoke", "fx-probe", "--data", json.dumps(hints), "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict) and "read_admin_token" in report, report
    open_holes = {name: r["detail"] for name, r in report.items() if not name.startswith("_") and not r["blocked"]}
    assert not open_holes, "attacks that succeeded from inside a function:\n" + json.dumps(open_holes, indent=2)
    assert report["_probe"]["seconds"] < 20
