"""A task the controller spawned that fails is reported when it ends, which is what fails the test that caused it."""

import asyncio

from fx_controller.tasks import spawn, within


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


async def test_a_stop_that_hangs_is_given_up_after_its_time_naming_what_still_runs(spawned_tasks_do_not_fail):
    async def never_answered() -> None:
        await asyncio.Event().wait()

    step = asyncio.ensure_future(never_answered())

    async def stop() -> None:
        await step

    try:
        assert await within(stop(), 0.1, "the stop") is False
    finally:
        step.cancel()
    (record,) = spawned_tasks_do_not_fail.records
    message = record.getMessage()
    assert message.startswith("the stop did not finish within 0.1 s") and "never_answered" in message, message
    spawned_tasks_do_not_fail.records.clear()
    assert await within(asyncio.sleep(0), 1.0, "the stop") is True
