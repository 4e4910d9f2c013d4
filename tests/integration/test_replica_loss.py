"""A replica that dies mid-request, on the real platform: what is sent again, and what the caller is told."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fx_controller.backends.local_sandbox import run_dir

from tests.integration.conftest import FX, RunningPlatform
from tests.integration.helpers import metric
from tests.waiting import wait_for

# Notes each call in $CALLS (one line: the last part of its path; a raw invoke's "name", else "invoke"); a name
# starting with die- makes its replica die in the middle of its first call (a marker file beside $CALLS remembers
# that it was done). os._exit, not a signal to itself: in the sandbox a replica is PID 1 of its namespace, which
# ignores its own SIGKILL.
FRAGILE = """\
import os


def handler(event, context):
    name = event["rawPath"].rsplit("/", 1)[-1] if "rawPath" in event else event.get("name", "invoke")
    calls = os.environ["CALLS"]
    with open(calls, "a") as out:
        out.write(name + "\\n")
    if name.startswith("die-") and not os.path.exists(f"{calls}.{name}"):
        open(f"{calls}.{name}", "w").close()
        os._exit(1)
    return {"statusCode": 200, "body": name} if "rawPath" in event else {"ran": name}
"""


@pytest.fixture(scope="module")
def fragile(tmp_path_factory) -> Iterator[tuple[RunningPlatform, Path]]:
    """A platform with `fragile` deployed; yields it and the file its calls are noted in (in the function's
    private directory: the sandbox hides the test's own files)."""
    root = tmp_path_factory.mktemp("replica-loss")
    running = RunningPlatform(root / "state", root / "fx-config.json")
    try:
        calls = run_dir(running.state_dir) / "fragile" / "calls"
        project = root / "fragile"
        project.mkdir()
        (project / "handler.py").write_text(FRAGILE)
        (project / "fx.yaml").write_text(
            f"functions:\n  fragile:\n    handler: handler.handler\n    env: {{CALLS: {calls}}}\n"
        )
        deployed = running.fx("deploy", cwd=project)
        assert deployed.returncode == 0, deployed.stderr
        yield running, calls
    finally:
        running.stop()


def ran(calls: Path, name: str) -> int:
    """How often the handler ran for calls named `name`."""
    return calls.read_text().split().count(name) if calls.exists() else 0


def counted(platform: RunningPlatform, name: str) -> float:
    """`fragile`'s count in the gateway's metric `name`."""
    text = httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text
    return metric(text, name, function="fragile", version="1")


def test_a_get_whose_replica_died_in_the_handler_is_sent_again_and_answered(fragile):
    platform, calls = fragile
    retries = counted(platform, "fx_gateway_replica_retries_total")
    r = httpx.get(f"{platform.gateway_url}/function/fragile/die-get", timeout=60)
    assert (r.status_code, r.text) == (200, "die-get")
    assert ran(calls, "die-get") == 2  # the first replica died in it; a new one answered
    assert counted(platform, "fx_gateway_replica_retries_total") == retries + 1


def test_a_post_whose_replica_died_in_the_handler_is_502_replica_lost_and_not_sent_again(fragile):
    platform, calls = fragile
    lost = counted(platform, "fx_gateway_replica_lost_total")
    r = httpx.post(f"{platform.gateway_url}/function/fragile/die-post", content=b"order 66", timeout=60)
    assert r.status_code == 502
    assert r.json()["errorType"] == "Runtime.ReplicaLost"
    assert "may have run" in r.json()["errorMessage"]
    assert ran(calls, "die-post") == 1  # it ran, and was not run again
    assert counted(platform, "fx_gateway_replica_lost_total") == lost + 1
    again = httpx.post(f"{platform.gateway_url}/function/fragile/die-post", content=b"order 66", timeout=60)
    assert (again.status_code, again.text) == (200, "die-post")  # the caller's own retry reaches a new replica


def test_fx_invoke_whose_replica_died_in_the_handler_says_the_function_may_have_run(fragile):
    platform, calls = fragile
    lost = platform.fx("invoke", "fragile", "--data", '{"name": "die-invoke"}')
    assert lost.returncode == 1
    assert "Runtime.ReplicaLost" in lost.stderr and "may have run" in lost.stderr
    assert ran(calls, "die-invoke") == 1


def test_a_raw_invoke_whose_replica_died_before_reading_it_is_sent_again(fragile):
    platform, calls = fragile
    warm = platform.fx("invoke", "fragile", "--data", "{}")
    assert warm.returncode == 0, warm.stderr
    [pid] = wait_for(lambda: platform.replica_pids("fragile"), 20, "fragile's replica")
    before, retries = ran(calls, "invoke"), counted(platform, "fx_gateway_replica_retries_total")
    os.kill(pid, signal.SIGSTOP)  # it reads nothing from now on
    env = {**os.environ, "FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token}
    env["FX_CONFIG"] = str(platform.config)
    invoke = subprocess.Popen(
        [FX, "invoke", "fragile", "--data", '{"n": 1}'], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # In flight: the gateway wrote it to the replica's socket (a pooled connection, in the same loop turn).
        wait_for(lambda: counted(platform, "fx_gateway_in_flight") == 1, 20, "the invoke to reach the replica")
        os.kill(pid, signal.SIGKILL)  # dies with the request unread: the kernel resets the connection
        out, err = invoke.communicate(timeout=60)
    finally:
        invoke.kill()
        invoke.wait()
    assert invoke.returncode == 0, err
    assert '"ran": "invoke"' in out.decode()
    assert ran(calls, "invoke") == before + 1  # once, by the new replica
    assert counted(platform, "fx_gateway_replica_retries_total") == retries + 1
    assert platform.replica_pids("fragile") != [pid]
