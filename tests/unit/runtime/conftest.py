"""Helpers to run real replicas (python -m fx_runtime) on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.waiting import wait_for


class Replica:
    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.endpoint = ""

    @property
    def base(self) -> str:
        return f"http://{self.endpoint}"

    def wait_ready(self, timeout: float = 10.0) -> Replica:
        def endpoint() -> str | None:
            for line in self.log.read_text().splitlines():
                if line.startswith("fx-runtime ready on "):
                    return line.split()[3]
            if self.proc.poll() is not None:
                raise AssertionError(f"replica exited with {self.proc.returncode}: {self.log.read_text()}")
            return None

        self.endpoint = wait_for(endpoint, timeout, "the replica ready", interval=0.01)
        return self

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def log_text(self, containing: str = "", timeout: float = 5.0) -> str:
        """The log, once it contains `containing` (the replica flushes right after answering, not before)."""

        def text() -> str:
            log = self.log.read_text()
            return log if containing in log else ""

        return wait_for(text, timeout, f"{containing!r} in the replica's log") if containing else self.log.read_text()


def write_code(root: Path, files: dict[str, str]) -> Path:
    for name, code in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))
    return root


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    """start(files, handler=, wait=, **env) -> a Replica on a free port, `files` written to its LAMBDA_TASK_ROOT."""
    started: list[Replica] = []

    def _start(files: dict[str, str] | None = None, handler: str = "handler.handler", wait: bool = True, **env: str):
        code = write_code(tmp_path / "code", files or {})
        log = tmp_path / f"replica-{len(started)}.log"
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(code),
            "FX_LISTEN": "127.0.0.1:0",
            "AWS_LAMBDA_FUNCTION_NAME": "fn",
            "AWS_LAMBDA_FUNCTION_VERSION": "3",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            **env,
        }
        with log.open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "fx_runtime"], env=full_env, stdout=out, stderr=out)
        replica = Replica(proc, log)
        started.append(replica)
        return replica.wait_ready() if wait else replica

    yield _start
    for replica in started:
        if replica.proc.poll() is None:
            replica.proc.send_signal(signal.SIGKILL)
            replica.proc.wait(5)
