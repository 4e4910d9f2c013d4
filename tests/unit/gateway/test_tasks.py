"""A spawned task's exception is reported when the task ends, which is what fails the test that caused it."""

import asyncio

from fx_gateway.tasks import spawn


async def boom() -> None:
    raise RuntimeError("boom")


async def test_a_failing_spawned_task_is_reported_to_the_test_at_once(spawned_tasks_do_not_fail):
    task = spawn(boom())
    await asyncio.wait([task])
    (record,) = spawned_tasks_do_not_fail.records  # seen by the autouse fixture: it would fail this test
    assert record.exc_info and str(record.exc_info[1]) == "boom"
    spawned_tasks_do_not_fail.records.clear()


async def test_a_cancelled_spawned_task_is_not_a_failure(spawned_tasks_do_not_fail):
    task = spawn(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait([task])
    assert not spawned_tasks_do_not_fail.records
