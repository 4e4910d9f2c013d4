"""Stopping the platform's nats-server (by its PID) and starting it again with the same command line: same
port, same store dir (or an emptied one). A test-side hook: `fx up`'s own supervision is fx.platform's."""

from __future__ import annotations

import os
import shutil
import signal

from fx.platform import _tcp_open

from tests.integration.conftest import RunningPlatform


def stop_nats(platform: RunningPlatform, sig: int = signal.SIGKILL) -> list[str]:
    """Signal nats-server, wait for it to exit; returns its command line."""
    launcher = platform._platform
    [nats] = [p for p in launcher._running if p.name == "nats"]
    os.kill(nats.proc.pid, sig)
    nats.proc.wait(15)
    launcher._running.remove(nats)
    nats.log.close()
    assert not _tcp_open(nats_port(platform))
    return list(nats.proc.args)


def start_nats(platform: RunningPlatform, argv: list[str], empty: bool = False) -> None:
    """Start nats-server with `argv` again; `empty`: on an emptied store dir, as if its disk were lost."""
    if empty:
        shutil.rmtree(platform.state_dir / "nats")
    port = nats_port(platform)
    platform._platform._spawn("nats", argv, lambda: _tcp_open(port))


def nats_port(platform: RunningPlatform) -> int:
    return int(platform.nats_url.rpartition(":")[2])
