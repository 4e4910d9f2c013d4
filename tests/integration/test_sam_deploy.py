"""`fx deploy -f template.yaml` on the real platform: AWS's SAM samples deployed unmodified and served; a template
with something fx cannot honour deploys nothing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.integration.conftest import RunningPlatform
from tests.integration.sam_templates import hello_world, scheduled
from tests.waiting import wait_for


def test_hello_world_sample_is_deployed_unmodified(platform: RunningPlatform, tmp_path: Path) -> None:
    template = hello_world(tmp_path)
    done = platform.fx("deploy", "-f", str(template))
    assert done.returncode == 0, done.stderr
    assert "hello-world-function: version 1 deployed" in done.stdout
    assert "Events.HelloWorld (Api GET /hello) -> route GET /hello, and /function/hello-world-function/hello" in (
        done.stderr
    )
    answer = httpx.get(f"{platform.gateway_url}/function/hello-world-function/hello", timeout=30)
    assert answer.status_code == 200 and answer.json() == {"message": "hello world"}
    # At the root too, as the sample's own curl on AWS: its Api event is a route of the template's API.
    routed = wait_for(
        lambda: (r := httpx.get(f"{platform.gateway_url}/hello", timeout=30)).status_code == 200 and r, 30, "GET /hello"
    )
    assert routed.json() == {"message": "hello world"}
    spec = json.loads(platform.fx("describe", "hello-world-function", "-o", "json").stdout)["versions"][0]["spec"]
    assert (spec["http"]["event"], spec["timeout"], spec["dependencies"] is not None) == ("v1", 3.0, True)

    again = platform.fx("deploy", "-f", str(template))
    assert again.returncode == 0 and "unchanged, still version 1" in again.stdout


def test_scheduled_sample_is_deployed_with_its_schedule(platform: RunningPlatform, tmp_path: Path) -> None:
    done = platform.fx("deploy", "-f", str(scheduled(tmp_path)))
    assert done.returncode == 0, done.stderr
    spec = json.loads(platform.fx("describe", "scheduled-function", "-o", "json").stdout)["versions"][0]["spec"]
    assert [t["schedule"] for t in spec["triggers"]] == ["rate(1 minute)"]
    assert (spec["memory"], spec["timeout"]) == (128, 10.0)


def test_alias_and_linear_shifting_from_the_template(platform: RunningPlatform, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return 1\n")
    template = tmp_path / "template.yaml"
    body = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Shop:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src
      Handler: app.handler
      Runtime: python3.11
      AutoPublishAlias: live
      DeploymentPreference:
        Type: Linear10PercentEvery10Minutes
"""
    template.write_text(body)
    first = platform.fx("deploy", "-f", str(template))
    assert first.returncode == 0, first.stderr
    assert "shop: alias live -> version 1" in first.stderr  # a new function takes its traffic at once
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return 2\n")
    second = platform.fx("deploy", "-f", str(template))
    assert second.returncode == 0, second.stderr
    assert "shop: shifting traffic to version 2, 10 % every 10 min" in second.stderr
    info = json.loads(platform.fx("describe", "shop", "-o", "json").stdout)
    assert info["traffic"] == {"1": 90, "2": 10} and info["aliases"] == {"live": 2}
    assert info["rollout"] is not None


def test_a_template_fx_cannot_honour_deploys_nothing(platform: RunningPlatform, tmp_path: Path) -> None:
    template = hello_world(tmp_path)
    template.write_text(template.read_text().replace("      Handler:", "      Layers: [!Ref Deps]\n      Handler:"))
    done = platform.fx("deploy", "-f", str(template))
    assert done.returncode == 2
    assert "Resources.HelloWorldFunction.Properties.Layers: fx has no such setting" in done.stderr
    assert "nothing was deployed" in done.stderr
    assert json.loads(platform.fx("ls", "-o", "json").stdout) == []
