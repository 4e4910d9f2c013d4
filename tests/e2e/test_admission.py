"""Validation before admission: `kubectl apply` of a Function refuses what `fx deploy` refuses, with fx's
message (the CRD's schema and CEL rules first, then the controller's webhook), and a good one passes."""

from __future__ import annotations

import base64
import json

import pytest

from tests.e2e.conftest import RELEASE
from tests.e2e.kube import Kube, http
from tests.e2e.test_fx_kubernetes import _call, _project
from tests.waiting import wait_for


def _function(name: str, spec: dict) -> str:
    return json.dumps({"apiVersion": "fx.dev/v1alpha1", "kind": "Function", "metadata": {"name": name}, "spec": spec})


def _fx_says(kube: Kube, gateway: str, name: str, spec: dict) -> str:
    """What `fx deploy` of this spec is told: the admin API's dry-run refusal."""
    token = base64.b64decode(kube.get("secret", f"{RELEASE}-admin-token")["data"]["token"]).decode()
    status, body = http(
        "PUT",
        f"{gateway}/system/functions/{name}?dry_run=true",
        json.dumps({**spec, "name": name}).encode(),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 400, body
    error = json.loads(body)["error"]
    return f"{error['code']}: {error['message']}"


def test_kubectl_apply_refuses_what_fx_deploy_refuses_with_its_message(kube: Kube, fx) -> None:
    fx("deploy", cwd=_project(fx.home, "admitted"))
    good = kube.get("function", "admitted")["spec"]
    refused = {
        "bad-schedule": {**good, "triggers": [{"schedule": "cron(99 * * * ? *)"}]},
        "unknown-digest": {**good, "artifact": "sha256:" + "0" * 64},
    }
    for name, spec in refused.items():
        message = _fx_says(kube, fx.gateway, name, spec)
        with pytest.raises(AssertionError) as refusal:
            kube.apply(_function(name, spec))
        assert message in str(refusal.value), (message, str(refusal.value))
        assert "denied the request" in str(refusal.value)
    # Memory out of range: the CRD's bounds answer first, in the words fx uses.
    with pytest.raises(AssertionError, match="should be greater than or equal to 128"):
        kube.apply(_function("too-small", {**good, "memory": 64}))
    assert [f["metadata"]["name"] for f in kube.get("functions")["items"]] == ["admitted"]

    # A good one passes, and fx deploys it (GitOps), as before the webhook.
    kube.apply(_function("applied-ok", {**good, "env": {"FROM": "kubectl"}}))
    wait_for(lambda: "applied-ok" in fx("ls").stdout, 60, "the applied Function deployed")
    assert _call(fx.gateway, "applied-ok", "kubectl")[0] == 200
    # An update that keeps the spec (a label) is not sent to the webhook; one that breaks it is refused.
    kube.kubectl("label", "function", "applied-ok", "team=a")
    with pytest.raises(AssertionError, match="ArtifactNotFound"):
        kube.kubectl(
            "patch", "function", "applied-ok", "--type=merge", "-p", '{"spec": {"artifact": "sha256:' + "1" * 64 + '"}}'
        )
    kube.kubectl("delete", "function", "applied-ok")
    fx("rm", "admitted")
