"""Small tools the integration tests share: concurrent calls, reading metrics, what event functions leave
(waiting: tests/waiting.py)."""

import asyncio
import threading
import time
from pathlib import Path

import boto3
import httpx
from botocore.config import Config
from fx.protocol import STREAM_DLQ
from fx_controller.backends.local_sandbox import run_dir
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import RunningPlatform


async def call_many(url: str, count: int, concurrency: int = 50) -> list[httpx.Response]:
    """Send `count` GETs with at most `concurrency` in flight; return every answer."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one() -> httpx.Response:
            async with sem:
                return await client.get(url)

        return await asyncio.gather(*(one() for _ in range(count)))


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition; 0 when absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


class SteadyLoad:
    """`callers` threads calling `url` back to back until stopped (bounded by `max_requests` and
    `max_seconds`), each answer kept as (sent_at, done_at, status, body) with monotonic times."""

    def __init__(self, url: str, callers: int = 8, max_requests: int = 20_000, max_seconds: float = 45.0) -> None:
        self.url, self.callers = url, callers
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.answers: list[tuple[float, float, int, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._call, daemon=True) for _ in range(callers)]

    def __enter__(self) -> "SteadyLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _call(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline and len(self.answers) < self.max_requests:
                sent = time.monotonic()
                try:
                    r = client.get(self.url)
                    answer = (sent, time.monotonic(), r.status_code, r.text)
                except httpx.HTTPError as exc:
                    answer = (sent, time.monotonic(), 0, repr(exc))
                self.answers.append(answer)  # list.append is atomic under the GIL

    def between(self, start: float, end: float) -> list[tuple[float, float, int, str]]:
        """The answers to requests sent at or after `start` and answered by `end`."""
        return [a for a in self.answers if a[0] >= start and a[1] <= end]


def up_hints(output: str) -> list:
    """The commands `fx up` printed to try what it deployed: the indented lines after "try:"."""
    from fx import docblocks

    printed = output.split("; try:\n", 1)[1].split("Ctrl-C stops fx", 1)[0]
    return docblocks.commands([line.removeprefix("  ") for line in printed.splitlines()])


def lambda_client(platform: RunningPlatform, read_timeout: int = 30):
    """boto3's Lambda client pointed at the platform's gateway, without retries."""
    return boto3.client(
        "lambda",
        endpoint_url=platform.gateway_url,
        region_name="us-east-1",
        aws_access_key_id="fx",
        aws_secret_access_key="fx",
        config=Config(retries={"max_attempts": 1}, read_timeout=read_timeout),
    )


def report_file(platform: RunningPlatform, function: str) -> Path:
    """Where a function appends what it got ($OUT): its private directory, the one place a function may write
    that the host sees (the sandbox hides everything else, the test's own files included)."""
    return run_dir(platform.state_dir) / function / "out"


def dead_letters(platform: RunningPlatform) -> list:
    """Every dead letter stored so far."""

    async def read() -> list:
        nc = await platform.nats()
        js = nc.jetstream()
        total = (await js.stream_info(STREAM_DLQ)).state.messages
        letters = []
        if total:
            sub = await js.subscribe("fx.dlq.>", ordered_consumer=True)
            letters = [await sub.next_msg(timeout=5) for _ in range(total)]
        await nc.close()
        return letters

    return asyncio.run(read())


KV_LISTENER = """\
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        for r in event["Records"]:
            out.write(f"{r['key']} {r['operation']} {r['value'] or '-'}\\n")
"""
