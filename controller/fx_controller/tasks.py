"""Fire-and-forget tasks: kept referenced while they run (asyncio keeps only weak references), and an exception
logged when the task ends, since no one awaits them (the tests fail on any record here, tests/conftest.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

log = logging.getLogger("fx_controller.tasks")


def spawn(coro: Awaitable, running: set[asyncio.Task]) -> asyncio.Task:
    """Run `coro` as a task held in `running` (its owner's, to cancel or await at close) until it ends."""
    task = asyncio.ensure_future(coro)
    running.add(task)
    task.add_done_callback(lambda done: _finished(done, running))
    return task


def _finished(task: asyncio.Task, running: set[asyncio.Task]) -> None:
    running.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("task %s failed", task.get_coro(), exc_info=error)
