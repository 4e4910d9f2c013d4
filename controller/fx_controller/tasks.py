"""Fire-and-forget tasks: kept referenced while they run (asyncio keeps only weak references), and an exception
logged when the task ends, since no one awaits them (the tests fail on any record here, tests/conftest.py). And
`within`: an await given up after its time, for stops."""

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


async def within(work: Awaitable, timeout: float, what: str) -> bool:
    """Await `work` for at most `timeout` s; False, with the tasks still running logged, if it did not finish.
    For a stop: one step that hangs (a peer that never answers) must not hold the process until a SIGKILL."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done:
        task.result()
        return True
    others = asyncio.all_tasks() - {asyncio.current_task()}
    running = sorted(getattr(t.get_coro(), "__qualname__", repr(t.get_coro())) for t in others if not t.done())
    log.error("%s did not finish within %g s; still running: %s", what, timeout, ", ".join(running))
    task.cancel()
    return False
