"""Each function in its own sandbox (embedded mode, fx as root): the attacks of issue 11 on the file system,
processes, memory and processes count, run by a deployed function against the real platform, now fail."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from fx.state_dir import PROTECTIONS_FILE

from tests.integration.conftest import RunningPlatform

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs fx to run as root")

# Tries everything the attacker did; each attempt's outcome is reported, none raises.
ATTACKER = """\
import json, os, signal


def attempt(action):
    try:
        result = action()
    except Exception as e:
        return f"refused: {type(e).__name__}: {e}"
    return f"DONE: {result!r}"[:200]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path):
    with open(path, "w") as f:
        f.write("def handler(event, context):\\n    return 'pwned'\\n")


def handler(event, context):
    state = os.environ["STATE_DIR"]
    victim_code = event["victim_code"]
    tries = {
        "admin token": lambda: read(os.path.join(state, "admin-token")),
        "cli config": lambda: read(os.environ["CLI_CONFIG"]),
        "uid map": lambda: read(os.path.join(state, "sandbox-uids.json")),
        "controller environ": lambda: read(f"/proc/{event['controller_pid']}/environ"),
        "victim environ": lambda: read(f"/proc/{event['victim_pid']}/environ"),
        "victim code": lambda: read(os.path.join(victim_code, "handler.py")),
        "code store": lambda: os.listdir(os.path.join(state, "code")),
        "write victim code": lambda: write(os.path.join(victim_code, "handler.py")),
        "write own code": lambda: write(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "handler.py")),
        "chmod own code": lambda: os.chmod(os.environ["LAMBDA_TASK_ROOT"], 0o777),
        "kill victim": lambda: os.kill(event["victim_pid"], signal.SIGKILL),
        "home": lambda: os.listdir(os.path.expanduser("~root")) and read("/root/.bash_history"),
    }
    results = {name: attempt(action) for name, action in tries.items()}
    with open("/proc/self/status") as f:
        status = dict(line.split(":\\t", 1) for line in f.read().splitlines() if ":\\t" in line)
    return {
        "results": results,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "cap_eff": status["CapEff"].strip(),
        "cap_bnd": status["CapBnd"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "env": sorted(os.environ),
        "path": os.environ["PATH"],
    }
"""

VICTIM = "return {'uid': __import__('os').getuid(), 'says': 'victim'}"


def controller_pid(state_dir: Path) -> int:
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        controller = any(b"fx-controller" in part or b"fx_controller" in part for part in cmdline[:2])
        if controller and str(state_dir).encode() in cmdline:
            return int(entry.name)
    raise AssertionError("no controller process found")


def invoke(platform: RunningPlatform, function: str, event: dict) -> httpx.Response:
    return httpx.post(f"{platform.gateway_url}/2015-03-31/functions/{function}/invocations", json=event, timeout=60)


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """A home of our own for the platform, with a CLI config holding another instance's token."""
    home = tmp_path / "home"
    config = home / ".config" / "fx" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"gateway": "http://127.0.0.1:1", "token": "another-instances-token"}))
    monkeypatch.setenv("HOME", str(home))
    return config


def sandboxed(platform: RunningPlatform) -> bool:
    """Is the sandbox in force? Checked before any attacker code runs: unconfined, it would hit this host."""
    return (platform.state_dir / PROTECTIONS_FILE).read_text().startswith("function sandbox: ON")


def test_a_function_cannot_reach_the_platform_nor_other_functions(home: Path, platform, make_function):
    assert sandboxed(platform), (platform.state_dir / PROTECTIONS_FILE).read_text()
    victim = make_function("victim", body=VICTIM)
    attacker = make_function("attacker", body="pass")
    (attacker / "handler.py").write_text(ATTACKER)
    spec = {"handler": "handler.handler", "env": {"STATE_DIR": str(platform.state_dir), "CLI_CONFIG": str(home)}}
    (attacker / "fx.yaml").write_text(json.dumps({"functions": {"attacker": spec}}))
    for project in (victim, attacker):
        deployed = platform.fx("deploy", cwd=project)
        assert deployed.returncode == 0, deployed.stderr

    before = invoke(platform, "victim", {})
    assert before.status_code == 200 and before.json()["says"] == "victim"
    victim_pid = platform.replica_pids("victim")[0]
    victim_code = next((platform.state_dir / "code").iterdir())  # the attacker's is extracted on its first call
    event = {
        "victim_code": str(victim_code),
        "victim_pid": victim_pid,
        "controller_pid": controller_pid(platform.state_dir),
    }
    attack = invoke(platform, "attacker", event)
    assert attack.status_code == 200 and "X-Amz-Function-Error" not in attack.headers, attack.text
    report = attack.json()

    for name, outcome in report["results"].items():
        assert outcome.startswith("refused:"), f"{name}: {outcome}"
    assert report["uid"] >= 100000 and report["gid"] == report["uid"] and report["groups"] == []
    assert report["cap_eff"] == report["cap_bnd"] == "0000000000000000" and report["no_new_privs"] == "1"
    assert report["processes"] == [1]  # alone in its PID namespace
    assert not [name for name in report["env"] if name.startswith("FX_") or name == "HOME"]
    assert report["path"] == f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"

    after = invoke(platform, "victim", {})
    assert after.status_code == 200 and after.json() == before.json()  # same replica, same code
    assert platform.replica_pids("victim") == [victim_pid]
    assert report["uid"] != after.json()["uid"]  # one uid per function

    # The code store is root's and read-only, whoever looks.
    for code in (platform.state_dir / "code").iterdir():
        for path in [code, *code.rglob("*")]:
            st = path.stat()
            assert st.st_uid == 0 and not st.st_mode & 0o7222, path


