"""The Grafana dashboards in charts/fx/dashboards: what tools/dashboards.py generates, valid by Grafana's
dashboard schema, and built only from documented metrics. tests/observability runs their queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from tools import dashboards

ROOT = Path(__file__).resolve().parents[3]

# The parts of Grafana's dashboard schema (kinds/dashboard, schemaVersion 39) the chart's dashboards rely on:
# required top-level fields, the PanelGridPos bounds (h > 0, 0 < w <= 24, 0 <= x < 24, y >= 0), variables with
# a name and type, Prometheus targets with a refId and an expr.
GRID_POS = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "exclusiveMinimum": 0},
        "w": {"type": "integer", "exclusiveMinimum": 0, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "exclusiveMaximum": 24},
        "y": {"type": "integer", "minimum": 0},
    },
}
DATASOURCE_REF = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"const": "${datasource}"}},
}
SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "editable", "graphTooltip", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "time": {"type": "object", "required": ["from", "to"]},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {
                            "name": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                            "type": {"enum": ["query", "datasource", "custom", "constant", "interval", "textbox"]},
                        },
                    },
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos", "datasource", "targets"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "type": {"enum": ["timeseries", "stat"]},
                    "title": {"type": "string", "minLength": 1},
                    "gridPos": GRID_POS,
                    "datasource": DATASOURCE_REF,
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["refId", "expr", "datasource"],
                            "properties": {
                                "refId": {"type": "string", "pattern": "^[A-Z]$"},
                                "expr": {"type": "string", "minLength": 1},
                                "datasource": DATASOURCE_REF,
                            },
                        },
                    },
                },
            },
        },
    },
}


def committed() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((ROOT / "charts/fx/dashboards").glob("*.json"))}


def test_committed_dashboards_are_what_the_generator_writes():
    files = {p.name: p.read_text() for p in (ROOT / "charts/fx/dashboards").glob("*.json")}
    assert files == dashboards.files(), "run `.venv/bin/python -m tools.dashboards` and commit the result"


@pytest.mark.parametrize("name", sorted(committed()))
def test_dashboard_is_valid(name):
    board = committed()[name]
    jsonschema.validate(board, SCHEMA)
    variables = [v["name"] for v in board["templating"]["list"]]
    assert variables[0] == "datasource" and board["templating"]["list"][0]["query"] == "prometheus"
    assert len(set(variables)) == len(variables)
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, f"{panel['title']!r} runs off the grid"
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{panel['title']!r} overlaps another panel"
        cells |= mine
        for target in panel["targets"]:
            for used in re.findall(r"\$(\w+)", target["expr"]):
                assert used in variables or used.startswith("__"), f"{panel['title']!r} uses undefined ${used}"


def test_every_metric_a_dashboard_queries_is_documented():
    documented = set(re.findall(r"`(fx_\w+|process_\*)`", (ROOT / "docs/metrics.md").read_text()))
    for name, board in committed().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                for metric in re.findall(r"\b(fx_\w+?)(?:_bucket|_total)?\b(?=[{\[)\s])", target["expr"]):
                    base = metric.removesuffix("_bucket")
                    assert base in documented or f"{base}_total" in documented, f"{name}: {base} not in docs/metrics.md"
