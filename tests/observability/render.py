"""A dashboard drawn with matplotlib from what its queries returned: a picture for docs/dashboards.md, laid out on
Grafana's 24-column grid as the JSON places its panels."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

matplotlib.use("Agg")  # no display on a test machine

ROW_INCHES = 0.42  # one grid unit of height
COLUMN_INCHES = 0.75


def render(board: dict, results: dict[tuple[int, str], list[dict]], path: Path) -> None:
    """`results`: (panel id, refId) -> the query_range series of that target."""
    panels = board["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    figure = plt.figure(figsize=(24 * COLUMN_INCHES, rows * ROW_INCHES + 0.6))
    grid = figure.add_gridspec(rows, 24, hspace=2.5, wspace=1.5)
    figure.suptitle(board["title"], fontsize=16, x=0.01, ha="left")
    for panel in panels:
        g = panel["gridPos"]
        axes = figure.add_subplot(grid[g["y"] : g["y"] + g["h"], g["x"] : g["x"] + g["w"]])
        axes.set_title(panel["title"], fontsize=10, loc="left")
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        lines = [(target, s) for target in panel["targets"] for s in results.get((panel["id"], target["refId"]), [])]
        if panel["type"] == "stat":
            _stat(axes, lines, unit)
            continue
        plotted = False
        for target, series in lines:
            points = [(datetime.fromtimestamp(t, UTC), float(v)) for t, v in series["values"]]
            points = [(t, v) for t, v in points if math.isfinite(v)]
            if points:
                axes.plot(*zip(*points, strict=True), label=_legend(target["legendFormat"], series["metric"]))
                plotted = True
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        axes.tick_params(labelsize=7)
        axes.set_ylabel(unit, fontsize=7)
        if plotted:
            axes.legend(fontsize=6, loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=60, bbox_inches="tight")
    plt.close(figure)


def _stat(axes, lines: list[tuple[dict, dict]], unit: str) -> None:
    values = [float(s["values"][-1][1]) for _, s in lines if s["values"]]
    text = ", ".join(_format(v, unit) for v in values) or "no data"
    axes.text(0.5, 0.4, text, ha="center", va="center", fontsize=18, transform=axes.transAxes)
    axes.set_axis_off()


def _format(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "-"
    if unit == "percentunit":
        return f"{value:.1%}"
    if unit == "s":
        return f"{value * 1000:.1f} ms"
    return f"{value:.3g}"


def _legend(template: str, labels: dict[str, str]) -> str:
    for name, value in labels.items():
        template = template.replace("{{" + name + "}}", value)
    return template
