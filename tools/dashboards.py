"""fx's Grafana dashboards as code: `python -m tools.dashboards` writes charts/fx/dashboards/*.json.

Each dashboard is a list of panels, each a title, a kind and its PromQL queries; layout, ids and the datasource
variable are filled in here, so the JSON stays uniform and the tests can read every query back
(tests/observability runs each against a real Prometheus). A few dozen lines of dicts did not justify
grafana-foundation-sdk's builders; the schema check is in tests/unit/charts/test_dashboards.py.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "charts" / "fx" / "dashboards"
SCHEMA_VERSION = 39  # Grafana 10.4 / 11
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# The backlog and consumer gauges come from every gateway (each samples the same JetStream numbers): max, not sum.
FN = 'function="$function"'
FV = 'function="$function", version=~"$version"'
KNOWN = 'function!=""'  # requests for unknown functions are counted under function=""


@dataclass
class Panel:
    title: str
    queries: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""
    width: int = 12
    height: int = 8


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    variables: list[dict] = field(default_factory=list)


def ratio(numerator: str, denominator: str, by: str) -> str:
    """numerator / denominator per `by`, 0 (not absent) where the numerator has no series, e.g. no 5xx yet."""
    return f"(sum by ({by}) ({numerator}) or sum by ({by}) ({denominator}) * 0) / sum by ({by}) ({denominator})"


def quantile(q: float, histogram: str, selector: str, by: str) -> str:
    keys = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({keys}) (rate({histogram}_bucket{{{selector}}}[{RATE}])))"


def requests(selector: str = "") -> str:
    return f"rate(fx_gateway_requests_total{{{selector}}}[{RATE}])"


def errors(selector: str = "") -> str:
    sep = ", " if selector else ""
    return f'rate(fx_gateway_requests_total{{{selector}{sep}code=~"5.."}}[{RATE}])'


OVERVIEW = Dashboard(
    "fx-overview",
    "fx / Overview",
    "The platform at a glance: rate, errors and duration of every call, top functions, cold starts, saturation.",
    [
        Panel("Requests per second", [(f"sum({requests()})", "req/s")], "reqps", "stat", width=6, height=4),
        Panel("5xx ratio", [(f"sum({errors()}) / sum({requests()})", "5xx")], "percentunit", "stat", 6, 4),
        Panel(
            "p99 latency (gateway)",
            [(quantile(0.99, "fx_gateway_request_duration_seconds", "", ""), "p99")],
            "s",
            "stat",
            width=6,
            height=4,
        ),
        Panel(
            "Cold starts (window)",
            [(f"sum(increase(fx_gateway_cold_starts_total[{RATE}]))", "cold starts")],
            "short",
            "stat",
            width=6,
            height=4,
        ),
        Panel(
            "Top functions by requests",
            [(f"topk(10, sum by (function) ({requests(KNOWN)}))", "{{function}}")],
            "reqps",
        ),
        Panel(
            "Errors (5xx) per function",
            [(f"sum by (function, code) ({errors(KNOWN)})", "{{function}} {{code}}")],
            "reqps",
        ),
        Panel(
            "Latency p50 / p99 per function",
            [
                (quantile(0.5, "fx_gateway_request_duration_seconds", 'function!=""', "function"), "{{function}} p50"),
                (quantile(0.99, "fx_gateway_request_duration_seconds", 'function!=""', "function"), "{{function}} p99"),
            ],
            "s",
        ),
        Panel(
            "Cold starts per function",
            [(f"sum by (function) (increase(fx_gateway_cold_starts_total[{RATE}]))", "{{function}}")],
        ),
        Panel(
            "Cold start phases (p90)",
            [(quantile(0.9, "fx_controller_cold_start_phase_seconds", "", "phase"), "{{phase}}")],
            "s",
            description="queueing: held before a replica was asked for; spawn: fork or pod to process up; init: "
            "the handler module's import",
        ),
        Panel(
            "Saturation: in flight, held, replicas ready",
            [
                ("sum(fx_gateway_in_flight)", "in flight"),
                ("sum(fx_gateway_held)", "held"),
                ('sum(fx_controller_replicas{state="ready"})', "replicas ready"),
            ],
        ),
        Panel(
            "Time held for a replica (p99)",
            [(quantile(0.99, "fx_gateway_hold_seconds", 'function!=""', "function"), "{{function}}")],
            "s",
        ),
        Panel(
            "Billed GB-seconds per function",
            [(f"sum by (function) (rate(fx_gateway_billed_gigabyte_seconds_total[{RATE}]))", "{{function}}")],
            description="Lambda's billing units: duration rounded up to 1 ms, times memory (`fx usage` for cost)",
        ),
    ],
)

FUNCTION = Dashboard(
    "fx-function",
    "fx / Function",
    "One function, its versions side by side: the blue-green view of a canary against the stable version.",
    [
        Panel(
            "Traffic split",
            [
                (
                    f"sum by (version) ({requests(FV)}) / ignoring (version) group_left sum ({requests(FN)})",
                    "v{{version}}",
                )
            ],
            "percentunit",
            description="Each version's share of the function's requests",
        ),
        Panel("Requests per second by version", [(f"sum by (version) ({requests(FV)})", "v{{version}}")], "reqps"),
        Panel(
            "Error rate (5xx) by version",
            [(ratio(errors(FV), requests(FV), "version"), "v{{version}}")],
            "percentunit",
        ),
        Panel(
            "Responses by code",
            [(f"sum by (version, code) ({requests(FV)})", "v{{version}} {{code}}")],
            "reqps",
        ),
        Panel(
            "Latency p50 / p99 by version (gateway)",
            [
                (quantile(0.5, "fx_gateway_request_duration_seconds", FV, "version"), "v{{version}} p50"),
                (quantile(0.99, "fx_gateway_request_duration_seconds", FV, "version"), "v{{version}} p99"),
            ],
            "s",
        ),
        Panel(
            "Handler duration p50 / p99 by version",
            [
                (quantile(0.5, "fx_gateway_function_duration_seconds", FV, "version"), "v{{version}} p50"),
                (quantile(0.99, "fx_gateway_function_duration_seconds", FV, "version"), "v{{version}} p99"),
            ],
            "s",
            description="The handler's own time as its replica reports it (the REPORT line's Duration)",
        ),
        Panel(
            "Replicas by version and state",
            [(f"sum by (version, state) (fx_controller_replicas{{{FV}}})", "v{{version}} {{state}}")],
        ),
        Panel(
            "Replicas: the autoscaler's decision and ready",
            [
                (f"sum by (version) (fx_controller_replicas_desired{{{FV}}})", "v{{version}} desired"),
                (f'sum by (version) (fx_controller_replicas{{{FV}, state="ready"}})', "v{{version}} ready"),
            ],
            description="docs/autoscaling.md: how the decision is made",
        ),
        Panel(
            "Concurrency per replica: in flight and target",
            [
                (
                    f"sum by (version) (fx_gateway_in_flight{{{FV}}}) / clamp_min(sum by (version) "
                    f'(fx_controller_replicas{{{FV}, state="ready"}}), 1)',
                    "v{{version}} in flight per replica",
                ),
                (f"max by (version) (fx_controller_concurrency_target{{{FV}}})", "v{{version}} target"),
            ],
        ),
        Panel(
            "Panic mode",
            [(f"max by (version) (fx_controller_panic_mode{{{FV}}})", "v{{version}}")],
            description="1 while the autoscaler follows the short panic window (a jump in load)",
        ),
        Panel(
            "In flight and held by version",
            [
                (f"sum by (version) (fx_gateway_in_flight{{{FV}}})", "v{{version}} in flight"),
                (f"sum by (version) (fx_gateway_held{{{FV}}})", "v{{version}} held"),
            ],
        ),
        Panel(
            "Cold starts by version",
            [(f"sum by (version) (increase(fx_gateway_cold_starts_total{{{FV}}}[{RATE}]))", "v{{version}}")],
        ),
        Panel(
            "Cold start phases by version (p90)",
            [(quantile(0.9, "fx_controller_cold_start_phase_seconds", FV, "version, phase"), "v{{version}} {{phase}}")],
            "s",
        ),
        Panel(
            "Billed GB-seconds by version",
            [(f"sum by (version) (rate(fx_gateway_billed_gigabyte_seconds_total{{{FV}}}[{RATE}]))", "v{{version}}")],
        ),
        Panel(
            "Activations by result",
            [(f"sum by (result) (increase(fx_controller_activations_total{{{FN}}}[{RATE}]))", "{{result}}")],
        ),
    ],
    [
        {"name": "function", "query": 'label_values(fx_gateway_requests_total{function!=""}, function)'},
        {
            "name": "version",
            "query": 'label_values(fx_gateway_requests_total{function="$function"}, version)',
            "multi": True,
        },
    ],
)

EVENTS = Dashboard(
    "fx-events",
    "fx / Events and async",
    "Async calls (accepted, backlog, retries, dead letters) and event triggers (lag, batches, redeliveries).",
    [
        Panel(
            "Async calls accepted",
            [(f"sum by (function) (rate(fx_gateway_async_accepted_total[{RATE}]))", "{{function}}")],
            "reqps",
        ),
        Panel(
            "Async backlog",
            [("max by (function) (fx_gateway_async_backlog)", "{{function}}")],
            description="Calls stored and not yet done, sampled every --backlog-interval",
        ),
        Panel(
            "Oldest async call waiting",
            [("max by (function) (fx_gateway_async_oldest_age_seconds)", "{{function}}")],
            "s",
        ),
        Panel(
            "Async attempts by result, and retries",
            [
                (
                    f"sum by (function, result) (rate(fx_gateway_async_attempts_total[{RATE}]))",
                    "{{function}} {{result}}",
                ),
                (f"sum by (function) (rate(fx_gateway_async_retries_total[{RATE}]))", "{{function}} retries"),
            ],
            "reqps",
        ),
        Panel(
            "Dead letters",
            [("sum by (function, reason) (fx_gateway_async_dead_letters_total)", "{{function}} {{reason}}")],
            description="Calls on fx.dlq.NAME since the gateways started (`fx dlq ls` lists them)",
        ),
        Panel(
            "Trigger events by result",
            [
                (
                    f"sum by (function, trigger, result) (rate(fx_gateway_trigger_events_total[{RATE}]))",
                    "{{function}} {{trigger}} {{result}}",
                )
            ],
            "reqps",
        ),
        Panel(
            "Trigger lag: pending and unacknowledged",
            [
                ("max by (function, trigger) (fx_gateway_trigger_pending)", "{{function}} {{trigger}} pending"),
                ("max by (function, trigger) (fx_gateway_trigger_ack_pending)", "{{function}} {{trigger}} ack pending"),
            ],
        ),
        Panel(
            "Trigger batch size (p50 / max bucket)",
            [
                (quantile(0.5, "fx_gateway_trigger_batch_size", "", "function, trigger"), "{{function}} p50"),
                (quantile(1.0, "fx_gateway_trigger_batch_size", "", "function, trigger"), "{{function}} max"),
            ],
        ),
        Panel(
            "Trigger redeliveries",
            [("sum by (function, trigger) (fx_gateway_trigger_redeliveries_total)", "{{function}} {{trigger}}")],
        ),
        Panel(
            "Async calls running on gateways",
            [("sum(fx_gateway_async_in_flight)", "running")],
        ),
    ],
)

PLATFORM = Dashboard(
    "fx-platform",
    "fx / Platform health",
    "The platform's own parts: NATS as fx sees it, the controller's leadership and loops, replicas' lifecycle.",
    [
        Panel(
            "NATS connected",
            [
                ("min(fx_gateway_nats_connected)", "gateways"),
                ("max(fx_controller_nats_connected)", "controller"),
            ],
            kind="stat",
            width=8,
            height=4,
        ),
        Panel("Controller leading", [("sum(fx_controller_is_leader)", "leaders")], kind="stat", width=8, height=4),
        Panel(
            "Replicas ready",
            [('sum(fx_controller_replicas{state="ready"})', "ready")],
            kind="stat",
            width=8,
            height=4,
        ),
        Panel(
            "Controller loop duration (p99)",
            [(quantile(0.99, "fx_controller_reconcile_seconds", "", "loop"), "{{loop}}")],
            "s",
        ),
        Panel(
            "Replica start time (p90)",
            [(quantile(0.9, "fx_controller_replica_start_seconds", "", "function"), "{{function}}")],
            "s",
        ),
        Panel(
            "Replica exits by reason",
            [("sum by (function, reason) (fx_controller_replica_exits_total)", "{{function}} {{reason}}")],
            description="crashed and init_error growing: a crash loop",
        ),
        Panel(
            "Activations by result",
            [(f"sum by (result) (rate(fx_controller_activations_total[{RATE}]))", "{{result}}")],
            "reqps",
        ),
        Panel(
            "Replicas lost with requests, and requests sent again",
            [
                ("sum(fx_gateway_replica_lost_total)", "lost (502)"),
                ("sum(fx_gateway_replica_retries_total)", "sent again"),
            ],
        ),
        Panel(
            "Deploys by result",
            [("sum by (result) (fx_controller_deploys_total)", "{{result}}")],
        ),
        Panel(
            "Memory (resident)",
            [('sum by (job) (process_resident_memory_bytes{job=~".*fx.*"})', "{{job}}")],
            "bytes",
        ),
        Panel(
            "CPU",
            [(f'sum by (job) (rate(process_cpu_seconds_total{{job=~".*fx.*"}}[{RATE}]))', "{{job}}")],
            "percentunit",
        ),
    ],
)

DASHBOARDS = (OVERVIEW, FUNCTION, EVENTS, PLATFORM)


def variable(spec: dict) -> dict:
    multi = spec.get("multi", False)
    return {
        "name": spec["name"],
        "label": spec["name"],
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": spec["query"], "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": spec["query"],
        "refresh": 2,  # on time range change: new versions appear
        "sort": 3,  # numerically ascending
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": 0,
    }


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    targets = [
        {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "range": True}
        for i, (expr, legend) in enumerate(panel.queries)
    ]
    out = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}} if panel.kind == "stat" else {"legend": {}},
    }
    return out


def dashboard_json(dashboard: Dashboard) -> dict:
    panels, x, y, row_height = [], 0, 0, 0
    for i, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append(panel_json(panel, i, x, y))
        x, row_height = x + panel.width, max(row_height, panel.height)
    datasource = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
    }
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["fx"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [{"title": "fx dashboards", "type": "dashboards", "tags": ["fx"], "asDropdown": True}],
        "templating": {"list": [datasource, *map(variable, dashboard.variables)]},
        "panels": panels,
    }


def render(dashboard: Dashboard) -> str:
    return json.dumps(dashboard_json(dashboard), indent=2) + "\n"


def files() -> dict[str, str]:
    """File name -> content, as committed in charts/fx/dashboards."""
    return {f"{d.uid}.json": render(d) for d in DASHBOARDS}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files().items():
        (OUT / name).write_text(text)
        print(OUT / name, file=sys.stderr)


if __name__ == "__main__":
    main()
