"""A requested stop ends the gateway with exit 0 even when NATS went first, as on `helm uninstall` (where a pod
that exits non-zero ends in `Error`): the connection is reconnecting then, and closing it must not fail."""

from __future__ import annotations

import os
import signal

from tests.integration.conftest import RunningPlatform
from tests.waiting import wait_for


def test_sigterm_after_nats_died_exits_0_without_a_traceback(platform: RunningPlatform) -> None:
    launcher = platform._platform
    [nats] = [p for p in launcher._running if p.name == "nats"]
    [gateway] = [p for p in launcher._running if p.name == "gateway"]
    log = launcher.log_dir / "gateway.log"
    os.kill(nats.proc.pid, signal.SIGKILL)
    nats.proc.wait(15)
    wait_for(lambda: "NATS disconnected" in log.read_text(errors="replace"), 15, "the gateway to see NATS gone")
    os.kill(gateway.proc.pid, signal.SIGTERM)
    assert gateway.proc.wait(15) == 0
    text = log.read_text(errors="replace")
    assert "stopped" in text
    assert "Traceback" not in text.split("NATS disconnected", 1)[1].split("stopping:", 1)[1]
