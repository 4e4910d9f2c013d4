"""The chart's scrape annotations and PodMonitor, on a real cluster: every pod that says `prometheus.io/scrape`
answers Prometheus text on the port and path it names (the standby controller too); the PodMonitor the chart
renders for this release selects those pods and names ports that answer, under the job names the alert rules
expect; and a pod outside the release, as a Prometheus would be, reaches the metrics ports through the
NetworkPolicies but not the admin port. (The Prometheus Operator's CRDs are not on the harness: the PodMonitor
is rendered with `helm template` from the release's own values, and checked against the running pods.)"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RELEASE, RUNTIME_IMAGE, Chart, leader
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


def _pod_monitor(kube: Kube, chart: Chart, tmp_path: Path) -> dict:
    values = tmp_path / "values.yaml"
    values.write_text(kube.helm("get", "values", RELEASE, "-o", "yaml"))
    rendered = kube.helm(
        "template",
        RELEASE,
        str(chart.path),
        "-f",
        str(values),
        "--set",
        "metrics.podMonitor.enabled=true",
        "--show-only",
        "templates/monitoring.yaml",
    )
    [monitor] = [doc for doc in yaml.safe_load_all(rendered) if doc and doc["kind"] == "PodMonitor"]
    return monitor


def _relabel(pod: dict, rules: list[dict]) -> dict[str, str] | None:
    """The target labels Prometheus would give this pod by `rules` (the kinds the chart uses: keep, and replace
    from pod labels); None when a rule drops it."""
    meta = {
        "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key): value
        for key, value in pod["metadata"]["labels"].items()
    }
    target: dict[str, str] = {}
    for rule in rules:
        source = ";".join(meta.get(name, "") for name in rule["sourceLabels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), source)
        if rule.get("action", "replace") == "keep":
            if not match:
                return None
        elif match:
            target[rule["targetLabel"]] = match.expand(re.sub(r"\$(\d)", r"\\\1", rule["replacement"]))
    return target


def test_the_pod_monitor_points_at_ports_that_answer_under_the_rules_job_names(
    kube: Kube, fx, chart: Chart, pod_url: Callable[..., str], tmp_path: Path
) -> None:
    monitor = _pod_monitor(kube, chart, tmp_path)
    selector = ",".join(
        f"{e['key']} {e['operator'].lower()} ({','.join(e['values'])})"
        for e in monitor["spec"]["selector"]["matchExpressions"]
    )
    pods = kube.get("pods", "-l", selector)["items"]
    jobs: dict[str, str] = {}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        for p in pods:
            target = _relabel(p, endpoint.get("relabelings", []))
            ports = {
                port.get("name"): port["containerPort"] for c in p["spec"]["containers"] for port in c.get("ports", [])
            }
            if target is None or endpoint["port"] not in ports:
                continue  # Prometheus makes no target of it either
            status, body = http("GET", pod_url(p["status"]["podIP"], endpoint["path"], ports[endpoint["port"]]))
            assert status == 200, (p["metadata"]["name"], endpoint)
            assert _expected_family(p) in _families(body.decode())
            assert p["metadata"]["name"] not in jobs, "a pod scraped twice"
            jobs[p["metadata"]["name"]] = target["job"]
    assert sorted(jobs.values()) == ["fx-controller", "fx-controller", "fx-gateway", "fx-gateway"]


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
