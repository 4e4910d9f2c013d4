"""`fx top`: a live table of what the functions do (req/s, errors, p99, replicas, cold starts), for people without
Grafana at hand.

Each refresh makes two reads through the gateway URL, the same in both modes: the admin API's function list
(versions, replicas ready and desired, requests and 5xx answers summed over every gateway by the load reports the
controller keeps) and the answering gateway's /metrics (its latency histogram and cold starts). Rates are the
difference of two reads over the time between them, so the platform computes nothing for it. Behind a load
balancer with several gateways, p99 and cold starts are those of the gateway that answered, each diffed against
that same gateway's previous read (told apart by its process start time)."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from fx.cli.common import EXIT_OK, OUTPUT, AddCommand, client, print_json, print_table, seconds, table_lines
from fx.errors import FxError

if TYPE_CHECKING:
    import curses

    from fx.client import Client
    from fx.models import FunctionInfo, VersionInfo

REFRESH_S = 2.0
QUANTILE = 0.99
KEYS_POLL_MS = 100  # how often the live view looks for `q`

Version = tuple[str, str]  # (function, version) as the metrics label them


@dataclass
class GatewayRead:
    """What one gateway's /metrics says, cumulative since it started."""

    durations: dict[Version, dict[float, float]]  # request duration buckets: upper bound -> count
    cold_starts: dict[Version, float]


@dataclass
class Read:
    at: float
    functions: list[FunctionInfo]
    gateway: str  # the answering gateway's process start time
    metrics: GatewayRead


@dataclass
class Row:
    function: str
    version: int
    traffic: int  # percent
    rps: float
    error_pct: float | None  # None: no request in the interval
    p99_ms: float | None  # None: no request, or no earlier read of this gateway
    ready: int
    desired: int
    panic: bool
    cold_starts: int | None


def read(fx: Client, clock: Callable[[], float] = time.monotonic) -> Read:
    from prometheus_client.parser import text_string_to_metric_families

    functions = fx.list_functions()
    text = fx.gateway_metrics()
    at = clock()
    durations: dict[Version, dict[float, float]] = {}
    cold: dict[Version, float] = {}
    gateway = ""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.labels.get("function", ""), s.labels.get("version", ""))
            if s.name == "fx_gateway_request_duration_seconds_bucket":
                durations.setdefault(key, {})[float(s.labels["le"])] = s.value
            elif s.name == "fx_gateway_cold_starts_total":
                cold[key] = s.value
            elif s.name == "process_start_time_seconds":
                gateway = repr(s.value)
    return Read(at, functions, gateway, GatewayRead(durations, cold))


def rows(before: Read, after: Read, gateway_before: GatewayRead | None) -> list[Row]:
    """The versions worth a line (traffic, an alias, replicas or requests), busiest first. `gateway_before`: the
    previous read of the gateway that answered `after`, if any."""
    elapsed = after.at - before.at
    earlier = {(f.name, v.version): v for f in before.functions for v in f.versions}
    found = []
    for fn in after.functions:
        for v in fn.versions:
            was = earlier.get((fn.name, v.version))
            requests = _increase(v.requests, was.requests) if was else 0
            errors = _increase(v.errors, was.errors) if was else 0
            if not (
                v.traffic or v.aliases or v.replicas_ready or v.replicas_starting or v.replicas_desired or requests
            ):
                continue
            key = (fn.name, str(v.version))
            p99 = cold = None
            if gateway_before is not None:
                p99 = _quantile(_delta(after.metrics.durations.get(key, {}), gateway_before.durations.get(key, {})))
                cold = round(_increase(after.metrics.cold_starts.get(key, 0), gateway_before.cold_starts.get(key, 0)))
            found.append(_row(fn, v, requests, errors, elapsed, p99, cold))
    return sorted(found, key=lambda r: (-r.rps, r.function, r.version))


def _row(
    fn: FunctionInfo,
    v: VersionInfo,
    requests: float,
    errors: float,
    elapsed: float,
    p99: float | None,
    cold: int | None,
) -> Row:
    return Row(
        function=fn.name,
        version=v.version,
        traffic=v.traffic,
        rps=requests / elapsed if elapsed > 0 else 0.0,
        error_pct=100 * errors / requests if requests > 0 else None,
        p99_ms=None if p99 is None else 1000 * p99,
        ready=v.replicas_ready,
        desired=v.replicas_desired,
        panic=v.panic,
        cold_starts=cold,
    )


