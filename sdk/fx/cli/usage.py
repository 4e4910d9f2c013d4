"""`fx usage`: billed invocations, GB-seconds and an estimated cost per function (or version) over a window.

The numbers are the controller's (kept per hour in NATS, so they outlive restarts; the window is widened to whole
hours), or, with --prometheus URL, the gateways' counters' exact growth over the window, queried from Prometheus.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from typing import Any

from fx.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    OUTPUT,
    AddCommand,
    err,
    fetch,
    local_time,
    print_json,
    print_table,
    seconds,
)
from fx.errors import InputError

# Lambda's public x86 prices (us-east-1): per GB-second of compute, per million requests.
PRICE_GB_SECOND = 0.0000166667
PRICE_PER_MILLION = 0.20
MAX_SINCE_S = 10 * 365 * 86400


def cmd_usage(args: argparse.Namespace) -> int:
    since = _since(args.since)
    prices = _price(args.price_gb_second, "--price-gb-second"), _price(args.price_per_million, "--price-per-million")
    if args.prometheus:
        rows, window = _from_prometheus(args.prometheus, since), f"the last {args.since} (Prometheus)"
        if rows is None:
            return EXIT_FAILED
    else:
        usage = fetch(args, "/system/usage", {"since": since})  # Usage's JSON (a light read)
        rows, window = usage["rows"], f"{local_time(usage['since'])} to {local_time(usage['until'])} (whole hours)"
    lines = _grouped(rows, args.by)
    total = _line("total", "", sum(r[2] for r in lines), sum(r[3] for r in lines), prices)
    lines = [_line(f, v, n, gbs, prices) for f, v, n, gbs in lines]
    if args.output == "json":
        print_json({"window": window, "by": args.by, "prices": _prices_json(prices), "rows": lines, "total": total})
        return EXIT_OK
    print(f"usage from {window}")
    head = ["FUNCTION", *(["VERSION"] if args.by == "version" else []), "INVOCATIONS", "GB-SECONDS", "COST (USD)"]
    table = [head]
    for line in [*lines, total]:
        version = [str(line.get("version", ""))] if args.by == "version" else []  # the total has none
        cost = f"{line['cost']:.6f}"
        table.append([line["function"], *version, str(line["invocations"]), f"{line['gb_seconds']:.4f}", cost])
    print_table(table)
    print(f"prices: ${prices[0]} per GB-second, ${prices[1]} per 1M requests (--price-gb-second, --price-per-million)")
    return EXIT_OK


def _since(text: str) -> float:
    value = seconds(text[:-1]) * 86400 if text.endswith("d") and seconds(text[:-1]) is not None else seconds(text)
    if value is None or not 0 < value <= MAX_SINCE_S:
        raise InputError(f"--since {text!r} is not a duration such as 30m, 24h or 7d (at most 10 years)")
    return value


def _price(value: float, flag: str) -> float:
    if value < 0:
        raise InputError(f"{flag} {value} is negative: give a price in USD, e.g. {flag} 0")
    return value


def _grouped(rows: Iterable[dict[str, Any]], by: str) -> list[tuple[str, str, int, float]]:
    """(function, version or "", invocations, GB-seconds) of UsageRow's JSON, summed over versions unless `by` is
    "version"."""
    sums: dict[tuple[str, str], list] = {}
    for row in rows:
        key = (row["function"], str(row["version"]) if by == "version" else "")
        totals = sums.setdefault(key, [0, 0.0])
        totals[0] += row["invocations"]
        totals[1] += row["gb_seconds"]
    return [(f, v, n, gbs) for (f, v), (n, gbs) in sorted(sums.items())]


def _line(function: str, version: str, invocations: int, gb_seconds: float, prices: tuple[float, float]) -> dict:
    cost = gb_seconds * prices[0] + invocations / 1_000_000 * prices[1]
    line = {"function": function, "invocations": invocations, "gb_seconds": gb_seconds}
    if version:
        line["version"] = int(version)
    return {**line, "cost": cost}


def _prices_json(prices: tuple[float, float]) -> dict:
    return {"gb_second": prices[0], "per_million_requests": prices[1]}


def _from_prometheus(url: str, since: float) -> list[dict[str, Any]] | None:
    """The gateways' counters' increase over the window, as UsageRow's JSON; None (after saying why) if Prometheus
    cannot answer."""
    import httpx

    metrics = {"invocations": "fx_gateway_invocations_total", "gb_seconds": "fx_gateway_billed_gigabyte_seconds_total"}
    queries = {name: _exact_increase(f'{metric}{{function!=""}}', int(since)) for name, metric in metrics.items()}
    values: dict[tuple[str, int], dict[str, float]] = {}
    for name, query in queries.items():
        try:
            r = httpx.get(f"{url.rstrip('/')}/api/v1/query", params={"query": query}, timeout=30)
            r.raise_for_status()
            results = r.json()["data"]["result"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            err(f"fx usage: Prometheus at {url} did not answer the query: {exc}")
            return None
        for series in results:
            key = (series["metric"].get("function", ""), int(series["metric"].get("version", "0") or 0))
            values.setdefault(key, {})[name] = float(series["value"][1])
    return [
        {
            "function": f,
            "version": v,
            "invocations": round(n.get("invocations", 0)),
            "gb_seconds": n.get("gb_seconds", 0),
        }
        for (f, v), n in sorted(values.items())
    ]


def _exact_increase(series: str, seconds: int) -> str:
    """The counters' growth over the window, summed per function and version, as a bill needs it: exact.

    increase() extrapolates to the window's edges (a few percent too much over a short window) and misses a
    series' counts before its first scrape. A series not reset in the window grew by its value now less its value
    at the window's start, or by all of it if it began inside the window. A series that was reset (its gateway
    restarted) or has ended (its gateway is gone) falls back to increase(), which sees across a reset.
    """
    window = f"{series}[{seconds}s]"
    exact = f"({series} - ({series} offset {seconds}s or {series} * 0))"
    return f"sum by (function, version) ({exact} unless resets({window}) > 0 or increase({window}))"


def register(add: AddCommand) -> None:
    env = os.environ.get
    p = add("usage", cmd_usage, "billed invocations, GB-seconds and estimated cost per function over a window", OUTPUT)
    p.add_argument("--since", default="24h", help="the window back from now: 30m, 24h, 7d (default 24h)")
    p.add_argument("--by", choices=["function", "version"], default="function", help="one line per function or version")
    p.add_argument(
        "--price-gb-second",
        type=float,
        default=env("FX_PRICE_GB_SECOND", PRICE_GB_SECOND),  # a string default is converted (and checked) too
        help=f"USD per GB-second (default Lambda's x86 {PRICE_GB_SECOND}) [FX_PRICE_GB_SECOND]",
    )
    p.add_argument(
        "--price-per-million",
        type=float,
        default=env("FX_PRICE_PER_MILLION", PRICE_PER_MILLION),
        help=f"USD per million requests (default Lambda's {PRICE_PER_MILLION}) [FX_PRICE_PER_MILLION]",
    )
    p.add_argument(
        "--prometheus",
        metavar="URL",
        default=env("FX_PROMETHEUS_URL"),
        help="query this Prometheus for the exact window instead of the controller's hourly counts [FX_PROMETHEUS_URL]",
    )
