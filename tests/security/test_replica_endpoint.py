"""A replica names the socket it listens on, and runs the function's code: a function that says another
function's socket, or a local port, must not have the gateway send its callers (with its replica token) there."""

import socket
import threading
import time

import httpx
import pytest
from fx.client import Client
from fx.state_dir import PROTECTIONS_FILE
from fx_controller.backends.local_sandbox import run_dir

from tests.waiting import wait_for

CLAIMS = {  # what the attacker's replica says it listens on, built from the socket it was given
    "another function's socket": '"unix:" + os.path.join(os.path.dirname(mine), "victim", "x.sock")',
    "a local port": '"127.0.0.1:4222"',
}


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_replica_claiming_a_socket_outside_its_directory_fails_its_init(platform, make_function, claim):
    victim = make_function("victim", body="return {'statusCode': 200, 'body': 'victim'}")
    assert platform.fx("deploy", cwd=victim).returncode == 0
    # the function's own code, at import, makes its replica report another endpoint than the one it binds
    lie = f"""import os
import fx_runtime.server as server
_listen = server.Server.listen
async def listen(self):
    endpoint = await _listen(self)
    mine = os.path.dirname(self.settings.listen_path)
    return {CLAIMS[claim]}
server.Server.listen = listen
"""
    attacker = make_function("attacker", body="return {'statusCode': 200, 'body': 'attacker'}", imports=lie)
    result = platform.fx("deploy", cwd=attacker)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Runtime.ListenError" in result.stderr and "not a socket in its function's directory" in result.stderr
    r = httpx.get(f"{platform.gateway_url}/function/attacker", timeout=30)
    assert r.status_code == 502 and r.json()["error"]["code"] == "Runtime.ListenError"
    assert httpx.get(f"{platform.gateway_url}/function/victim", timeout=30).text == "victim"


def test_a_spare_claiming_another_functions_socket_is_never_its_versions_standby(platform, make_function):
    """A spare of a template names the socket it serves on before it is needed, and the route table may send a cold
    start straight there (the version's standby): one naming another function's socket is never told to the
    gateway. Here the function's code lies only in its spares (the first replica is honest, so the deploy passes),
    and the socket it names is a trap in the victim's directory, which only root (the gateway) may reach."""
    assert (platform.state_dir / PROTECTIONS_FILE).read_text().startswith("function sandbox: ON")
    victim = make_function("victim", body="return {'statusCode': 200, 'body': 'victim'}")
    assert platform.fx("deploy", cwd=victim).returncode == 0
    trap = run_dir(platform.state_dir) / "victim" / "trap.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(trap))
    listener.listen(8)
    listener.settimeout(0.2)
    connected: list[bool] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            connected.append(True)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    lie = """import os
import fx_runtime.server as server
_listen = server.Server.listen
async def listen(self):
    endpoint = await _listen(self)
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "snap-start":
        return endpoint
    return "unix:" + os.path.join(os.path.dirname(os.path.dirname(self.settings.listen_path)), "victim", "trap.sock")
server.Server.listen = listen
"""
    attacker = make_function(
        "attacker",
        body="return {'statusCode': 200, 'body': 'a'}",
        imports=lie,
        scale={"idle_timeout": 1},
        config={"snap_start": True},
    )
    try:
        result = platform.fx("deploy", cwd=attacker)
        assert result.returncode == 0, result.stdout + result.stderr

        def at_zero() -> bool:
            with Client(platform.gateway_url, platform.token) as fx:
                v = fx.describe("attacker").versions[0]
                return not (v.replicas_ready + v.replicas_starting)

        wait_for(at_zero, 30, "the attacker at zero, its template's spare prepared")
        r = httpx.get(f"{platform.gateway_url}/function/attacker", timeout=30)
        # a controller's start hands it the spare, whose lie then fails its init, as any replica's would
        assert r.status_code == 502 and r.json()["error"]["code"] == "Runtime.ListenError"
        assert connected == []
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_function_claiming_its_own_spares_never_runs_past_its_max(platform, make_function):
    """A function's spares listen in its own directory, so its code can connect to them, and each connection makes
    a spare a replica (the zygote forks the next one 25 ms later). Its replicas must still never pass its
    scale.max: here its handler claims every spare it finds for 1.5 s, while `fx describe` is watched."""
    body = """claimed, end = 0, time.monotonic() + 1.5
    while time.monotonic() < end:
        for path in glob.glob(os.path.join(os.environ["RUN"], "s-*.sock")):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                claimed += 1
            except OSError:
                pass
            s.close()
        time.sleep(0.02)
    return {'statusCode': 200, 'body': str(claimed)}"""
    project = make_function(
        "greedy",
        body=body,
        imports="import glob, os, socket, time",
        scale={"max": 2},
        config={"snap_start": True, "env": {"RUN": str(run_dir(platform.state_dir) / "greedy")}},
    )
    assert platform.fx("deploy", cwd=project).returncode == 0
    most, stop = [0], threading.Event()

    def watch() -> None:
        with Client(platform.gateway_url, platform.token) as fx:
            while not stop.is_set():
                most[0] = max(most[0], fx.describe("greedy").versions[0].replicas_ready)
                stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        r = httpx.get(f"{platform.gateway_url}/function/greedy", timeout=30)
        time.sleep(1)  # what was claimed last is counted
    finally:
        stop.set()
        watcher.join(5)
    assert r.status_code == 200 and int(r.text) >= 5  # it did claim spare after spare
    assert 1 <= most[0] <= 2


# What a function's code, at import, writes to every pipe it holds open: the runtime's report pipe among them.
# With the error its deploy gets: a report that is no report, or (its fields cut to the runtime's) a ready at a
# socket outside the function's directory.
REPORTS = {
    "not JSON": (b"}{ not a report\n", "Runtime.InvalidReport"),
    "a claim of a standby, and an init time that is no number": (
        b'{"event": "ready", "endpoint": "unix:/x.sock", "claimed": "victim/1/k", "init_ms": "soon"}\n',
        "Runtime.ListenError",
    ),
}


@pytest.mark.parametrize("report", REPORTS)
def test_a_function_writing_to_the_runtimes_report_pipe_fails_its_init_and_no_other_replica_dies(
    platform, make_function, report
):
    """The zygote reads each replica's first report; a function's code can write there too. Before, a line that
    was not JSON ended the zygote, and with it every function's warm replicas; a field only the zygote may write
    ("claimed") went on to the controller, and an init time that was no number ended its reading of the zygote.
    Now the replica alone fails its init."""
    victim = make_function("victim", body="return {'statusCode': 200, 'body': 'victim'}")
    assert platform.fx("deploy", cwd=victim).returncode == 0
    assert httpx.get(f"{platform.gateway_url}/function/victim", timeout=30).text == "victim"
    warm = platform.replica_pids("victim")
    writes = f"""import os, stat
for fd in range(3, 256):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, {REPORTS[report][0]!r})
    except OSError:
        pass
"""
    attacker = make_function("attacker", body="return {'statusCode': 200, 'body': 'attacker'}", imports=writes)
    result = platform.fx("deploy", cwd=attacker)
    assert result.returncode == 1 and REPORTS[report][1] in result.stderr, result.stdout + result.stderr
    assert httpx.get(f"{platform.gateway_url}/function/victim", timeout=30).text == "victim"
    assert platform.replica_pids("victim") == warm  # the same warm replica: the zygote lived on
    later = make_function("later", body="return {'statusCode': 200, 'body': 'later'}")
    assert platform.fx("deploy", cwd=later).returncode == 0  # the controller's reading of the zygote lived on too
