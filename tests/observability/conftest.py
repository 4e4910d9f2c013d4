"""The observability tier: the embedded platform under a bounded load, scraped by a real Prometheus.

One platform and one Prometheus for the whole tier (scenario below, about a minute of load): a blue-green shift
(v1/v2 at 90/10, errors injected into v2) with a cold start of v1, an async backlog, a dead letter, and a durable
trigger whose batches are redelivered. What the scenario did is kept in `Scenario`, for the tests to compare with
what the dashboards' queries answer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import metric
from tests.observability.prometheus import Prometheus
from tests.waiting import wait_for

# The body names the version by number: context.function_version says $LATEST for the newest version when the
# call named none, as Lambda's does.
SHOP_V1 = (
    "import os\n\ndef handler(event, context):\n"
    "    return {'statusCode': 200, 'body': os.environ['AWS_LAMBDA_FUNCTION_VERSION']}\n"
)
SHOP_V2 = (
    "import os\n\ndef handler(event, context):\n"
    "    if 'fail' in event.get('rawQueryString', ''):\n"
    "        raise RuntimeError('injected failure')\n"
    "    return {'statusCode': 200, 'body': os.environ['AWS_LAMBDA_FUNCTION_VERSION']}\n"
)
SLOW = "import time\n\ndef handler(event, context):\n    time.sleep(0.5)\n    return 'done'\n"
FAILING = "def handler(event, context):\n    raise RuntimeError('always')\n"
# Fails every record on its first delivery: each is redelivered once, then acked.
ORDERS = (
    "def handler(event, context):\n"
    "    return {'batchItemFailures': [{'itemIdentifier': r['messageId']}\n"
    "                                  for r in event['Records'] if r['deliveries'] == 1]}\n"
)
LOAD_REQUESTS = 240  # the blue-green load: bounded in count ...
LOAD_SECONDS = 12.0  # ... and spread over this long, so Prometheus takes a dozen samples of it
FAIL_EVERY = 4  # every 4th request asks for an injected failure (v1 ignores it, v2 fails)
ASYNC_CALLS = 10
ORDERS_MESSAGES = 6


@dataclass
class Scenario:
    platform: RunningPlatform
    prometheus: Prometheus
    started: float = field(default_factory=time.time)
    cold_starts: int = 0  # of shop v1 since cold_start_at (a scrape before it had the count without them)
    cold_start_at: float = 0.0
    canary_ok: int = 0  # the load's answers from v2
    canary_errors: int = 0
    stable_ok: int = 0


def write_function(root: Path, name: str, source: str, **spec) -> Path:
    project = root / name
    project.mkdir(parents=True, exist_ok=True)
    (project / "handler.py").write_text(source)
    (project / "fx.yaml").write_text(yaml.safe_dump({"functions": {name: {"handler": "handler.handler", **spec}}}))
    return project


def fx_ok(platform: RunningPlatform, *args: str, cwd: Path | None = None) -> str:
    result = platform.fx(*args, cwd=cwd)
    assert result.returncode == 0, f"fx {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp("observability")
    saved = {k: os.environ.get(k) for k in ("FX_BACKLOG_INTERVAL", "FX_USAGE_INTERVAL", "FX_ASYNC_BACKOFF")}
    os.environ.update(FX_BACKLOG_INTERVAL="0.5", FX_USAGE_INTERVAL="1", FX_ASYNC_BACKOFF="0.2")
    platform = RunningPlatform(root / "state", root / "fx-config.json")
    prometheus = None
    try:
        prometheus = Prometheus(root / "prometheus", platform.gateway_url, platform.controller_url, platform.token)
        run = Scenario(platform, prometheus)
        functions = root / "functions"
        blue_green(run, functions)
        async_work(run, functions)
        durable_trigger(run, functions)
        settle(run)
        yield run
    finally:
        if prometheus is not None:
            prometheus.close()
        platform.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def blue_green(run: Scenario, functions: Path) -> None:
    """shop v1 and v2 (the canary, failing the requests that ask for it) at 90/10. v1 is let scale to zero first, so
    the seeding requests (one to each version, one failing on v2) make exactly one cold start, of v1; every series
    the tests compare is scraped before the load, so increase() sees the load's requests whole."""
    platform, url = run.platform, f"{run.platform.gateway_url}/function/shop"
    fx_ok(platform, "deploy", cwd=write_function(functions, "shop", SHOP_V1, scale={"idle_timeout": 5}))
    fx_ok(platform, "deploy", "--no-traffic", cwd=write_function(functions, "shop", SHOP_V2, scale={"idle_timeout": 5}))
    fx_ok(platform, "traffic", "shop", "1=90", "2=10")
    for version in ("1", "2"):  # their counters exist from here on, at 0 cold starts
        assert httpx.get(url, headers={"X-Fx-Version": version}, timeout=30).text == version
    v1_ready = 'sum(fx_controller_replicas{function="shop", version="1", state="ready"})'
    wait_for(lambda: run.prometheus.value(v1_ready) == 0, 30, "shop v1 to scale to zero")  # v2 is kept warm
    # A scrape has the count from before (v1 may have been at zero once already, when v2's deploy was slow).
    wait_for(lambda: run.prometheus.value(v1_ready.replace("sum(", "count(")), 5, "a scrape at zero")
    run.cold_start_at = time.time()
    assert httpx.get(url, headers={"X-Fx-Version": "1"}, timeout=30).text == "1"  # the cold start
    run.cold_starts = 1
    assert httpx.get(f"{url}?fail=1", headers={"X-Fx-Version": "2"}, timeout=30).status_code == 502
    selector = 'fx_gateway_requests_total{function="shop", version="2", code="502"}'
    wait_for(lambda: run.prometheus.value(selector) == 1, 15, "Prometheus to see the seeded canary error")

    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def caller(offset: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(offset, LOAD_REQUESTS, 2):
                r = http.get(f"{url}?fail=1" if i % FAIL_EVERY == 0 else url)
                with lock:
                    answers.append((r.status_code, r.text))
                time.sleep(LOAD_SECONDS * 2 / LOAD_REQUESTS)  # pacing the bounded load, not waiting for a state

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=LOAD_SECONDS * 5)
    assert len(answers) == LOAD_REQUESTS
    run.canary_ok = sum(1 for status, body in answers if status == 200 and body == "2")
    run.stable_ok = sum(1 for status, body in answers if status == 200 and body == "1")
    run.canary_errors = sum(1 for status, _ in answers if status == 502)
    assert run.canary_ok + run.stable_ok + run.canary_errors == LOAD_REQUESTS


