"""What every test shares: an exception in a task the gateway `spawn`ed fails the test that caused it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def spawned_tasks_do_not_fail() -> Iterator[_Collect]:
    """fx_gateway.tasks logs a spawned task's exception when it ends (no one awaits those tasks)."""
    collect, logger = _Collect(), logging.getLogger("fx_gateway.tasks")
    logger.addHandler(collect)
    try:
        yield collect
    finally:
        logger.removeHandler(collect)
    if collect.records:
        failures = "\n".join(collect.format(r) for r in collect.records)
        pytest.fail(f"a spawned task failed during the test:\n{failures}", pytrace=False)
