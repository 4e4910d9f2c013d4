"""The autoscaler on a step of load (docs/autoscaling.md), with fx's 10 s stable window and with Knative's 60 s.

Each case starts the real embedded platform on free ports, deploys a handler that sleeps 100 ms with
`scale: {min: 1, max: 16, concurrency: 1}`, runs 1 caller for 3 s, then 16 callers for 60 s, then none. It
prints the seconds from the step to panic mode on the controller's /metrics, to a decision of 16 replicas,
to 16 ready replicas, the callers' p99 over the first 5 s of the step, and the seconds from the end of the
load until panic mode is off and one replica is left. Run by an older fx (without the decision's metrics),
the panic and decision columns are `-`: the ready and calm columns are that version's baseline.

    .venv/bin/python -m bench.scaling
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fx.platform import Platform
from prometheus_client.parser import text_string_to_metric_families

from bench.run import FX

HANDLER_S = 0.1
CALLERS = 16
MANIFEST = "functions:\n  step:\n    path: .\n    scale: {min: 1, max: 16, concurrency: 1}\n"
HANDLER = f"import time\n\n\ndef handler(event, context):\n    time.sleep({HANDLER_S})\n    return 'ok'\n"
POLL_S = 0.05
LOAD_S = 60.0  # of 16 callers: Knative's window may take that long to meet them
BOUND_S = 150.0  # for the calm after the load (Knative's window: 60 s past the last surge, then the decay)


class Callers:
    """`n` threads calling `url` back to back until stopped; (sent, latency) of each answer."""

    def __init__(self, url: str, n: int) -> None:
        self.url, self.answers, self._stop = url, [], threading.Event()
        self._threads = [threading.Thread(target=self._call, daemon=True) for _ in range(n)]
        for thread in self._threads:
            thread.start()

    def _call(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                client.get(self.url)
                self.answers.append((sent, time.monotonic() - sent))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def decision(platform: Platform) -> tuple[float, float, float]:
    """(panic mode, replicas desired, replicas ready) of step version 1."""
    auth = {"Authorization": f"Bearer {platform.token}"}
    text = httpx.get(f"{platform.controller_url}/metrics", headers=auth, timeout=10).text
    found = {"fx_controller_panic_mode": 0.0, "fx_controller_replicas_desired": 0.0, "ready": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("function") != "step":
                continue
            if s.name in found:
                found[s.name] = s.value
            elif s.name == "fx_controller_replicas" and s.labels.get("state") == "ready":
                found["ready"] = s.value
    return found["fx_controller_panic_mode"], found["fx_controller_replicas_desired"], found["ready"]


Decision = tuple[float, float, float]


def firsts(
    platform: Platform, since: float, conditions: dict[str, Callable[[Decision], bool]], bound: float
) -> dict[str, float | None]:
    """Seconds from `since` until each condition first holds (None: not within `bound` s), polled together."""
    found: dict[str, float | None] = dict.fromkeys(conditions)
    while time.monotonic() - since < bound and None in found.values():
        seen = decision(platform)
        for name, holds in conditions.items():
            if found[name] is None and holds(seen):
                found[name] = time.monotonic() - since
        time.sleep(POLL_S)
    return found


def case(stable_window: str) -> dict[str, float | None]:
    os.environ["FX_STABLE_WINDOW"] = stable_window  # the controller the platform starts reads it
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(state_dir=Path(tmp) / "state", ports="free")
        platform.start()
        try:
            project = Path(tmp) / "step"
            project.mkdir()
            (project / "handler.py").write_text(HANDLER)
            (project / "fx.yaml").write_text(MANIFEST)
            env = {**os.environ, "FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token}
            subprocess.run([FX, "deploy"], cwd=project, env=env, check=True, capture_output=True, timeout=300)
            url = f"{platform.gateway_url}/function/step"
            one = Callers(url, 1)
            time.sleep(3)  # the load before the step (a benchmark's phase, not a wait for a condition)
            step = time.monotonic()
            many = Callers(url, CALLERS - 1)
            result = firsts(
                platform,
                step,
                {
                    "panic after": lambda d: d[0] == 1,
                    "desired 16 after": lambda d: d[1] >= CALLERS,
                    "ready 16 after": lambda d: d[2] >= CALLERS,
                },
                LOAD_S,
            )
            time.sleep(max(0.0, step + LOAD_S - time.monotonic()))
            many.stop()
            one.stop()
            first = [lat for sent, lat in one.answers + many.answers if step <= sent < step + 5]
            result["p99 ms, first 5 s"] = 1000 * statistics.quantiles(first, n=100)[98]
            calm = time.monotonic()
            quiet = {"calm (no panic, 1 ready) after": lambda d: d[0] == 0 and d[2] == 1}
            result.update(firsts(platform, calm, quiet, BOUND_S))
            return result
        finally:
            platform.stop()


def main() -> None:
    for label, window in (("stable window 10 s (fx)", "10"), ("stable window 60 s (Knative)", "60")):
        result = case(window)
        cells = ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in result.items())
        print(f"{label}: {cells}", flush=True)


if __name__ == "__main__":
    main()
