"""Templates: a process that ran a function's init once and forks its replicas (zygote.py, template.py), with
SnapStart's runtime hooks (snapstart.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_for

from .conftest import write_code
from .test_zygote import Zygote, env_for

HOOKED = """\
import os, random, uuid
from snapshot_restore_py import register_after_restore, register_before_snapshot

INIT_PID = os.getpid()
MARKS = os.environ["MARKS"]

def mark(what):
    with open(MARKS, "a") as f:
        f.write(f"{what} {os.getpid()}\\n")

@register_before_snapshot
def first():
    mark("before-first")

register_before_snapshot(mark, "before-second")  # registered last: runs first, as on Lambda
register_after_restore(mark, "after")

def handler(event, context):
    mark("handler")
    return {"pid": os.getpid(), "init_pid": INIT_PID, "random": random.random(), "uuid": str(uuid.uuid4()),
            "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"""


def start(templates: int | None = None, cwd: Path | None = None) -> Zygote:
    z = Zygote.__new__(Zygote)
    extra = [] if templates is None else ["--templates", str(templates)]
    z.proc = subprocess.Popen(
        [sys.executable, "-m", "fx_runtime.zygote", *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd
    )
    return z


@pytest.fixture
def zygotes() -> Iterator[list[Zygote]]:
    started: list[Zygote] = []
    yield started
    for z in started:
        if z.proc.poll() is None:
            z.proc.kill()
            z.proc.wait(5)


def invoke(ready: dict) -> dict:
    return httpx.post(f"http://{ready['endpoint']}/_fx/invoke", content=b"{}").json()


def spawn(z: Zygote, replica_id: str, env: dict, log: Path, key: str | None) -> tuple[int, dict]:
    command = {"op": "spawn", "id": replica_id, "env": env, "log": str(log)}
    if key is not None:
        command["template"] = {"key": key, "listen": env["FX_LISTEN"]}
    z.send(command)
    spawned = z.event()
    assert (spawned["id"], spawned["event"]) == (replica_id, "spawned")
    ready = z.event()
    assert ready["id"] == replica_id and ready["event"] == "ready", log.read_text()
    return spawned["pid"], ready


def template(z: Zygote, key: str, env: dict, log: Path) -> dict:
    z.send({"op": "template", "key": key, "env": env, "log": str(log)})
    event = z.event()
    assert event["event"] == "template" and event["key"] == key, event
    return event


@pytest.fixture
def hooked(tmp_path: Path) -> tuple[dict, Path, Path]:
    code = write_code(tmp_path / "code", {"handler.py": HOOKED})
    marks = tmp_path / "marks"
    return {**env_for(code), "MARKS": str(marks)}, marks, tmp_path / "f.log"


def test_replicas_forked_from_the_template_run_its_init_once_and_differ(zygotes, hooked):
    env, marks, log = hooked
    z = start()
    zygotes.append(z)
    ready = template(z, "f@1", env, log)
    assert ready["state"] == "ready" and ready["pss_kb"] > 0
    # the before-snapshot hooks: once, in the template, last registered first (its spare's after-restore may follow)
    befores = [line for line in marks.read_text().splitlines() if line.startswith("before")]
    assert befores == [f"before-second {ready['pid']}", f"before-first {ready['pid']}"]

    pids, answers = [], []
    for name in ("a", "b"):
        pid, up = spawn(z, name, env, log, "f@1")
        pids.append(pid)
        answers.append(invoke(up))
    # each its own process, whose init is the template's: run once, before the first fork
    assert [a["pid"] for a in answers] == pids and {a["init_pid"] for a in answers} == {ready["pid"]}
    assert answers[0]["random"] != answers[1]["random"] and answers[0]["uuid"] != answers[1]["uuid"]
    assert {a["init_type"] for a in answers} == {"snap-start"}
    # only replicas write the log (the template keeps it aside): the processes holding it as stdout are the replicas
    holders = [p for p in (ready["pid"], *pids) if os.readlink(f"/proc/{p}/fd/1") == str(log)]
    assert holders == pids
    # after-restore: once in every process forked from the template (a spare runs them before it is needed)
    afters = [line for line in marks.read_text().splitlines()[2:] if line.startswith("after")]
    assert {f"after {pid}" for pid in pids} <= set(afters) and len(afters) == len(set(afters))
    assert f"after {ready['pid']}" not in afters
    # Lambda's lines: one INIT_START (the template's init), then each replica's START, END and REPORT
    text = wait_for(lambda: (t := log.read_text()).count("REPORT") == 2 and t, 5, "both REPORT lines")
    assert text.count("INIT_START") == 1 and text.count("START RequestId") == 2 and text.count("Init Duration") == 2

    os.kill(pids[0], signal.SIGTERM)
    assert z.event() == {"id": "a", "event": "exit", "pid": pids[0], "code": 0}


def test_a_spawn_for_another_key_or_log_never_gets_the_template(zygotes, hooked, tmp_path):
    env, _, log = hooked
    z = start()
    zygotes.append(z)
    ready = template(z, "a@1", env, log)
    other_code = write_code(tmp_path / "b", {"handler.py": "import os\ndef handler(e, c):\n    return os.getpid()\n"})
    pid, up = spawn(z, "b-1", env_for(other_code), tmp_path / "b.log", "b@1")  # no template of b: started anew
    assert invoke(up) == pid
    _, up = spawn(z, "x-1", env, tmp_path / "x.log", "a@1")  # a's key, another function's log: not a's template
    assert invoke(up)["init_pid"] != ready["pid"]


def test_the_least_recently_used_template_retires_and_goes_with_its_last_replica(zygotes, hooked, tmp_path):
    env, _, log = hooked
    z = start(templates=1)
    zygotes.append(z)
    first = template(z, "f@1", env, log)
    pid, _ = spawn(z, "r", env, log, "f@1")
    second = template(z, "f@2", env, tmp_path / "f2.log")  # f@1 retires, but its replica still serves
    assert second["state"] == "ready"
    os.kill(first["pid"], 0)
    os.kill(pid, signal.SIGTERM)
    assert z.event() == {"id": "r", "event": "exit", "pid": pid, "code": 0}
    gone = z.event()
    assert (gone["event"], gone["key"], gone["state"]) == ("template", "f@1", "gone")
    _, up = spawn(z, "s", env, log, "f@1")
    assert invoke(up)["init_pid"] != first["pid"]


def test_a_template_whose_init_fails_is_reported_and_spawns_start_as_before(zygotes, tmp_path):
    code = write_code(tmp_path / "code", {"handler.py": "raise RuntimeError('no model')\n"})
    z = start()
    zygotes.append(z)
    failed = template(z, "f@1", env_for(code), tmp_path / "f.log")
    assert (failed["state"], failed["errorType"], failed["errorMessage"]) == ("failed", "RuntimeError", "no model")
    z.send(
        {
            "op": "spawn",
            "id": "r",
            "env": env_for(code),
            "log": str(tmp_path / "f.log"),
            "template": {"key": "f@1", "listen": "127.0.0.1:0"},
        }
    )
    assert z.event()["event"] == "spawned"
    assert z.event()["errorType"] == "RuntimeError"


def test_a_failing_after_restore_hook_fails_that_replica_init(zygotes, tmp_path):
    code = write_code(
        tmp_path / "code",
        {
            "handler.py": "import snapshot_restore_py\n"
            "def reconnect():\n    raise ConnectionError('db down')\n"
            "snapshot_restore_py.register_after_restore(reconnect)\n"
            "def handler(e, c):\n    return 1\n"
        },
    )
    z = start()
    zygotes.append(z)
    env, log = env_for(code), tmp_path / "f.log"
    assert template(z, "f@1", env, log)["state"] == "ready"
    z.send({"op": "spawn", "id": "r", "env": env, "log": str(log), "template": {"key": "f@1", "listen": "127.0.0.1:0"}})
    pid = z.event()["pid"]
    failed = z.event()
    assert (failed["event"], failed["errorType"]) == ("init_error", "Runtime.AfterRestoreError")
    assert "db down" in failed["errorMessage"]
    assert z.event() == {"id": "r", "event": "exit", "pid": pid, "code": 1}


@pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root")
def test_a_sandboxed_template_forks_confined_replicas_each_in_its_own_cgroup(zygotes, tmp_path: Path):
    code = write_code(
        tmp_path / "code",
        {
            "handler.py": "import os\n"
            "def handler(e, c):\n"
            "    if e.get('hog'):\n        hoard = bytearray(300 << 20)\n"
            "    cgroup = [line for line in open('/proc/self/cgroup').read().splitlines() if ':memory:' in line]\n"
            "    return {'uid': os.getuid(), 'cwd': os.getcwd(), 'cgroup': cgroup[0], 'tmp': os.listdir('/tmp')}\n"
        },
    )
    run = tmp_path / "run"
    private = run / "fn"
    private.mkdir(parents=True)
    os.chown(private, 100123, 100123)
    config = {"run_dir": str(run), "cgroup_parent": f"fx-test-{os.getpid()}", "hidden": [str(tmp_path)]}
    z = Zygote.__new__(Zygote)
    z.proc = subprocess.Popen(
        [sys.executable, "-m", "fx_runtime.zygote", "--sandbox"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    zygotes.append(z)
    assert z.proc.stdin is not None
    z.proc.stdin.write(json.dumps(config).encode() + b"\n")
    z.proc.stdin.flush()
    assert z.event()["event"] == "sandbox"

    def confined(name: str) -> dict:
        env_file = tmp_path / f"{name}.env"
        env_file.write_text(json.dumps({**env_for(code), "FX_LISTEN": f"unix:{private}/{name}.sock"}))
        return {"uid": 100123, "gid": 100123, "private_dir": str(private), "memory_mb": 128, "env_file": str(env_file)}

    log = tmp_path / "fn.log"
    z.send({"op": "template", "key": "fn@1", "env": {}, "log": str(log), "sandbox": confined("template")})
    ready = z.event()
    assert (ready["event"], ready["state"]) == ("template", "ready"), log.read_text()
    answers, pids, endpoints = [], [], []
    for name in ("r1", "r2"):
        sandbox = confined(name)
        listen = f"unix:{private}/{name}.sock"
        z.send(
            {
                "op": "spawn",
                "id": name,
                "env": {},
                "log": str(log),
                "sandbox": sandbox,
                "template": {"key": "fn@1", "listen": listen},
            }
        )
        pids.append(z.event()["pid"])
        up = z.event()
        # a spare's own socket, made before it was needed, in the function's private directory
        assert up["event"] == "ready" and up["endpoint"].startswith(f"unix:{private}/s-"), log.read_text()
        assert not os.path.exists(sandbox["env_file"])  # the template has the environment: the file is gone
        endpoints.append(up["endpoint"])
        answers.append(call(up["endpoint"], {}).json())
    assert {a["uid"] for a in answers} == {100123} and {a["cwd"] for a in answers} == {"/var/task"}
    assert answers[0]["cgroup"] != answers[1]["cgroup"] and all("/forked-" in a["cgroup"] for a in answers)
    # r2 over its own memory limit is killed (a 300 MB block: no reserve helps); the template and r1 live on
    with pytest.raises(httpx.RemoteProtocolError):
        call(endpoints[1], {"hog": 1})
    assert z.event() == {"id": "r2", "event": "exit", "pid": pids[1], "code": -signal.SIGKILL}
    os.kill(ready["pid"], 0)
    assert call(endpoints[0], {}).json() == answers[0]
    # another function's spawn (its uid, its directory) that names this key never gets this template
    theirs = run / "other"
    theirs.mkdir()
    os.chown(theirs, 100124, 100124)
    other = {**confined("o"), "uid": 100124, "gid": 100124, "private_dir": str(theirs)}
    listen = f"unix:{theirs}/o.sock"
    Path(other["env_file"]).write_text(json.dumps({**env_for(code), "FX_LISTEN": listen}))
    z.send(
        {
            "op": "spawn",
            "id": "o",
            "env": {},
            "log": str(log),
            "sandbox": other,
            "template": {"key": "fn@1", "listen": listen},
        }
    )
    assert z.event()["event"] == "spawned"
    assert z.event()["event"] == "ready", log.read_text()
    assert call(listen, {}).json()["uid"] == 100124


def call(listen: str, event: dict) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=listen.removeprefix("unix:"))
    with httpx.Client(transport=transport, base_url="http://replica") as client:
        return client.post("/_fx/invoke", json=event)


def listening_in(tmp_path: Path, env: dict) -> tuple[dict, Path]:
    """`env` with its replicas on Unix sockets in a directory of their own (as a function's private one is)."""
    run = tmp_path / "run"
    run.mkdir()
    return {**env, "FX_LISTEN": f"unix:{run}/first.sock"}, run


def test_a_spare_listens_before_it_is_needed_and_leaves_no_socket_when_dropped(zygotes, hooked, tmp_path):
    """A spare listens on a socket of its own next to its template's, and has sent itself a request (which runs no
    handler and logs nothing), before a replica is asked for: the replica it becomes names that socket. A spare
    never used takes it away."""
    env, marks, log = hooked
    env, run = listening_in(tmp_path, env)
    z = start()
    zygotes.append(z)
    ready = template(z, "f@1", env, log)
    spare = wait_for(
        lambda: subprocess.run(["pgrep", "-P", str(ready["pid"])], capture_output=True, text=True).stdout.split(),
        5,
        "the template's spare",
    )[0]
    sockets = wait_for(lambda: list(run.glob("s-*.sock")), 5, "the spare's socket")
    # blocked reading its assignment, its warm-up done: a request to itself, which ran no handler and logged nothing
    wait_for(lambda: Path(f"/proc/{spare}/wchan").read_text() != "0" and "S" in _state(spare), 5, "the spare waiting")
    assert "RequestId" not in log.read_text() and "handler" not in marks.read_text()
    pid, up = spawn(z, "a", env, log, "f@1")
    assert pid == int(spare) and up["endpoint"] == f"unix:{sockets[0]}"
    assert call(up["endpoint"], {}).json()["pid"] == pid
    assert wait_for(lambda: log.read_text().count("REPORT"), 5, "its REPORT") == 1
    assert log.read_text().count("START RequestId") == 1 and "Init Duration" in log.read_text()
    assert marks.read_text().count("handler") == 1
    # the next spare, dropped with its template, takes its socket with it; the replica keeps its own
    wait_for(lambda: len(list(run.glob("s-*.sock"))) == 2, 5, "the next spare's socket")
    z.send({"op": "drop", "key": "f@1"})
    wait_for(lambda: list(run.glob("s-*.sock")) == sockets, 5, "the dropped spare's socket gone")
    assert call(up["endpoint"], {}).json()["pid"] == pid


def _state(pid: str) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_caller_connecting_to_a_prepared_spare_claims_it_and_is_served(zygotes, hooked, tmp_path):
    """A template asked with an `id_prefix` tells each prepared spare as a standby; a caller connecting to it first
    makes it a replica (its id made by the zygote, told "ready" with the key it was claimed from) and is served by
    it, Lambda's lines and all; the next spare is the next standby, and a spawn then gets that one."""
    env, marks, log = hooked
    env, run = listening_in(tmp_path, env)
    z = start()
    zygotes.append(z)
    z.send({"op": "template", "key": "f@1:k", "env": env, "log": str(log), "id_prefix": "f-1"})
    assert z.event()["state"] == "ready"
    standby = z.event()
    assert standby["event"] == "standby" and standby["key"] == "f@1:k"
    assert Path(standby["endpoint"].removeprefix("unix:")).parent == run

    answer = call(standby["endpoint"], {}).json()
    spawned, ready = z.event(), z.event()
    assert spawned["event"] == "spawned" and spawned["id"].startswith("f-1-") and spawned["pid"] == answer["pid"]
    assert ready == {
        "id": spawned["id"],
        "event": "ready",
        "endpoint": standby["endpoint"],
        "init_ms": 0.0,
        "claimed": "f@1:k",
    }
    assert marks.read_text().count("handler") == 1 and f"after {answer['pid']}" in marks.read_text()
    text = wait_for(lambda: (t := log.read_text()).count("REPORT") == 1 and t, 5, "its REPORT")
    assert text.count("START RequestId") == 1 and "Init Duration" in text
    assert call(standby["endpoint"], {}).json()["pid"] == answer["pid"]  # a replica now: it keeps serving

    following = z.event()
    assert following["event"] == "standby" and following["endpoint"] != standby["endpoint"]
    pid, up = spawn(z, "b", env, log, "f@1:k")
    assert up["endpoint"] == following["endpoint"] and call(up["endpoint"], {}).json()["pid"] == pid


def test_a_replica_gone_with_its_id_unread_is_reported_gone_and_the_zygote_goes_on(zygotes, hooked):
    """The zygote says a prepared spare ready, handed over, before it writes the spare its id: a caller told at once
    may reach it first (it then serves as if claimed, the id left unread). A replica that ends with its id unread
    resets the zygote's end of its socket: that is its end as any other's (the zygote once died of it). Made sure
    of here by stopping the spare before it is handed over."""
    env, _, log = hooked
    z = start()
    zygotes.append(z)
    z.send({"op": "template", "key": "f@1", "env": env, "log": str(log), "id_prefix": "f-1"})
    ready = z.event()
    assert ready["state"] == "ready" and z.event()["event"] == "standby"
    spare = int(subprocess.run(["pgrep", "-P", str(ready["pid"])], capture_output=True, text=True).stdout.split()[0])
    os.kill(spare, signal.SIGSTOP)
    pid, _ = spawn(z, "a", env, log, "f@1")
    assert pid == spare
    time.sleep(0.1)  # the zygote writes the id right after it says ready: let it, so that the id is left unread
    os.kill(spare, signal.SIGKILL)
    events = [z.event(), z.event()]  # its exit, and the next spare's standby, in either order
    assert {"id": "a", "event": "exit", "pid": spare, "code": -signal.SIGKILL} in events
    assert [e["event"] for e in events].count("standby") == 1
    pid, up = spawn(z, "b", env, log, "f@1")
    assert invoke(up)["pid"] == pid


def test_a_spare_dropped_while_it_prepares_takes_its_socket_away(zygotes, tmp_path):
    """Its template dropped (a deleted version) while its spare ran its after-restore hooks: the spare's "prepared"
    finds nobody to read it, and the spare ends as one never used does, its socket removed (it once died of the
    broken pipe, leaving the socket behind)."""
    slow = "import time\nfrom snapshot_restore_py import register_after_restore\n"
    slow += "register_after_restore(time.sleep, 0.5)\ndef handler(event, context):\n    return 1\n"
    env, run = listening_in(tmp_path, env_for(write_code(tmp_path / "code", {"handler.py": slow})))
    z = start()
    zygotes.append(z)
    template(z, "f@1", env, tmp_path / "f.log")
    wait_for(lambda: list(run.glob("s-*.sock")), 5, "the spare's socket, its hooks running")
    z.send({"op": "drop", "key": "f@1"})
    wait_for(lambda: not list(run.glob("s-*.sock")), 5, "the dropped spare's socket gone")
