"""The timeout watchdog: handlers run on the main thread, so their deadline is kept by another thread."""

from __future__ import annotations

import _thread
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any


class Watchdog:
    """Calls `on_expiry(job)` (which must not return: it ends the process) when an armed job outlives its deadline.

    Arming and disarming are plain attribute stores; the thread never needs waking. Every deadline is
    `timeout_s` after its arming, so a thread that finds nothing armed may sleep `timeout_s`: whatever is
    armed meanwhile expires no earlier than it wakes. It thus wakes at most about twice per `timeout_s`.

    With an `alarm_fd` (the sandbox's control pipe), the thread also wakes when it becomes readable and calls
    `on_alarm(job or None)`, which must not return either: the replica is out of memory, or its zygote is gone.
    `alarm()` does the same from a signal handler on the main thread, which the sandbox uses too: the thread
    needs the GIL, and the main thread holds it while the handler runs Python (for up to a switch interval)
    or C code that never releases it.
    """

    def __init__(
        self,
        timeout_s: float,
        on_expiry: Callable[[Any], None],
        alarm_fd: int | None = None,
        on_alarm: Callable[[Any], None] | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._on_expiry = on_expiry
        self._alarm_fd = alarm_fd
        self._on_alarm = on_alarm
        self._current: tuple[float, Any] | None = None
        # poll(), not select(): a replica forked by a zygote with ~1,000 replicas has fds past FD_SETSIZE (1024),
        # and select() refused them, ending this thread (no timeout nor memory alarm kept from then on).
        self._alarm = select.poll()
        if alarm_fd is not None:
            self._alarm.register(alarm_fd, select.POLLIN)
        self._lock = threading.Lock()  # held while expiring, so a late disarm cannot race the timeout answer
        # Not threading.Thread: its start() waits for the new thread to run, a few ms on a busy host at init.
        _thread.start_new_thread(self._run, ())

    def arm(self, job: Any) -> float:
        """Watch `job` from now; returns its deadline (a time.time() value)."""
        deadline = time.time() + self._timeout_s
        self._current = (deadline, job)
        return deadline

    def alarm(self) -> None:
        """Call `on_alarm` now, unless this thread is already answering (it ends the process)."""
        if self._lock.acquire(blocking=False):
            current = self._current
            self._on_alarm(current[1] if current else None)

    def disarm(self) -> None:
        with self._lock:
            self._current = None

    def _run(self) -> None:
        while True:
            current = self._current
            delay = self._timeout_s if current is None else current[0] - time.time()
            if delay > 0:
                self._sleep(delay)
                continue
            with self._lock:
                if self._current is current:
                    self._on_expiry(current[1])

    def _sleep(self, delay: float) -> None:
        if self._alarm_fd is None or self._on_alarm is None:
            time.sleep(delay)
        elif self._alarm.poll(delay * 1000):  # readable, or its write end closed (the zygote is gone)
            os.read(self._alarm_fd, 1)
            with self._lock:
                current = self._current
                self._on_alarm(current[1] if current else None)
