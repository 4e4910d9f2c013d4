"""A real embedded platform per test: nats-server, controller (local backend), gateway.

It is started with the same `fx.platform` code that `fx up` uses, on free ports and a
fresh state directory, and every process it started is stopped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fx.platform import Platform, Restarts
from nats.aio.client import Client as NATS

from tests.processes import alive

FX = str(Path(sys.executable).with_name("fx"))


class RunningPlatform:
    """The platform under test, with the CLI pointed at it."""

    def __init__(self, state_dir: Path, config: Path, restarts: Restarts | None = None) -> None:
        self.state_dir = state_dir
        self.config = config
        self.restarts: list[str] = []  # what the supervisor reported, as `fx up` prints it
        self._platform = Platform(state_dir=state_dir, ports="free", restarts=restarts, on_restart=self.restarts.append)
        self._platform.start()

    @property
    def gateway_url(self) -> str:
        return self._platform.gateway_url

    @property
    def nats_url(self) -> str:
        return self._platform.nats_url

    @property
    def controller_url(self) -> str:
        return self._platform.controller_url

    @property
    def token(self) -> str:
        return self._platform.token

    async def nats(self, **options) -> NATS:
        """A NATS client as the platform's admin user: NATS refuses anonymous connections. `options` go to
        nats.connect."""
        return await self._platform.admin_nats(**options)

    def restart(self) -> None:
        self._platform.stop()
        self._platform.start()

    def stop(self) -> None:
        self._platform.stop()

    def fx(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
        """Run the `fx` CLI as a user would, against this platform."""
        full_env = {**os.environ, "FX_GATEWAY": self.gateway_url, "FX_TOKEN": self.token, "FX_CONFIG": str(self.config)}
        full_env.update(env or {})
        return subprocess.run(
            [FX, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )

    def replica_pids(self, function: str) -> list[int]:
        """PIDs of the live replica processes of `function`: the processes writing its log file."""
        log = str(self.state_dir / "logs" / f"{function}.log")
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if os.readlink(entry / "fd" / "1") == log and alive(int(entry.name)):
                    pids.append(int(entry.name))
            except OSError:
                continue
        return sorted(pids)


def platform_in(tmp_path: Path) -> Iterator[RunningPlatform]:
    """A platform in `tmp_path`, stopped after use: for a fixture that sets the environment first."""
    running = RunningPlatform(tmp_path / "state", tmp_path / "fx-config.json")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[RunningPlatform]:
    yield from platform_in(tmp_path)


@pytest.fixture
def supervised_platform(tmp_path: Path, monkeypatch) -> Iterator[RunningPlatform]:
    """A platform supervised as `fx up`'s is (a component that exits is restarted), with fast async retries."""
    monkeypatch.setenv("FX_ASYNC_BACKOFF", "0.2")
    monkeypatch.setenv("FX_ASYNC_ACK_WAIT", "2")
    running = RunningPlatform(tmp_path / "state", tmp_path / "fx-config.json", Restarts())
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def fast_platform(tmp_path: Path, monkeypatch):
    """A platform whose gateway retries fast and gets back the calls of a dead gateway after 2 s."""
    monkeypatch.setenv("FX_ASYNC_BACKOFF", "0.2")
    monkeypatch.setenv("FX_ASYNC_ACK_WAIT", "2")
    running = RunningPlatform(tmp_path / "state", tmp_path / "fx-config.json")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def make_function(tmp_path: Path):
    """Write a function project (handler.py + fx.yaml) and return its folder."""

    def make(
        name: str,
        body: str,
        imports: str = "",
        scale: dict | None = None,
        config: dict | None = None,
    ) -> Path:
        project = tmp_path / "functions" / name
        project.mkdir(parents=True, exist_ok=True)
        source = f"{imports}\n\n\ndef handler(event, context):\n    {body}\n"
        (project / "handler.py").write_text(textwrap.dedent(source))
        spec = {"handler": "handler.handler", **(config or {})}
        if scale:
            spec["scale"] = scale
        (project / "fx.yaml").write_text(yaml.safe_dump({"functions": {name: spec}}))
        return project

    return make
