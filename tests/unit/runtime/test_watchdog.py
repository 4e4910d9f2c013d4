"""The timeout watchdog keeps deadlines and hears the sandbox's alarm whatever the alarm fd's number."""

from __future__ import annotations

import os
import resource
import threading

import pytest
from fx_runtime.watchdog import Watchdog


@pytest.fixture
def high_pipe():
    """A pipe whose read end is fd 1500: past FD_SETSIZE, as in a replica of a zygote with ~1,000 replicas."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] <= 1500:
        pytest.skip("the open files limit is too low for fd 1500")
    read_fd, write_fd = os.pipe()
    os.dup2(read_fd, 1500)
    os.close(read_fd)
    return 1500, write_fd  # left open: the watchdog's thread (it has no stop) polls fd 1500 until pytest exits


def test_an_alarm_on_an_fd_past_fd_setsize_is_heard_and_a_deadline_still_kept(high_pipe) -> None:
    alarm_fd, write_fd = high_pipe
    alarmed, expired = threading.Event(), threading.Event()
    seen: list[object] = []

    def on_alarm(job: object) -> None:
        seen.append(job)
        alarmed.set()

    watchdog = Watchdog(0.2, lambda job: expired.set(), alarm_fd=alarm_fd, on_alarm=on_alarm)
    watchdog.arm("job-1")
    os.write(write_fd, b"m")
    assert alarmed.wait(2) and seen == ["job-1"]
    watchdog.disarm()
    watchdog.arm("job-2")
    assert expired.wait(2)  # the thread lived on after the alarm: the deadline is kept
    watchdog.disarm()  # on_expiry returned (a replica's ends the process): nothing left to expire
