"""A Kubernetes controller told to stop exits in bounded time, saying what held it, rather than being SIGKILLed
after its grace with nothing said."""

from __future__ import annotations

import subprocess
import sys
import time

HELD = """
import asyncio, threading, time
from fx_controller.__main__ import exit_deadline

async def never_answered():
    await asyncio.Event().wait()

async def main():
    exit_deadline(0.5, asyncio.get_running_loop())
    threading.Thread(target=time.sleep, args=(60,), name="held").start()  # the interpreter joins it at exit
    stuck = asyncio.ensure_future(never_answered())  # a stop step that never ends
    await stuck

asyncio.run(main())
"""


def test_a_stop_held_by_a_task_and_a_thread_ends_at_the_deadline_naming_them() -> None:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HELD], capture_output=True, text=True, timeout=30)
    took = time.monotonic() - began
    assert done.returncode == 1 and took < 20, (done.returncode, took)
    assert "not stopped 0.5 s after being told to" in done.stderr, done.stderr
    assert "tasks still running: main, never_answered" in done.stderr and "Thread 0x" in done.stderr, done.stderr
