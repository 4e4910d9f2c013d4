"""The embedded mode heals itself: `fx up`'s supervisor restarts a component killed with SIGKILL, warm replicas
keep answering while the controller is down and the restarted one adopts them, nothing accepted is lost, and
killing `fx up` itself leaves no fx process behind. Bounded in time and count; the figures are printed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fx.platform import _http_ok, _tcp_open
from fx_controller.backends.local_sandbox import run_dir

from tests.integration.conftest import FX, RunningPlatform
from tests.processes import alive, descendants
from tests.waiting import wait_for

SINK = """\
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        out.write(f"{event['n']}\\n")
    return {"ok": event["n"]}
"""

LOOP_LIMIT_S = 90.0  # no loop runs longer, whatever happens


class Background:
    """A loop of calls in a thread of its own, started at once, never running past LOOP_LIMIT_S."""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            self.loop(client, time.monotonic() + LOOP_LIMIT_S)

    def loop(self, client: httpx.Client, deadline: float) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(LOOP_LIMIT_S + 10)


@dataclass
class SyncLoop(Background):
    """Sync calls to a warm function, one after the other, until stopped: what every call got, and when."""

    url: str
    answers: list[tuple[float, int | str]] = field(default_factory=list)  # (time, status or error name)

    def loop(self, client: httpx.Client, deadline: float) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                answer: int | str = client.get(self.url).status_code
            except httpx.HTTPError as exc:
                answer = type(exc).__name__
                time.sleep(0.02)
            self.answers.append((time.monotonic(), answer))

    def failures(self) -> list[int | str]:
        return [a for _, a in self.answers if a != 200]


@dataclass
class AsyncSender(Background):
    """Async calls (n = first, first + 1, ...), paced, retried while the gateway is unreachable: which were accepted.
    `stop()` waits for the last one."""

    url: str
    first: int
    count: int
    accepted: set[int] = field(default_factory=set)
    unreachable: int = 0

    def loop(self, client: httpx.Client, deadline: float) -> None:
        for n in range(self.first, self.first + self.count):
            while time.monotonic() < deadline:
                try:
                    r = client.post(self.url, json={"n": n}, headers={"X-Amz-Invocation-Type": "Event"})
                except httpx.HTTPError:
                    self.unreachable += 1
                    time.sleep(0.05)
                    continue
                if r.status_code == 202:
                    self.accepted.add(n)
                    break
            time.sleep(0.03)


def deploy(platform: RunningPlatform, folder: Path, source: str, spec: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "handler.py").write_text(source)
    (folder / "fx.yaml").write_text(f"functions:\n  {folder.name}:\n    handler: handler.handler\n{spec}")
    deployed = platform.fx("deploy", cwd=folder)
    assert deployed.returncode == 0, deployed.stderr


def delivered(out: Path) -> set[int]:
    return {int(line) for line in out.read_text().split()} if out.exists() else set()


def warm(platform: RunningPlatform, tmp_path: Path) -> tuple[str, str, Path]:
    """A warm `hello` and a warm async `sink`: their URLs and the sink's output file."""
    out = run_dir(platform.state_dir) / "sink" / "out"
    deploy(platform, tmp_path / "hello", "def handler(event, context):\n    return 'hello'\n", "    scale: {min: 1}\n")
    deploy(platform, tmp_path / "sink", SINK, f"    scale: {{min: 1}}\n    env: {{OUT: {out}}}\n")
    hello = f"{platform.gateway_url}/function/hello"
    wait_for(lambda: httpx.get(hello).status_code == 200, 30, "hello to answer")
    wait_for(lambda: platform.replica_pids("sink"), 30, "sink to be warm")
    return hello, f"{platform.gateway_url}/2015-03-31/functions/sink/invocations", out


def kill(platform: RunningPlatform, name: str) -> float:
    """SIGKILL the component `name`; returns how long the supervisor took to have it serving again."""
    launcher = platform._platform
    restarts = launcher.restart_count(name)
    killed_at = time.monotonic()
    os.kill(launcher.pid(name), signal.SIGKILL)
    wait_for(lambda: launcher.restart_count(name) > restarts, 15, f"the {name} to be restarted")
    ready = {
        "controller": lambda: _http_ok(f"{platform.controller_url}/system/health"),
        "gateway": lambda: _http_ok(f"{platform.gateway_url}/healthz"),
        "nats": lambda: _tcp_open(int(platform.nats_url.rpartition(":")[2])),
    }[name]
    wait_for(ready, 30, f"the restarted {name} to be ready", interval=0.02)
    return time.monotonic() - killed_at


