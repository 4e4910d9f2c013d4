"""Small tools the integration tests share: waiting, concurrent calls, reading metrics."""

import asyncio
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


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
