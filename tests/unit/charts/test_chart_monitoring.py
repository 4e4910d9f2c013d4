"""The chart's monitoring: scrape annotations that name a port serving /metrics without a token, the opt-in
PodMonitor and PrometheusRule (the rules file's own groups, its knobs from values), dashboards as ConfigMaps for
Grafana's sidecar, and NetworkPolicies that let scrapers reach the metrics ports alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.unit.charts.test_alerts import CASES, RULES, _promtool
from tests.unit.charts.test_chart import CHART, _run, named, of_kind, render


def _pod(docs: list[dict], component: str) -> dict:
    return named(docs, "Deployment", f"-{component}")["spec"]["template"]


def _env(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def _ports(pod: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}


def test_gateway_and_controller_pods_are_annotated_for_their_metrics_ports() -> None:
    docs = render()
    for component in ("gateway", "controller"):
        pod = _pod(docs, component)
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        # The port named metrics, where the process serves /metrics without the admin token.
        assert int(annotations["prometheus.io/port"]) == _ports(pod)["metrics"] == 9090
        assert _env(pod)["FX_METRICS_LISTEN"] == "0.0.0.0:9090"
    nats = named(docs, "StatefulSet", "-nats")["spec"]["template"]["metadata"]
    assert "prometheus.io/scrape" not in nats.get("annotations", {})  # its 8222 serves no Prometheus text


def test_without_metrics_ports_the_annotations_follow_or_go() -> None:
    docs = render("gateway.metricsPort=null", "controller.metricsPort=null")
    gateway, controller = _pod(docs, "gateway"), _pod(docs, "controller")
    assert gateway["metadata"]["annotations"]["prometheus.io/port"] == "8080"  # /metrics on its main port then
    assert "prometheus.io/scrape" not in controller["metadata"]["annotations"]  # the admin port wants a token
    assert "FX_METRICS_LISTEN" not in _env(controller) and "metrics" not in _ports(controller)
    docs = render("metrics.podAnnotations=false")
    assert "annotations" not in _pod(docs, "gateway")["metadata"]
    assert "prometheus.io/scrape" not in _pod(docs, "controller")["metadata"]["annotations"]


def test_monitors_are_opt_in() -> None:
    docs = render()
    assert not of_kind(docs, "PodMonitor") and not of_kind(docs, "PrometheusRule")


def test_pod_monitor_scrapes_the_metrics_ports_under_fx_job_names() -> None:
    [monitor] = of_kind(
        render("metrics.podMonitor.enabled=true", "metrics.podMonitor.labels.release=kps"), "PodMonitor"
    )
    assert monitor["metadata"]["labels"]["release"] == "kps"
    components = next(e for e in monitor["spec"]["selector"]["matchExpressions"] if "component" in e["key"])
    assert components["values"] == ["gateway", "controller"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "30s")
    [job] = endpoint["relabelings"]
    assert (job["targetLabel"], job["replacement"]) == ("job", "fx-$1")  # fx-gateway, fx-controller: the rules'
    # A gateway without a metrics port serves /metrics on its main port: a second endpoint, for gateways alone.
    [monitor] = of_kind(render("metrics.podMonitor.enabled=true", "gateway.metricsPort=null"), "PodMonitor")
    metrics, http = monitor["spec"]["podMetricsEndpoints"]
    assert (metrics["port"], http["port"]) == ("metrics", "http")
    assert http["relabelings"][0] == {
        "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
        "regex": "gateway",
        "action": "keep",
    }


def _rule(*sets: str) -> dict:
    [rule] = of_kind(render("metrics.prometheusRule.enabled=true", *sets), "PrometheusRule")
    return rule


def test_prometheus_rule_holds_the_rules_file_and_renders_its_knobs() -> None:
    source = yaml.safe_load(RULES.read_text())["groups"]
    rendered = _rule("metrics.prometheusRule.labels.release=kps")
    assert rendered["metadata"]["labels"]["release"] == "kps"
    groups = rendered["spec"]["groups"]
    assert groups[1:] == source[1:]  # the same rules as plain Prometheus loads
    # The knobs: the same records, with the file's defaults unless values say otherwise.
    assert groups[0] == source[0]
    # Numbers by --set-json: helm's --set makes 0.995 a string, which the schema refuses.
    knobs = _render_chart(
        CHART,
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.latencyThreshold=2.5",
        "metrics.prometheusRule.runbookBaseUrl=https://wiki.example.com/fx/operations",
        json_sets=(
            'metrics.prometheusRule={"availabilityObjective": 0.995, "latencyObjective": 0.95,'
            ' "asyncOldestAgeSeconds": 900, "replicaCrashesPer10m": 10}',
        ),
    )
    knobs = of_kind(knobs, "PrometheusRule")[0]["spec"]["groups"]
    assert {r["record"]: r["expr"] for r in knobs[0]["rules"]} == {
        "fx:slo_availability:objective": "vector(0.995)",
        "fx:slo_latency:objective": "vector(0.95)",
        "fx:slo_latency:threshold": 'label_replace(vector(1), "le", "2.5", "", "")',
        "fx:async_oldest_age:threshold_seconds": "vector(900)",
        "fx:replica_crashes:threshold_10m": "vector(10)",
    }
    alert = next(r for r in knobs[2]["rules"] if r.get("alert") == "FxNatsDisconnected")
    assert alert["annotations"]["runbook_url"] == "https://wiki.example.com/fx/operations#fxnatsdisconnected"


def test_prometheus_rule_passes_promtool_and_the_alert_cases(tmp_path: Path) -> None:
    """What the chart renders is what Prometheus would load: check it, and run the alert cases against it."""
    rules = tmp_path / "rendered-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _rule()["spec"]["groups"]}))
    done = _promtool("check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr
    for source in CASES:
        cases = yaml.safe_load(source.read_text())
        cases["rule_files"] = [str(rules)]
        (tmp_path / source.name).write_text(yaml.safe_dump(cases))
    done = _promtool("test", "rules", *(str(tmp_path / source.name) for source in CASES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_latency_threshold_that_is_no_bucket_is_refused() -> None:
    done = _run("template", "fx", str(CHART), "--set", "metrics.prometheusRule.latencyThreshold=0.75")
    assert done.returncode != 0 and "/metrics/prometheusRule/latencyThreshold" in done.stderr


def _chart_with_dashboards(tmp_path: Path, files: dict[str, dict]) -> Path:
    """A copy of the chart whose dashboards/ holds exactly `files` (O1's JSON may or may not be merged yet)."""
    chart = tmp_path / "fx"
    shutil.copytree(CHART, chart)
    shutil.rmtree(chart / "dashboards", ignore_errors=True)
    (chart / "dashboards").mkdir()
    for name, dashboard in files.items():
        (chart / "dashboards" / name).write_text(json.dumps(dashboard, indent=2))
    return chart


def _render_chart(chart: Path, *sets: str, json_sets: tuple[str, ...] = ()) -> list[dict]:
    flags = [f for s in sets for f in ("--set", s)] + [f for s in json_sets for f in ("--set-json", s)]
    done = _run("template", "fx", str(chart), "--namespace", "fx", *flags)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_each_dashboard_is_a_configmap_for_the_grafana_sidecar(tmp_path: Path) -> None:
    files = {
        "overview.json": {
            "title": "fx overview",
            "uid": "fx-overview",
            "panels": [{"id": 1, "title": "{{ not helm }}"}],
        },
        "function_drilldown.json": {"title": "fx function", "uid": "fx-function", "panels": []},
        "fx-events.json": {"title": "fx events", "uid": "fx-events", "panels": []},
    }
    chart = _chart_with_dashboards(tmp_path, files)
    maps = {m["metadata"]["name"]: m for m in of_kind(_render_chart(chart), "ConfigMap")}
    # Named for the file, without the .json and an fx- the release name already gives.
    assert set(maps) == {"fx-dashboard-overview", "fx-dashboard-function-drilldown", "fx-dashboard-events"}
    for name, dashboard in files.items():
        config_map = maps[f"fx-dashboard-{name.removesuffix('.json').removeprefix('fx-').replace('_', '-')}"]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["namespace"] == "fx"
        assert json.loads(config_map["data"][name]) == dashboard  # as written, braces untouched by Helm
    docs = _render_chart(
        chart,
        "metrics.dashboards.label=grafana_dash",
        "metrics.dashboards.labelValue=fx",
        "metrics.dashboards.namespace=monitoring",
        "metrics.dashboards.annotations.grafana_folder=fx",
    )
    for config_map in of_kind(docs, "ConfigMap"):
        assert config_map["metadata"]["labels"]["grafana_dash"] == "fx"
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "fx"}
    assert not of_kind(_render_chart(chart, "metrics.dashboards.enabled=false"), "ConfigMap")


