"""`helm install` of a small chart (tests/cluster/testdata/fx-echo), as a user would."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.cluster import layout
from tests.e2e.conftest import RUNTIME_IMAGE
from tests.e2e.kube import Kube, http

CHART = layout.HERE / "testdata" / "fx-echo"


def test_helm_install_brings_the_chart_to_ready(kube: Kube, pod_url: Callable[..., str]) -> None:
    repository, _, tag = RUNTIME_IMAGE.rpartition(":")
    kube.helm(
        "install",
        "echo",
        str(CHART),
        "--wait",
        "--timeout",
        "120s",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
    )
    try:
        releases = json.loads(kube.helm("list", "-o", "json"))
        assert [(r["name"], r["status"]) for r in releases] == [("echo", "deployed")]
        deploy = kube.get("deployment", "echo-fx-echo")
        assert deploy["status"].get("readyReplicas") == 1
        pods = kube.get("pods", "-l", "app.kubernetes.io/instance=echo")["items"]
        status, body = http("POST", pod_url(pods[0]["status"]["podIP"], "/_fx/invoke"), b'{"via": "helm"}')
        assert status == 200
        assert json.loads(body)["echo"] == {"via": "helm"}
    finally:
        kube.helm("uninstall", "echo", "--wait")