def test_warm_replicas_serve_through_a_controller_kill_and_are_adopted_then_a_gateway_kill_loses_nothing(
    supervised_platform, tmp_path
):
    platform = supervised_platform
    hello, invoke, out = warm(platform, tmp_path)
    pids = {f: platform.replica_pids(f) for f in ("hello", "sink")}

    # --- the controller -------------------------------------------------------------------------------
    calls, sender = SyncLoop(hello), AsyncSender(invoke, 0, 60)
    wait_for(lambda: len(calls.answers) >= 20 and sender.accepted, 30, "the loops to run")
    controller_back = kill(platform, "controller")
    wait_for(lambda: "adopted" in (platform.state_dir / "logs/platform/controller.log").read_text(), 30, "adoption")
    after = len(calls.answers)
    wait_for(lambda: len(calls.answers) >= after + 20, 30, "calls after the restart")
    sender.stop()
    calls.stop()
    assert platform.restarts == ["controller exited (signal 9); restarted in 0.5 s (restart 1)"]
    assert calls.failures() == [], f"sync calls failed while the controller was down: {calls.failures()}"
    assert {f: platform.replica_pids(f) for f in ("hello", "sink")} == pids  # adopted, not started anew
    wait_for(lambda: sender.accepted <= delivered(out), 60, "every accepted async call to run")
    deploy(platform, tmp_path / "later", "def handler(event, context):\n    return 'later'\n", "")
    assert httpx.get(f"{platform.gateway_url}/function/later", timeout=30).text == "later"
    print(
        f"\ncontroller: serving again {controller_back:.2f} s after kill -9; {len(calls.answers)} sync calls, none"
        f" failed; {len(sender.accepted)} async calls accepted and delivered; replica pids unchanged {pids}"
    )

    # --- the gateway ------------------------------------------------------------------------------------
    calls, sender = SyncLoop(hello), AsyncSender(invoke, 1000, 60)
    wait_for(lambda: len(calls.answers) >= 20 and len(sender.accepted) >= 5, 30, "the loops to run")
    gateway_back = kill(platform, "gateway")
    after = len(calls.answers)
    wait_for(lambda: len(calls.answers) >= after + 20, 30, "calls after the restart")
    sender.stop()
    calls.stop()
    failed = [(at, a) for at, a in calls.answers if a != 200]
    assert all(isinstance(a, str) for _, a in failed), f"a call got an answer other than 200: {failed}"
    window = failed[-1][0] - failed[0][0] if failed else 0.0
    assert sender.accepted == set(range(1000, 1060))
    wait_for(lambda: sender.accepted <= delivered(out), 60, "every accepted async call to run")
    assert platform.restarts[-1] == "gateway exited (signal 9); restarted in 0.5 s (restart 1)"
    print(
        f"gateway: serving again {gateway_back:.2f} s after kill -9; {len(failed)} of {len(calls.answers)} sync"
        f" calls refused ({sorted({a for _, a in failed})}) over {window:.2f} s; {sender.unreachable} async sends"
        f" retried; {len(sender.accepted)} accepted, all delivered"
    )


def test_a_killed_nats_server_is_restarted(supervised_platform):
    took = kill(supervised_platform, "nats")
    assert supervised_platform.restarts == ["nats exited (signal 9); restarted in 0.5 s (restart 1)"]
    print(f"\nnats-server: accepting connections {took:.2f} s after kill -9")


def test_kill_9_of_fx_up_leaves_no_fx_process_behind(tmp_path):
    state, config = tmp_path / "state", tmp_path / "fx-config.json"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FX_CONFIG": str(config)}
    up = subprocess.Popen(
        [FX, "up", "--state-dir", str(state), "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        gateway = f"http://127.0.0.1:{port}"
        wait_for(lambda: _http_ok(f"{gateway}/healthz") and (state / "admin-token").exists(), 60, "fx up to serve")
        fx_env = {**env, "FX_GATEWAY": gateway, "FX_TOKEN": (state / "admin-token").read_text().strip()}
        folder = tmp_path / "hello"
        folder.mkdir()
        (folder / "handler.py").write_text("def handler(event, context):\n    return 'hello'\n")
        (folder / "fx.yaml").write_text("functions:\n  hello:\n    handler: handler.handler\n    scale: {min: 1}\n")
        deployed = subprocess.run([FX, "deploy"], cwd=folder, env=fx_env, capture_output=True, text=True, timeout=120)
        assert deployed.returncode == 0, deployed.stderr
        wait_for(lambda: httpx.get(f"{gateway}/function/hello").status_code == 200, 30, "hello to answer")
        # The controller dies first: its zygote, no longer its child, is adopted by the next one.
        [controller] = controllers(up.pid)
        os.kill(controller, signal.SIGKILL)
        wait_for(lambda: controllers(up.pid) not in ([], [controller]), 10, "a new controller")
        wait_for(lambda: zygotes(state), 10, "the zygote to outlive the controller")
        wait_for(lambda: httpx.get(f"{gateway}/function/hello").status_code == 200, 30, "hello to answer")
        everything = descendants(up.pid) | zygotes(state)
        assert len(everything) >= 5  # nats-server, controller, gateway, a zygote, a replica
    finally:
        up.kill()
        up.wait()
    wait_for(lambda: not [p for p in everything if alive(p)], 30, "every fx process to end")
    assert up.stderr is not None
    assert "fx: controller exited (signal 9); restarted in 0.5 s (restart 1)" in up.stderr.read().decode()


def zygotes(state: Path) -> set[int]:
    """The zygotes of this state dir (and their replicas), wherever they are in the process tree."""
    control = str(run_dir(state)).encode()
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    found = set()
    for pid in pids:
        if pid != os.getpid() and control in _cmdline(pid) and alive(pid):
            found |= {pid} | descendants(pid)
    return found


def controllers(up: int) -> list[int]:
    return [p for p in descendants(up) if b"fx-controller" in _cmdline(p)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it ended meanwhile
        return b""
