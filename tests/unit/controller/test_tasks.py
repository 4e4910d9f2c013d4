"""A task the controller spawned that fails is reported when it ends, which is what fails the test that caused it."""

import asyncio

from fx_controller.tasks import spawn


async def boom() -> None:
    raise RuntimeError("boom")


async def test_a_failing_spawned_task_is_reported_at_once_and_leaves_its_set(spawned_tasks_do_not_fail):
    running: set[asyncio.Task] = set()
    task = spawn(boom(), running)
    assert running == {task}
    await asyncio.wait([task])
    assert running == set()
    (record,) = spawned_tasks_do_not_fail.records  # seen by the autouse fixture: it would fail this test
    assert record.name == "fx_controller.tasks" and str(record.exc_info[1]) == "boom"
    spawned_tasks_do_not_fail.records.clear()
