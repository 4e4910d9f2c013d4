"""A child started with die_with_parent's preexec_fn gets its signal when its launcher dies, whichever signal."""

import signal
import subprocess
import sys

import pytest

from tests.waiting import wait_for

# The launcher: starts a sleeper that asks for `sig` at its parent's death, prints its pid, then waits to be killed.
LAUNCHER = """
import signal, subprocess, sys
from fx.orphans import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=die_with_parent(SIG))
print(child.pid, flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has died
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_child_dies_with_its_launcher(sig: signal.Signals) -> None:
    code = LAUNCHER.replace("SIG", f"signal.{sig.name}")
    launcher = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child = int(launcher.stdout.readline())
        assert _alive(child)
        launcher.kill()
        launcher.wait()
        wait_for(lambda: not _alive(child), 10, f"the child to get {sig.name}", interval=0.05)
    finally:
        launcher.kill()
        launcher.wait()
