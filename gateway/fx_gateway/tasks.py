"""Fire-and-forget tasks that are not garbage-collected while they run (asyncio keeps only weak references)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("fx_gateway.tasks")  # the tests fail on any record here (tests/conftest.py)

_running: set[asyncio.Task] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(coro)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task) -> None:
    """Reported when it happens, not when the task is collected: no one may ever await a spawned task."""
    _running.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("task %s failed", task.get_coro(), exc_info=error)