def zip_with(name: str, mode: int, data: bytes = b"") -> tuple[bytes, str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return 1\n")
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        zf.writestr(info, data)
    return buf.getvalue(), "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.mark.parametrize(
    ("name", "mode", "data", "says"),
    [
        ("evil", stat.S_IFLNK | 0o777, b"../../admin-token", "outside the code directory"),
        ("evil", stat.S_IFLNK | 0o777, b"/etc/shadow", "outside the code directory"),
        ("evil", stat.S_IFIFO | 0o644, b"", "is a fifo"),
        ("evil", stat.S_IFCHR | 0o644, b"", "is a device"),
    ],
)
def test_an_artifact_with_special_files_is_refused_naming_the_entry(platform, name, mode, data, says):
    body, digest = zip_with(name, mode, data)
    headers = {"Authorization": f"Bearer {platform.token}", "Content-Type": "application/zip"}
    r = httpx.put(f"{platform.gateway_url}/system/artifacts/{digest}", content=body, headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidArtifact"
    assert "'evil'" in r.json()["error"]["message"] and says in r.json()["error"]["message"]


HOG = """\
import os, time


def handler(event, context):
    if event.get("do") == "memory":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if event.get("do") == "fork":
        forked = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                forked += 1
        except OSError as e:
            return {"forked": forked, "error": e.errno}
    if event.get("do") == "tmp":
        written = 0
        try:
            with open("/tmp/fill", "wb") as f:
                while True:
                    f.write(bytes(1 << 20))
                    f.flush()
                    written += 1
        except OSError as e:
            return {"written_mb": written, "error": e.errno}
    return "fine"
"""


@pytest.fixture
def small_tmp(monkeypatch) -> int:
    monkeypatch.setenv("FX_SANDBOX_TMP_MB", "32")
    monkeypatch.setenv("FX_SANDBOX_PIDS_MAX", "64")
    return 32


def test_memory_processes_and_tmp_are_bounded_and_the_platform_survives(small_tmp: int, platform, make_function):
    assert sandboxed(platform), (platform.state_dir / PROTECTIONS_FILE).read_text()
    project = make_function("hog", body="pass", config={"memory": 128, "timeout": 30})
    (project / "handler.py").write_text(HOG)
    assert platform.fx("deploy", cwd=project).returncode == 0
    assert invoke(platform, "hog", {}).json() == "fine"

    oom = invoke(platform, "hog", {"do": "memory"})
    assert oom.status_code == 200 and oom.headers["X-Amz-Function-Error"] == "Unhandled"
    assert oom.json()["errorType"] == "Runtime.OutOfMemory"
    assert oom.json()["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    assert invoke(platform, "hog", {}).json() == "fine"  # a new replica

    bomb = invoke(platform, "hog", {"do": "fork"})
    assert bomb.status_code == 200 and bomb.json()["error"] == 11 and bomb.json()["forked"] < 64  # EAGAIN
    assert invoke(platform, "hog", {}).json() == "fine"

    tmp = invoke(platform, "hog", {"do": "tmp"})
    assert tmp.status_code == 200 and tmp.json()["error"] == 28 and tmp.json()["written_mb"] <= small_tmp  # ENOSPC
    assert invoke(platform, "hog", {}).json() == "fine"


# Looks for another function's variable in its own memory (all a replica inherits from the zygote it was forked
# from), and in its own /proc: the initial environment and command line.
SCAVENGER = """\
import ctypes, re


def handler(event, context):
    pattern = re.compile(b"DB_" + b"PASSWORD" + rb"\\W{1,8}([A-Za-z0-9-]{6,40})")
    found = set()
    for line in open("/proc/self/maps"):
        addr, perms = line.split()[:2]
        if perms.startswith("rw"):
            low, high = (int(x, 16) for x in addr.split("-"))
            try:
                found.update(m.decode() for m in pattern.findall(ctypes.string_at(low, high - low)))
            except Exception:
                pass
    with open("/proc/self/environ", "rb") as f:
        environ = sorted(v.split(b"=")[0].decode() for v in f.read().split(b"\\0") if v)
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read().decode()
    with open("/dev/stdout", "w") as out:
        out.write("a function may write to /dev/stdout\\n")
    return {"found": sorted(found), "environ": environ, "cmdline": cmdline}
"""


def test_a_function_finds_no_other_functions_variables_in_its_memory(platform, make_function):
    assert sandboxed(platform), (platform.state_dir / PROTECTIONS_FILE).read_text()
    victim = make_function("keeper", body="return 'kept'", config={"env": {"DB_PASSWORD": "s3cr3t-XYZZY-42"}})
    scavenger = make_function("scavenger", body="pass")
    (scavenger / "handler.py").write_text(SCAVENGER)
    for project in (victim, scavenger):
        assert platform.fx("deploy", cwd=project).returncode == 0
    assert invoke(platform, "keeper", {}).json() == "kept"  # its spawn went through the zygote first

    scavenged = invoke(platform, "scavenger", {})
    assert scavenged.status_code == 200 and "X-Amz-Function-Error" not in scavenged.headers, scavenged.text
    assert scavenged.json()["found"] == []
    assert set(scavenged.json()["environ"]) <= {"PATH", "LANG"}  # the zygote's, not the controller's
    assert str(platform.state_dir) not in scavenged.json()["cmdline"]
