"""A Kubernetes controller told to stop exits in bounded time, saying what held it, rather than being SIGKILLed
after its grace with nothing said."""

from __future__ import annotations

import subprocess
import sys
import time

HELD = """
import threading, time
from fx_controller.__main__ import exit_deadline
exit_deadline(0.5)
threading.Thread(target=time.sleep, args=(60,), name="held").start()  # the interpreter joins it at exit
"""


def test_a_stop_held_by_a_thread_ends_at_the_deadline_with_every_stack_said() -> None:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HELD], capture_output=True, text=True, timeout=30)
    took = time.monotonic() - began
    assert done.returncode == 1 and took < 20, (done.returncode, took)
    assert "not stopped 0.5 s after being told to" in done.stderr and "Thread 0x" in done.stderr, done.stderr
