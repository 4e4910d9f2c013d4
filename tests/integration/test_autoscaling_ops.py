"""The autoscaler's decision as an operator sees it: panic mode on a jump in load, on /metrics and in `fx describe`,
and `fx top` under load."""

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios

import httpx
import pytest

from tests.integration.conftest import FX
from tests.integration.helpers import SteadyLoad, metric
from tests.waiting import wait_for

STABLE_WINDOW_S = "4"  # the controller's --stable-window here: panic lasts at least this long after the jump


def controller_metrics(platform) -> str:
    auth = {"Authorization": f"Bearer {platform.token}"}
    return httpx.get(f"{platform.controller_url}/metrics", headers=auth, timeout=10).text


def decision(platform, function: str) -> tuple[float, float, float]:
    """(panic mode, replicas desired, ready replicas) of version 1 on the controller's /metrics."""
    text = controller_metrics(platform)
    labels = {"function": function, "version": "1"}
    return (
        metric(text, "fx_controller_panic_mode", **labels),
        metric(text, "fx_controller_replicas_desired", **labels),
        metric(text, "fx_controller_replicas", state="ready", **labels),
    )


def described_desired(platform, function: str) -> int:
    shown = json.loads(platform.fx("describe", function, "-o", "json").stdout)
    return shown["versions"][0]["replicas_desired"]


@pytest.fixture
def short_window_platform(monkeypatch, request):
    monkeypatch.setenv("FX_STABLE_WINDOW", STABLE_WINDOW_S)  # read by the controller the platform starts
    return request.getfixturevalue("platform")


def test_a_jump_in_load_panics_scales_up_fast_then_calms(short_window_platform, make_function):
    platform = short_window_platform
    project = make_function(
        "surge",
        body="import time; time.sleep(0.2); return {'statusCode': 200, 'body': 'ok'}",
        scale={"min": 1, "max": 8, "concurrency": 1, "idle_timeout": 60},
    )
    assert platform.fx("deploy", cwd=project).returncode == 0
    url = f"{platform.gateway_url}/function/surge"
    wait_for(lambda: decision(platform, "surge") == (0, 1, 1), 20, "one calm replica")

    with SteadyLoad(url, callers=8, max_requests=2000, max_seconds=30) as load:
        wait_for(lambda: decision(platform, "surge")[0] == 1, 10, "panic mode on the jump")
        wait_for(lambda: decision(platform, "surge")[2] >= 6, 15, "replicas for 8 callers")
    assert load.answers and {status for _, _, status, _ in load.answers} == {200}

    # No load: panic ends once the stable window has been calm, and the decision comes back to scale.min.
    wait_for(lambda: decision(platform, "surge")[:2] == (0, 1), 40, "panic mode to end and the scale down")
    shown = described_desired(platform, "surge")
    assert shown == decision(platform, "surge")[1] == 1


def test_describe_shows_the_same_decision_as_metrics_while_busy(platform, make_function):
    project = make_function(
        "busy",
        body="import time; time.sleep(0.2); return {'statusCode': 200, 'body': 'ok'}",
        scale={"max": 4, "concurrency": 1, "target_rps": 50},
    )
    assert platform.fx("deploy", cwd=project).returncode == 0
    url = f"{platform.gateway_url}/function/busy"
    with SteadyLoad(url, callers=3, max_requests=1000, max_seconds=20):
        wait_for(lambda: decision(platform, "busy")[1] >= 3, 15, "a decision for three callers")

        def agree() -> bool:
            before = decision(platform, "busy")[1]
            shown = described_desired(platform, "busy")
            return before == shown == decision(platform, "busy")[1]

        wait_for(agree, 15, "fx describe and /metrics to show one decision")
    out = platform.fx("describe", "busy").stdout
    assert "or 50 req/s per replica" in out


def test_fx_top_once_shows_versions_rates_and_replicas_under_load(platform, make_function):
    project = make_function("topped", body="return {'statusCode': 200, 'body': 'v1'}", scale={"min": 1})
    assert platform.fx("deploy", cwd=project).returncode == 0
    (project / "handler.py").write_text(
        "def handler(event, context):\n    return {'statusCode': 500, 'body': 'v2 fails'}\n"
    )
    assert platform.fx("deploy", "--no-traffic", cwd=project).returncode == 0
    assert platform.fx("traffic", "topped", "1=50", "2=50").returncode == 0
    url = f"{platform.gateway_url}/function/topped"

    with SteadyLoad(url, callers=2, max_requests=5000, max_seconds=30):
        wait_for(lambda: platform.fx("describe", "topped", "-o", "json").returncode == 0, 5, "describe")
        top = platform.fx("top", "--once", "--interval", "2")
    assert top.returncode == 0, top.stderr
    lines = top.stdout.splitlines()
    assert lines[0].split() == ["FUNCTION", "VERSION", "TRAFFIC", "REQ/S", "ERR%", "P99", "REPLICAS", "COLD"]
    rows = {cells[1]: cells for cells in (line.split() for line in lines[1:]) if cells[0] == "topped"}
    assert set(rows) == {"1", "2"}, top.stdout
    for version, cells in rows.items():
        assert cells[2] == "50%"
        assert float(cells[3]) > 0, f"version {version} has no req/s: {top.stdout}"
        ready, desired = map(int, cells[6].split("/"))
        assert ready >= 1 and desired >= 1
    assert float(rows["1"][4]) == 0.0 and float(rows["2"][4]) == 100.0  # version 2 answers 500s
    assert rows["1"][5].endswith(("ms", "s")), "a p99 for the answering gateway"


def test_fx_top_refuses_a_bad_interval_clearly(platform):
    out = platform.fx("top", "--once", "--interval", "0")
    assert out.returncode == 2
    assert "--interval" in out.stderr and "from 0.5 to 3600" in out.stderr
    assert "Traceback" not in out.stderr


class Terminal:
    """`fx top` on a pseudo-terminal of 24 x 120, as a user runs it; what it draws is gathered in `screen`."""

    def __init__(self, platform, *args: str) -> None:
        self._master, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        env = {**os.environ, "FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token, "TERM": "xterm"}
        env["FX_CONFIG"] = str(platform.config)
        self.process = subprocess.Popen([FX, "top", *args], stdin=child, stdout=child, stderr=child, env=env)
        os.close(child)
        self.screen = ""

    def shows(self, text: str) -> bool:
        while select.select([self._master], [], [], 0.1)[0]:
            try:
                self.screen += os.read(self._master, 65536).decode(errors="replace")
            except OSError:  # the program has exited and closed the terminal
                break
        return text in self.screen

    def type(self, keys: bytes) -> None:
        os.write(self._master, keys)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        os.close(self._master)


@pytest.mark.parametrize("quit_by", ["q", "ctrl-c"])
def test_fx_top_live_refreshes_and_quits_cleanly(platform, make_function, quit_by):
    project = make_function("live", body="return {'statusCode': 200, 'body': 'ok'}", scale={"min": 1})
    assert platform.fx("deploy", cwd=project).returncode == 0
    term = Terminal(platform, "--interval", "0.5")
    try:
        wait_for(lambda: term.shows("(q quits)") and term.shows("FUNCTION"), 15, "the header and the table")
        wait_for(lambda: term.shows("live"), 10, "the function's row")
        if quit_by == "q":
            term.type(b"q")
        else:
            term.process.send_signal(signal.SIGINT)  # what the terminal sends the foreground program on Ctrl-C
        assert term.process.wait(10) == 0
        term.shows("")
        assert "Traceback" not in term.screen
    finally:
        term.close()
