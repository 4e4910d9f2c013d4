"""The one way tests wait: poll a condition until it holds, or fail naming what did not happen."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
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


async def until(condition: Callable[[], T], timeout: float = 5.0, what: str = "", interval: float = 0.02) -> T:
    """`wait_for` inside the event loop: sleeps without blocking it, so the tasks that make `condition` true run.
    Without `what`, the failure names the condition's source line."""
    what = what or _source(condition)
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
    return value


def _source(condition: Callable) -> str:
    try:
        return inspect.getsource(condition).strip()
    except (OSError, TypeError):
        return repr(condition)
