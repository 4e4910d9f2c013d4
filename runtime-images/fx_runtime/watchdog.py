"""The timeout watchdog: handlers run on the main thread, so their deadline is kept by another thread."""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable
from typing import Any


class Watchdog:
    """Calls `on_expiry(job)` (which must not return: it ends the process) when an armed job outlives its deadline.

    Arming and disarming are plain attribute stores; the thread never needs waking. Every deadline is
    `timeout_s` after its arming, so a thread that finds nothing armed may sleep `timeout_s`: whatever is
    armed meanwhile expires no earlier than it wakes. It thus wakes at most about twice per `timeout_s`.
    """

    def __init__(self, timeout_s: float, on_expiry: Callable[[Any], None]) -> None:
        self._timeout_s = timeout_s
        self._on_expiry = on_expiry
        self._current: tuple[float, Any] | None = None
        self._lock = threading.Lock()  # held while expiring, so a late disarm cannot race the timeout answer
        # Not threading.Thread: its start() waits for the new thread to run, a few ms on a busy host at init.
        _thread.start_new_thread(self._run, ())

    def arm(self, job: Any) -> float:
        """Watch `job` from now; returns its deadline (a time.time() value)."""
        deadline = time.time() + self._timeout_s
        self._current = (deadline, job)
        return deadline

    def disarm(self) -> None:
        with self._lock:
            self._current = None

    def _run(self) -> None:
        while True:
            current = self._current
            if current is None:
                time.sleep(self._timeout_s)
                continue
            delay = current[0] - time.time()
            if delay > 0:
                time.sleep(delay)
                continue
            with self._lock:
                if self._current is current:
                    self._on_expiry(current[1])