def test_the_charts_own_dashboards_are_each_rendered() -> None:
    shipped = sorted((CHART / "dashboards").glob("*.json"))
    names = {m["metadata"]["name"] for m in of_kind(render(), "ConfigMap") if "-dashboard-" in m["metadata"]["name"]}
    assert len(names) == len(shipped)


def _ingress_to(policy: dict, port: int) -> list[dict]:
    return [rule for rule in policy["spec"]["ingress"] if {"protocol": "TCP", "port": port} in rule["ports"]]


def test_network_policies_let_scrapers_reach_the_metrics_ports_alone() -> None:
    docs = render("networkPolicy.gatewayFrom[0]=callers")
    controller, gateway = named(docs, "NetworkPolicy", "-controller"), named(docs, "NetworkPolicy", "-gateway")
    for policy in (controller, gateway):
        [rule] = _ingress_to(policy, 9090)
        assert rule == {"ports": [{"protocol": "TCP", "port": 9090}]}  # metricsFrom empty: any source
    [admin] = _ingress_to(controller, 8081)
    assert admin["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    docs = render("networkPolicy.gatewayFrom[0]=callers", "networkPolicy.metricsFrom[0]=monitoring")
    for suffix in ("-controller", "-gateway"):
        [rule] = _ingress_to(named(docs, "NetworkPolicy", suffix), 9090)
        assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert not _ingress_to(named(render("controller.metricsPort=null"), "NetworkPolicy", "-controller"), 9090)


def test_helm_lint_is_clean_with_every_monitor_on() -> None:
    sets = ("--set", "metrics.podMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true")
    done = _run("lint", "--strict", str(CHART), *sets)
    assert done.returncode == 0, done.stdout + done.stderr
