"""The security tier runs attacks against the real embedded platform: the integration tier's fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import RunningPlatform, make_function, platform  # noqa: F401 - pytest fixtures


@pytest.fixture
def platform_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., RunningPlatform]]:
    """platform_with(FX_NAME=value, ...): the platform, its processes started with these variables set (the
    flags of the gateway and the controller read them)."""
    started: list[RunningPlatform] = []

    def start(**env: str) -> RunningPlatform:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        started.append(RunningPlatform(tmp_path / "state", tmp_path / "fx-config.json"))
        return started[-1]

    yield start
    for running in started:
        running.stop()
