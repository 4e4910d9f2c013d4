"""The one way tests wait: poll a condition until it holds, or fail naming what did not happen."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `condition` (blocking) until it returns something truthy, and return that; an AssertionError
    naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return value


async def until(
    condition: Callable[[], T | Awaitable[T]], timeout: float = 5.0, what: str = "", interval: float = 0.02
) -> T:
    """`wait_for` inside the event loop: sleeps without blocking it, so the tasks that make `condition` true run.
    `condition` may be a coroutine function (e.g. asking NATS). Without `what`, the failure names its source."""
    what = what or _source(condition)
    deadline = time.monotonic() + timeout
    while not (value := await _value(condition)):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
    return value


def _source(condition: Callable) -> str:
    try:
        return inspect.getsource(condition).strip()
    except (OSError, TypeError):
        return repr(condition)


async def _value(condition: Callable[[], T | Awaitable[T]]) -> T:
    value = condition()
    return await value if inspect.isawaitable(value) else value  # type: ignore[return-value]
