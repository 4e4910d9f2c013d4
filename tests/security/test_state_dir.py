"""One platform per state dir: a second `fx up` or controller is refused naming the holder's PID, and what
the first acknowledged survives; a read-only state dir is one clear line and exit 2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fx.platform import Platform
from fx.state_dir import StateDirError

from tests.loopback import free_port
from tests.processes import alive, descendants
from tests.waiting import wait_for

FX = str(Path(sys.executable).with_name("fx"))
CONTROLLER = str(Path(sys.executable).with_name("fx-controller"))


class FxUp:
    """`fx up` as a user runs it, in the background."""

    def __init__(self, state: Path, config: Path, out: Path) -> None:
        self.state, self.out, self.port = state, out, free_port()
        self.spawned: set[int] = set()
        self.env = {**os.environ, "FX_CONFIG": str(config)}
        args = [FX, "up", "--state-dir", str(state), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=out.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_up(self) -> None:
        wait_for(lambda: "fx is up" in self.out.read_text() or self.proc.poll() is not None, 90, "fx up")
        assert self.proc.poll() is None, self.out.read_text()
        self.spawned = descendants(self.proc.pid)

    def fx(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = {**self.env, "FX_GATEWAY": self.url, "FX_TOKEN": (self.state / "admin-token").read_text().strip()}
        return subprocess.run([FX, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.spawned:  # what a launcher killed outright may leave behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def ups() -> Iterator[list[FxUp]]:
    started: list[FxUp] = []
    yield started
    for up in reversed(started):
        up.stop()


def _holders(path: Path) -> set[int]:
    """PIDs of the processes that have `path` open."""
    pids = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                pids.add(int(fd_dir.parent.name))
        except OSError:
            continue
    return pids


def test_a_second_fx_up_is_refused_naming_the_first_and_its_deploy_survives_a_restart(tmp_path, make_function, ups):
    state, config = tmp_path / "state", tmp_path / "config.json"
    first = FxUp(state, config, tmp_path / "first.log")
    ups.append(first)
    first.wait_up()
    project = make_function("kept", body="return {'statusCode': 200, 'body': 'kept'}")
    deployed = first.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr

    second = FxUp(state, config, tmp_path / "second.log")
    ups.append(second)
    assert second.proc.wait(60) == 2
    told = second.out.read_text()
    assert f"PID {first.proc.pid}" in told and str(state) in told and "Traceback" not in told
    assert [line for line in told.splitlines() if line.startswith("fx:")] == [told.splitlines()[-1]]

    # The first runs on, untouched.
    assert first.proc.poll() is None
    assert httpx.get(f"{first.url}/function/kept", timeout=30).text == "kept"

    # Killed outright, the launcher's lock lives on in its nats-server and controller until they have
    # stopped (they die with it); then the dir is free again, with no stale lock, and the deploy is there.
    first.proc.kill()
    first.proc.wait()
    wait_for(lambda: not _holders(state / "lock"), 30, "the processes of the killed fx up to let the lock go")
    third = FxUp(state, config, tmp_path / "third.log")
    ups.append(third)
    third.wait_up()
    assert "kept" in third.fx("ls").stdout
    assert httpx.get(f"{third.url}/function/kept", timeout=30).text == "kept"


def test_a_second_controller_or_platform_is_refused_and_no_replica_holds_the_lock(platform, make_function):
    lock = platform.state_dir / "lock"
    second = subprocess.run(
        [CONTROLLER, "--state-dir", str(platform.state_dir), "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert f"PID {os.getpid()} (fx up)" in second.stderr and "Traceback" not in second.stderr
    with pytest.raises(StateDirError, match=f"in use by PID {os.getpid()}"):
        Platform(platform.state_dir, ports="free").start()

    project = make_function("holder", body="return {'statusCode': 200, 'body': 'ok'}")
    assert platform.fx("deploy", cwd=project).returncode == 0
    assert httpx.get(f"{platform.gateway_url}/function/holder", timeout=30).text == "ok"
    replicas = platform.replica_pids("holder")
    assert replicas
    holders = _holders(lock)
    assert not holders & set(replicas), "a function's replica holds the state dir's lock file open"
    # The test process (the launcher), its nats-server and its controller: nothing else.
    assert len(holders) == 3 and os.getpid() in holders


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A state dir that has been used, then bind-mounted read-only onto itself."""
    state = tmp_path / "ro-state"
    (state / "logs" / "platform").mkdir(parents=True)
    (state / "admin-token").write_text("t" * 43 + "\n")
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(state)], check=True)
        yield state
    finally:
        subprocess.run(["umount", str(state)], check=True)


def test_a_read_only_state_dir_is_one_clear_line_and_exit_2(read_only, tmp_path):
    env = {**os.environ, "FX_CONFIG": str(tmp_path / "config.json")}
    result = subprocess.run(
        [FX, "up", "--state-dir", str(read_only), "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("fx:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "read-only" in errors[0] and str(read_only) in errors[0] and "--state-dir" in errors[0]

    controller = subprocess.run(
        [CONTROLLER, "--state-dir", str(read_only), "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert controller.returncode == 2 and "read-only" in controller.stderr
    assert "Traceback" not in controller.stderr


def readable_by_nobody(files: list[Path], folders: list[Path]) -> list[str]:
    """Which of `files` (opened) and `folders` (listed) uid 65534 can read: a forked child drops to it (no
    interpreter to exec as that user: this one's is under root's home)."""
    out, into = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(out)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            found = []
            for path in [*files, *folders]:
                try:
                    os.listdir(path) if path in folders else path.open("rb").close()
                    found.append(str(path))
                except OSError:
                    pass
            os.write(into, json.dumps(found).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(into)
    with os.fdopen(out, "rb") as said:
        found = json.loads(said.read() or b"null")
    assert os.waitpid(pid, 0)[1] == 0
    return found


def test_another_local_user_reads_no_function_code_logs_or_artifacts(ups, make_function):
    """Where `make up` puts the state dir (`.fx` in a checkout whose folders anyone may enter), another user of
    the host reads nothing of it: not a function's log (what its handler printed), nor its code, nor the
    platform's logs (docs/security.md: other local processes get nothing of the state dir)."""
    checkout = Path(tempfile.mkdtemp(prefix="fx-checkout-"))
    try:
        os.chmod(checkout, 0o755)  # as a clone in a home or /srv usually is
        up = FxUp(checkout / ".fx", checkout / "config.json", checkout / "up.log")
        ups.append(up)
        up.wait_up()
        project = make_function("diary", body="print('the patient in room 12'); return {'statusCode': 200}")
        assert up.fx("deploy", cwd=project).returncode == 0
        assert httpx.get(f"{up.url}/function/diary", timeout=30).status_code == 200
        wait_for(lambda: "room 12" in (checkout / ".fx/logs/diary.log").read_text(), 10, "the handler's line logged")
        state = checkout / ".fx"
        files = [state / "logs/diary.log", state / "logs/platform/controller.log"]
        files += [*state.glob("code/*/handler.py"), *state.glob("artifacts/*.zip")]
        assert len(files) == 4, files
        assert readable_by_nobody(files, [state / "logs", state / "code", state / "artifacts"]) == []
    finally:
        shutil.rmtree(checkout, ignore_errors=True)
