"""The chart's scrape annotations, on a real cluster: every pod that says `prometheus.io/scrape` answers
Prometheus text on the port and path it names (the standby controller too), and a pod outside the release, as
a Prometheus would be, reaches those metrics ports through the NetworkPolicies but not the admin port."""

from __future__ import annotations

import json
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RELEASE, RUNTIME_IMAGE, leader
from tests.e2e.kube import Kube, http
from tests.e2e.manifests import pod, runtime_pod_spec

# What a scraper does, from inside the cluster: GET each URL, report status, content type and body (or the error).
SCRAPER = """import urllib.request


def handler(event, context):
    found = {}
    for url in event["urls"]:
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                body = answer.read().decode()
                found[url] = {"status": answer.status, "type": answer.headers["content-type"], "body": body}
        except Exception as exc:
            found[url] = {"error": type(exc).__name__}
    return found
"""


def _annotated(kube: Kube) -> list[dict]:
    pods = kube.get("pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    return [p for p in pods if p["metadata"].get("annotations", {}).get("prometheus.io/scrape") == "true"]


def _target(p: dict) -> tuple[str, int, str]:
    notes = p["metadata"]["annotations"]
    return p["status"]["podIP"], int(notes["prometheus.io/port"]), notes["prometheus.io/path"]


def _families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def _expected_family(p: dict) -> str:
    component = p["metadata"]["labels"]["app.kubernetes.io/component"]
    return {"gateway": "fx_gateway_requests", "controller": "fx_controller_replicas"}[component]


def test_every_annotated_pod_answers_prometheus_text_where_it_says(kube: Kube, fx, pod_url: Callable[..., str]) -> None:
    fx("version")  # the release answers
    annotated = _annotated(kube)
    # The gateways and both controllers (leader and standby); NATS (no Prometheus text) and functions are not.
    assert sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in annotated) == [
        "controller",
        "controller",
        "gateway",
        "gateway",
    ]
    assert leader(kube) in {p["metadata"]["name"] for p in annotated}
    for p in annotated:
        ip, port, path = _target(p)
        status, body = http("GET", pod_url(ip, path, port))
        assert status == 200, f"{p['metadata']['name']} {port}{path}: {status} {body[:200]!r}"
        assert _expected_family(p) in _families(body.decode()), p["metadata"]["name"]


def test_a_scraper_pod_reaches_the_metrics_ports_and_not_the_admin_port(
    kube: Kube, fx, pod_url: Callable[..., str]
) -> None:
    name = "scraper"
    kube.apply(
        json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"handler.py": SCRAPER}}
        )
    )
    kube.apply(pod(name, runtime_pod_spec(RUNTIME_IMAGE, name, name)))
    try:
        scraper = kube.wait_ready(name)
        annotated = _annotated(kube)
        urls = {f"http://{ip}:{port}{path}": p for p in annotated for ip, port, path in [_target(p)]}
        controller = next(
            p for p in annotated if p["metadata"]["labels"]["app.kubernetes.io/component"] == "controller"
        )
        admin = f"http://{controller['status']['podIP']}:8081/metrics"
        status, body = http(
            "POST",
            pod_url(scraper["status"]["podIP"], "/_fx/invoke"),
            json.dumps({"urls": [*urls, admin]}).encode(),
            timeout=60,
        )
        assert status == 200, body
        found = json.loads(body)
        for url, p in urls.items():
            assert found[url].get("status") == 200, (url, found[url])
            assert found[url]["type"].startswith("text/plain; version="), found[url]
            assert _expected_family(p) in _families(found[url]["body"]), url
        assert "error" in found[admin], f"the admin port answered a pod outside the release: {found[admin]}"
    finally:
        kube.kubectl("delete", "pod", name, "--wait=false")
        kube.kubectl("delete", "configmap", name)