def _increase(now: float, before: float) -> float:
    """A counter's increase between two reads; a counter lower than before was reset (a restart): all of it."""
    return now - before if now >= before else now


def _delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {le: _increase(count, before.get(le, 0)) for le, count in after.items()}


def _quantile(buckets: dict[float, float]) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets: linear within the bucket the rank falls in."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0
    if total <= 0:
        return None
    rank = QUANTILE * total
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower  # beyond the highest finite bound: that bound is all that is known
            return lower + (le - lower) * (rank - below) / (count - below) if count > below else le
        lower, below = le, count
    return lower


def table(found: list[Row]) -> list[list[str]]:
    lines = [["FUNCTION", "VERSION", "TRAFFIC", "REQ/S", "ERR%", "P99", "REPLICAS", "COLD"]]
    for r in found:
        replicas = f"{r.ready}/{r.desired}" + (" panic" if r.panic else "")
        lines.append(
            [
                r.function,
                str(r.version),
                f"{r.traffic}%",
                f"{r.rps:.1f}",
                "-" if r.error_pct is None else f"{r.error_pct:.1f}",
                _ms(r.p99_ms),
                replicas,
                "-" if r.cold_starts is None else str(r.cold_starts),
            ]
        )
    return lines


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f}s"
    return f"{value:.1f}ms" if value < 10 else f"{value:.0f}ms"


class Watch:
    """Successive reads, each diffed against the one before and against the same gateway's previous read."""

    def __init__(self, fx: Client) -> None:
        self._fx = fx
        self._last = read(fx)
        self._gateways = {self._last.gateway: self._last.metrics}

    def next(self) -> list[Row]:
        now = read(self._fx)
        found = rows(self._last, now, self._gateways.get(now.gateway))
        self._last, self._gateways[now.gateway] = now, now.metrics
        return found


def _live(screen: curses.window, watch: Watch, gateway: str, interval: float) -> None:
    import curses

    with contextlib.suppress(curses.error):
        curses.curs_set(0)  # some terminals cannot hide the cursor
    screen.timeout(KEYS_POLL_MS)
    due, shown, problem = time.monotonic() + interval, ["collecting..."], ""
    while True:
        if time.monotonic() >= due:
            try:
                found = watch.next()
                shown, problem = table_lines(table(found)), ""
                shown += [] if found else ["(no version has traffic, replicas or requests)"]
            except FxError as exc:  # e.g. the gateway restarting: keep the last table and try again
                problem = f"refresh failed: {exc}"
            due = time.monotonic() + interval
        height, width = screen.getmaxyx()
        header = f"fx top  {gateway}  every {interval:g} s  {time.strftime('%H:%M:%S')}  (q quits)"
        screen.erase()
        for y, line in enumerate([header, problem, *shown][: height - 1]):
            screen.addnstr(y, 0, line, max(width - 1, 0))
        screen.refresh()
        if screen.getch() in (ord("q"), ord("Q")):
            return


def cmd_top(args: argparse.Namespace) -> int:
    with client(args) as fx:
        watch = Watch(fx)  # a gateway that cannot be read fails here, before the screen is taken
        if args.once or args.output == "json" or not sys.stdout.isatty():
            time.sleep(args.interval)  # rates need a second read, one interval later
            found = watch.next()
            if args.output == "json":
                print_json([asdict(r) for r in found])
            elif found:
                print_table(table(found))
            else:
                print("no version has traffic, replicas or requests")
            return EXIT_OK
        import curses  # the live screen alone: not loaded at every CLI start

        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C quits like q; curses.wrapper restores the terminal
            curses.wrapper(_live, watch, fx.gateway, args.interval)
    return EXIT_OK


def _interval(text: str) -> float:
    value = seconds(text)
    if value is None or not 0.5 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds from 0.5 to 3600, e.g. 2, 5s or 500ms")
    return value


def register(add: AddCommand) -> None:
    p = add(
        "top",
        cmd_top,
        "a live table of functions and versions: req/s, errors, p99, replicas (ready/desired), cold starts",
        OUTPUT,
    )
    p.add_argument(
        "--interval", "-n", type=_interval, default=REFRESH_S, help=f"seconds between refreshes (default {REFRESH_S:g})"
    )
    p.add_argument(
        "--once", action="store_true", help="print one table (rates over one interval) and exit; also when piped"
    )
