"""The chart's admission webhook: served by the leading controller over HTTPS with a certificate the chart makes,
whose CA is the webhook's caBundle; only for specs that change, never for the controller's own writes."""

from __future__ import annotations

import base64
import subprocess

from tests.unit.charts.test_chart import named, of_kind, render


def test_the_webhook_trusts_the_certificate_the_controller_serves() -> None:
    docs = render()
    secret = named(docs, "Secret", "-webhook-tls")
    [hook] = named(docs, "ValidatingWebhookConfiguration", "-functions")["webhooks"]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    pem = base64.b64decode(secret["data"]["tls.crt"])
    sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=pem, capture_output=True)
    assert b"DNS:fx-controller.fx.svc" in sans.stdout, sans.stderr
    assert hook["clientConfig"]["service"] == {
        "namespace": "fx",
        "name": "fx-controller",
        "path": "/validate/functions",
        "port": 443,
    }
    service = named(docs, "Service", "-controller")
    assert {"name": "webhook", "port": 443, "targetPort": "webhook"} in service["spec"]["ports"]
    assert hook["failurePolicy"] == "Fail" and hook["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "fx"
    }
    conditions = {c["name"]: c["expression"] for c in hook["matchConditions"]}
    assert "system:serviceaccount:fx:fx-controller" in conditions["not-the-controller"]
    assert conditions["spec-changes"] == "request.operation != 'UPDATE' || object.spec != oldObject.spec"
    controller = named(docs, "Deployment", "-controller")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in controller["containers"][0]["env"]}
    assert env["FX_K8S_WEBHOOK_CERT_DIR"] == "/var/run/fx/webhook"
    policy = named(docs, "NetworkPolicy", "-controller")
    assert {"ports": [{"protocol": "TCP", "port": 8443}]} in policy["spec"]["ingress"]


def test_no_webhook_when_disabled() -> None:
    docs = render("admission.enabled=false")
    assert not of_kind(docs, "ValidatingWebhookConfiguration")
    assert not [s for s in of_kind(docs, "Secret") if s["metadata"]["name"].endswith("-webhook-tls")]
    env = named(docs, "Deployment", "-controller")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "FX_K8S_WEBHOOK_CERT_DIR" not in {e["name"] for e in env}
