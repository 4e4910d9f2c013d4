"""The README's first command, as a user runs it: `fx up` with the examples, then Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.loopback import free_port
from tests.processes import alive, descendants
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
FX = str(Path(sys.executable).with_name("fx"))


def _log(state: Path, name: str) -> str:
    return "\n".join((state / "logs/platform" / f"{name}.log").read_text(errors="replace").splitlines()[-60:])


def _start(state: Path, port: int, config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "FX_CONFIG": str(config)}
    args = [FX, "up", "--state-dir", str(state), "--port", str(port), "--examples", str(REPO / "examples")]
    return subprocess.Popen(args, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_fx_up_serves_the_examples_and_ctrl_c_stops_everything(tmp_path):
    state, config, out = tmp_path / "state", tmp_path / "config.json", tmp_path / "up.log"
    port = free_port()
    up = _start(state, port, config, out)
    try:
        wait_for(lambda: "curl" in out.read_text(), 90, "fx up to print how to call the examples")
        # An event-run function is shown with what its README says to try (its logs), not an HTTP call.
        assert "fx logs welcome-mail" in out.read_text()
        assert "fx invoke welcome-mail" not in out.read_text()
        assert "function sandbox: " in out.read_text()  # which protections are in force, and why not the others
        r = httpx.get(f"http://127.0.0.1:{port}/function/hello/any/path?x=1", timeout=30)
        assert r.status_code == 200 and "hello" in r.text.lower()
        assert config.is_file(), "fx up writes the CLI config so that `fx` finds the platform"
        ls = subprocess.run([FX, "ls"], env={**os.environ, "FX_CONFIG": str(config)}, capture_output=True, text=True)
        assert ls.returncode == 0 and "hello" in ls.stdout and "echo" in ls.stdout

        spawned = descendants(up.pid)
        assert spawned, "fx up runs nats-server, the controller and the gateway as child processes"
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        assert "Traceback" not in out.read_text()
        wait_for(lambda: not any(alive(p) for p in spawned), 10, "every process fx up started to stop")

        # Running it again keeps what was deployed.
        up = _start(state, port, config, tmp_path / "up2.log")
        wait_for(lambda: "curl" in (tmp_path / "up2.log").read_text(), 90, "the second fx up")
        second = (tmp_path / "up2.log").read_text()
        # One per example function: hello, echo, sentiment, and signup's create-user and welcome-mail.
        assert second.count("unchanged") == 5, f"fx up output:\n{second}\ncontroller log:\n{_log(state, 'controller')}"
        assert httpx.get(f"http://127.0.0.1:{port}/function/hello", timeout=30).status_code == 200
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
        time.sleep(0)


def test_a_restart_delay_that_is_not_positive_is_refused_before_anything_starts(tmp_path):
    state = tmp_path / "state"
    up = subprocess.run(
        [FX, "up", "--state-dir", str(state), "--port", str(free_port()), "--restart-delay", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FX_CONFIG": str(tmp_path / "config.json")},
    )
    assert up.returncode == 2 and "--restart-delay must be above 0" in up.stderr
    assert not state.exists()
