"""The zygote protocol: spawn -> spawned -> ready / init_error -> exit, over JSON lines."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fx_runtime.sandbox import cgroups as sandbox_cgroups

from .conftest import write_code


class Zygote:
    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fx_runtime.zygote"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd
        )

    def send(self, command: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()

    def event(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "zygote closed its stdout"
        return json.loads(line)


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    z = Zygote(tmp_path)
    yield z
    if z.proc.poll() is None:
        z.proc.kill()
        z.proc.wait(5)


def env_for(code: Path, handler: str = "handler.handler") -> dict:
    return {
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(code),
        "FX_LISTEN": "127.0.0.1:0",
        "AWS_LAMBDA_FUNCTION_NAME": "z",
    }


def test_spawn_ready_answer_sigterm_exit(zygote: Zygote, tmp_path: Path):
    code = write_code(tmp_path / "code", {"handler.py": "import os\ndef handler(e, c):\n    return dict(os.environ)\n"})
    log = tmp_path / "logs" / "z.log"
    log.parent.mkdir()
    zygote.send({"op": "spawn", "id": "r-1", "env": {**env_for(code), "MY_SETTING": "on"}, "log": str(log)})
    spawned = zygote.event()
    assert spawned["id"] == "r-1" and spawned["event"] == "spawned"
    pid = spawned["pid"]
    ready = zygote.event()
    assert ready["id"] == "r-1" and ready["event"] == "ready" and ready["init_ms"] > 0
    assert ready["endpoint"].startswith("127.0.0.1:")
    # The replica's stdout and stderr are the log file itself: that is how the platform finds replicas.
    assert os.readlink(f"/proc/{pid}/fd/1") == os.readlink(f"/proc/{pid}/fd/2") == str(log)
    env = httpx.post(f"http://{ready['endpoint']}/_fx/invoke", content=b"{}").json()
    assert env["MY_SETTING"] == "on" and "PYTHONPATH" not in env  # exactly the given environment (+ Lambda's)
    os.kill(pid, signal.SIGTERM)
    assert zygote.event() == {"id": "r-1", "event": "exit", "pid": pid, "code": 0}
    assert "START RequestId:" in log.read_text()


def test_an_exit_is_told_at_once_when_its_report_pipe_number_went_to_a_replica_still_starting(
    zygote: Zygote, tmp_path: Path
):
    """A replica closes its report pipe once ready, and the zygote its end: the next spawn's pipe gets that fd
    number. The first replica's exit must not be read from the second's pipe (a loop on a pipe that has nothing
    to say until that replica is ready: the zygote spun and said nothing)."""
    quick = write_code(tmp_path / "quick", {"handler.py": "def handler(e, c):\n    return {}\n"})
    slow = write_code(
        tmp_path / "slow", {"handler.py": "import time\ntime.sleep(3)\ndef handler(e, c):\n    return {}\n"}
    )
    log = str(tmp_path / "z.log")
    zygote.send({"op": "spawn", "id": "quick", "env": env_for(quick), "log": log})
    pid = zygote.event()["pid"]
    assert zygote.event()["event"] == "ready"
    zygote.send({"op": "spawn", "id": "slow", "env": env_for(slow), "log": log})
    assert zygote.event()["event"] == "spawned"
    os.kill(pid, signal.SIGTERM)
    assert zygote.event() == {"id": "quick", "event": "exit", "pid": pid, "code": 0}  # before "slow" is ready
    ready = zygote.event()
    assert (ready["id"], ready["event"]) == ("slow", "ready")


def test_init_error_then_exit(zygote: Zygote, tmp_path: Path):
    code = write_code(tmp_path / "code", {"handler.py": "import module_that_does_not_exist\n"})
    zygote.send({"op": "spawn", "id": "bad", "env": env_for(code), "log": str(tmp_path / "bad.log")})
    pid = zygote.event()["pid"]
    assert zygote.event() == {
        "id": "bad",
        "event": "init_error",
        "errorType": "Runtime.ImportModuleError",
        "errorMessage": "Unable to import module 'handler': No module named 'module_that_does_not_exist'",
        "stackTrace": [],  # Lambda gives an import error none
    }
    assert zygote.event() == {"id": "bad", "event": "exit", "pid": pid, "code": 1}
    assert "[ERROR] Runtime.ImportModuleError" in (tmp_path / "bad.log").read_text()


def test_replica_that_is_killed_reports_exit_and_zygote_ends_with_stdin(zygote: Zygote, tmp_path: Path):
    code = write_code(tmp_path / "code", {"handler.py": "def handler(e, c):\n    return 1\n"})
    for name in ("a", "b"):
        zygote.send({"op": "spawn", "id": name, "env": env_for(code), "log": str(tmp_path / "x.log")})
        assert zygote.event()["event"] == "spawned"
        assert zygote.event()["event"] == "ready"
    zygote.send({"op": "spawn", "id": "c", "env": "not a dict", "log": "x"})  # ignored, logged on stderr
    assert zygote.proc.stdin is not None
    zygote.proc.stdin.close()  # the controller went away: replicas are stopped, then the zygote exits
    exits = {zygote.event()["id"], zygote.event()["id"]}
    assert exits == {"a", "b"}
    assert zygote.proc.wait(10) == 0


def test_replica_sees_no_fx_plumbing_but_its_granted_nats_variables(zygote: Zygote, tmp_path: Path):
    code = write_code(tmp_path / "code", {"handler.py": "import os\ndef handler(e, c):\n    return dict(os.environ)\n"})
    env = {**env_for(code), "FX_TIMEOUT_MS": "3000", "FX_NATS_URL": "nats://127.0.0.1:1", "FX_NATS_CREDS": "/x"}
    zygote.send({"op": "spawn", "id": "r", "env": env, "log": str(tmp_path / "r.log")})
    assert zygote.event()["event"] == "spawned"
    ready = zygote.event()
    seen = httpx.post(f"http://{ready['endpoint']}/_fx/invoke", content=b"{}").json()
    assert sorted(name for name in seen if name.startswith("FX_")) == ["FX_NATS_CREDS", "FX_NATS_URL"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")
def test_a_sandboxed_replica_runs_confined_and_fails_its_init_when_out_of_memory(tmp_path: Path):
    code = write_code(
        tmp_path / "code",
        {
            "handler.py": "import os\nif os.environ.get('HOG'):\n    hoard = bytearray(300 << 20)\n"
            "def handler(e, c):\n    return {'uid': os.getuid(), 'root': sorted(os.listdir('/')), 'cwd': os.getcwd()}\n"
        },
    )
    private = tmp_path / "run" / "fn"
    private.mkdir(parents=True)
    os.chown(private, 100123, 100123)
    config = {"run_dir": str(tmp_path / "run"), "cgroup_parent": f"fx-test-{os.getpid()}", "hidden": [str(tmp_path)]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fx_runtime.zygote", "--sandbox"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=tmp_path,
    )
    z = Zygote.__new__(Zygote)
    z.proc = proc
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(config).encode() + b"\n")
        proc.stdin.flush()
        report = z.event()
        assert report["event"] == "sandbox" and report["namespaces"] and report["limits"] == {"memory": 1, "pids": 1}
        sandbox = {"uid": 100123, "gid": 100123, "private_dir": str(private), "memory_mb": 128}
        z.send({"op": "spawn", "id": "ok", "env": env_for(code), "log": str(tmp_path / "ok.log"), "sandbox": sandbox})
        pid = z.event()["pid"]
        ready = z.event()
        assert ready["event"] == "ready", (tmp_path / "ok.log").read_text()
        answer = httpx.post(f"http://{ready['endpoint']}/_fx/invoke", content=b"{}").json()
        # its code (a host path under the hidden tmp_path) is at /var/task; nothing else of tmp_path exists
        assert answer["uid"] == 100123 and answer["cwd"] == "/var/task"
        assert "tmp" in answer["root"] and "pytest-of-root" not in str(answer)
        os.kill(pid, signal.SIGTERM)
        assert z.event() == {"id": "ok", "event": "exit", "pid": pid, "code": 0}

        env = {**env_for(code), "HOG": "1"}
        z.send({"op": "spawn", "id": "hog", "env": env, "log": str(tmp_path / "hog.log"), "sandbox": sandbox})
        pid = z.event()["pid"]
        failed = z.event()
        assert (failed["event"], failed["errorType"]) == ("init_error", "Runtime.OutOfMemory")
        assert z.event() == {"id": "hog", "event": "exit", "pid": pid, "code": -signal.SIGKILL}
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(10) == 0
        assert not sandbox_cgroups.detect(config["cgroup_parent"], create=False)  # no cgroup left behind
    finally:
        proc.kill()
        proc.wait(5)
