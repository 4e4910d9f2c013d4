"""Bounded logs on the real platform: a function's log rotates by size while its replica keeps writing, `fx logs`
reads and follows across the rotations, and the platform's own logs rotate too."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading

import httpx
import pytest
from fx.log_files import Limit
from fx.platform import Platform

from tests.integration.conftest import FX
from tests.waiting import wait_for

MAX_BYTES, KEEP = 4000, 2


@pytest.fixture
def small_logs(monkeypatch):
    """The controller the platform starts reads its limits from the environment, as fx-controller's flags."""
    monkeypatch.setenv("FX_LOG_MAX_BYTES", str(MAX_BYTES))
    monkeypatch.setenv("FX_LOG_KEEP", str(KEEP))


def invoke(platform, n: int) -> None:
    url = f"{platform.gateway_url}/2015-03-31/functions/talker/invocations"
    assert httpx.post(url, json={"n": n}, timeout=30).json() == n


def deploy_talker(platform, make_function) -> None:
    project = make_function("talker", "print(f'line 0 of {event[\"n\"]}')\n    print('line 1')\n    return event['n']")
    assert platform.fx("deploy", cwd=project).returncode == 0


def invocations(lines: list[str]) -> list[int]:
    """The numbers of the whole invocations shown, checking each is START, its two lines, END, REPORT."""
    numbers = []
    for i, line in enumerate(lines):
        if line.startswith("START RequestId: ") and i + 4 < len(lines):
            request = line.split()[2]
            assert re.fullmatch(r"line 0 of \d+", lines[i + 1]) and lines[i + 2] == "line 1"
            assert lines[i + 3] == f"END RequestId: {request}" and lines[i + 4].startswith(
                f"REPORT RequestId: {request}"
            )
            numbers.append(int(lines[i + 1].split()[-1]))
    return numbers


def test_a_function_log_rotates_while_written_and_fx_logs_reads_across(small_logs, platform, make_function):
    log = platform.state_dir / "logs" / "talker.log"
    deploy_talker(platform, make_function)
    for n in range(200):  # about 300 bytes each: 60 KB, many rotations of 4 KB
        invoke(platform, n)
    wait_for(lambda: (log.parent / "talker.log.2").exists(), 30, "two rotations")
    wait_for(lambda: "line 0 of 199" in platform.fx("logs", "talker").stdout, 30, "the last invocation")

    # No more than --log-keep rotated files, once the rotation that may be under way (its NAME.log.rotated, the
    # oldest already dropped) has ended: the log may still be over its limit after the last invocations.
    settled = ["talker.log", "talker.log.1", "talker.log.2"]
    wait_for(lambda: sorted(p.name for p in log.parent.glob("talker.log*")) == settled, 10, "the rotations to end")

    shown = platform.fx("logs", "talker", "--tail", "1000")
    assert shown.returncode == 0
    numbers = invocations(shown.stdout.splitlines())
    current = invocations(log.read_text().splitlines())
    assert len(numbers) > len(current) + 5  # from the rotated files too
    assert numbers == list(range(numbers[0], 200))  # whole, in order, none repeated or lost across files
    assert numbers[0] > 1  # the oldest went with the file past --log-keep


def test_follow_goes_on_through_a_rotation(small_logs, platform, make_function):
    deploy_talker(platform, make_function)
    invoke(platform, 0)
    wait_for(lambda: "line 0 of 0" in platform.fx("logs", "talker").stdout, 30, "the first invocation")
    env = {"FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token, "FX_CONFIG": str(platform.config)}
    proc = subprocess.Popen(
        [FX, "logs", "talker", "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(line.rstrip("\n") for line in proc.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: "line 0 of 0" in seen, 30, "the earlier invocation")
        rotated = platform.state_dir / "logs" / "talker.log.2"
        n = 0
        while not rotated.exists():  # two rotations while following, the rotator checking once a second
            n += 1
            assert n < 5000, "no two rotations after 5000 invocations"
            invoke(platform, n)
        wait_for(lambda: f"line 0 of {n}" in seen, 30, "the last invocation")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(30)
    assert proc.returncode == 0
    assert invocations(seen) == list(range(n + 1))


def test_the_platform_s_own_logs_rotate(tmp_path):
    platform = Platform(tmp_path / "state", ports="free", platform_logs=Limit(max_bytes=1000, keep=1))
    platform.start()
    try:
        controller = platform.log_dir / "controller.log"
        wait_for((platform.log_dir / "controller.log.1").exists, 30, "the controller's log rotated")
        rotated_at = controller.stat().st_size
        token = {"Authorization": f"Bearer {platform.token}"}
        assert httpx.delete(f"{platform.controller_url}/system/functions/nope", headers=token).status_code == 404
        httpx.get(f"{platform.gateway_url}/healthz").raise_for_status()
        assert sorted(p.name for p in platform.log_dir.glob("controller.log*")) == [
            "controller.log",
            "controller.log.1",
        ]
    finally:
        platform.stop()
    assert controller.stat().st_size > 0 or rotated_at == 0  # the controller still writes to its (truncated) log


@pytest.mark.parametrize(("flag", "value"), [("--log-keep", "-1"), ("--platform-log-max-bytes", "0")])
def test_log_limits_out_of_range_are_refused_before_anything_starts(tmp_path, flag, value):
    state = tmp_path / "state"
    up = subprocess.run(
        [FX, "up", "--state-dir", str(state), flag, value],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FX_CONFIG": str(tmp_path / "config.json")},
    )
    assert up.returncode == 2 and "--log-keep and --platform-log-keep at least 0" in up.stderr
    assert "Traceback" not in up.stderr and not state.exists()