def async_work(run: Scenario, functions: Path) -> None:
    """A backlog (10 calls to a function of one replica taking 0.5 s each) and a dead letter (retries exhausted)."""
    platform, gateway = run.platform, run.platform.gateway_url
    fx_ok(platform, "deploy", cwd=write_function(functions, "slow", SLOW, scale={"max": 1, "concurrency": 1}))
    fx_ok(platform, "deploy", cwd=write_function(functions, "failing", FAILING))
    for i in range(ASYNC_CALLS):
        assert httpx.post(f"{gateway}/async-function/slow", json={"n": i}, timeout=30).status_code == 202
    assert httpx.post(f"{gateway}/async-function/failing", json={}, timeout=30).status_code == 202
    wait_for(
        lambda: run.prometheus.value('max(fx_gateway_async_backlog{function="slow"})') or 0,
        20,
        "Prometheus to see the async backlog",
    )

    def done() -> bool:
        text = httpx.get(f"{gateway}/metrics", timeout=10).text
        slow = metric(text, "fx_gateway_async_attempts_total", function="slow", result="ok")
        dead = metric(text, "fx_gateway_async_dead_letters_total", function="failing", reason="retries_exhausted")
        return slow == ASYNC_CALLS and dead == 1

    wait_for(done, 60, "the async calls to run and the failing one to be dead-lettered")


def durable_trigger(run: Scenario, functions: Path) -> None:
    platform = run.platform
    fx_ok(platform, "stream", "create", "ORDERS", "orders.>")
    spec = {"triggers": [{"jetstream": {"stream": "ORDERS", "batch": 5, "window_ms": 200, "backoff": 0.2}}]}
    fx_ok(platform, "deploy", cwd=write_function(functions, "orders", ORDERS, **spec))
    for i in range(ORDERS_MESSAGES):
        fx_ok(platform, "publish", "orders.new", f'{{"id": {i}}}')
        if i == 0:  # the rest after a scrape has the trigger's series: rate() then sees them grow, however fast
            first = 'sum(fx_gateway_trigger_batch_size_count{function="orders"})'
            wait_for(lambda e=first: (run.prometheus.value(e) or 0) > 0, 30, "a scrape with the trigger's first batch")

    def redelivered() -> bool:
        text = httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text
        return metric(text, "fx_gateway_trigger_redeliveries_total", function="orders") == ORDERS_MESSAGES

    wait_for(redelivered, 60, "every order to be redelivered once")


def settle(run: Scenario) -> None:
    """Prometheus has the scenario's last counts (a scrape after them)."""
    expectations = {
        'sum(fx_gateway_async_dead_letters_total{function="failing"})': 1,
        'sum(fx_gateway_trigger_redeliveries_total{function="orders"})': ORDERS_MESSAGES,
        'sum(fx_gateway_async_attempts_total{function="slow", result="ok"})': ASYNC_CALLS,
    }
    for expr, want in expectations.items():
        wait_for(lambda e=expr, w=want: run.prometheus.value(e) == w, 20, f"Prometheus to see {expr} == {want}")
