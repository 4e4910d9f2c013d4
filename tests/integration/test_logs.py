"""`fx logs` as a user reads it: whole invocations, the default said when lines are cut, --since, --timestamps,
-o json, a removed function's logs gone with it, and output that survives a closed pipe."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from datetime import datetime

import httpx

from tests.integration.conftest import FX
from tests.waiting import wait_for

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def invoke(platform, name: str, n: int) -> None:
    url = f"{platform.gateway_url}/2015-03-31/functions/{name}/invocations"
    assert httpx.post(url, json={"n": n}, timeout=30).json() == n


def deploy_talker(platform, make_function, lines: int = 3):
    project = make_function(
        "talker", f"for i in range({lines}):\n        print(f'line {{i}} of {{event[\"n\"]}}')\n    return event['n']"
    )
    assert platform.fx("deploy", cwd=project).returncode == 0
    return project


def logs_with(platform, name: str, *args: str, reports: int):
    """`fx logs NAME ARGS` once it shows `reports` REPORT lines (replicas write an invocation's log as it ends)."""
    return wait_for(
        lambda: (r := platform.fx("logs", name, *args)).stdout.count("REPORT RequestId: ") == reports and r,
        30,
        f"{reports} invocations in fx logs {name} {' '.join(args)}",
    )


def test_a_cut_log_says_so_and_begins_at_an_invocation(platform, make_function):
    deploy_talker(platform, make_function)
    for n in range(40):  # START, 3 lines, END, REPORT: 240 lines
        invoke(platform, "talker", n)
    wait_for(lambda: "of 39" in platform.fx("logs", "talker").stdout, 30, "the last invocation in fx logs")

    shown = platform.fx("logs", "talker")
    assert shown.returncode == 0
    assert shown.stderr == "(last 100 lines; --tail N or --since 10m for more)\n"
    lines = shown.stdout.splitlines()
    assert 94 < len(lines) <= 100  # 100 lines from the first whole invocation in them
    assert lines[0].startswith("START RequestId: ") and lines[-1].startswith("REPORT RequestId: ")
    assert lines[-3:-1] == ["line 2 of 39", lines[-2]] and lines[-2].startswith("END RequestId: ")

    seven = platform.fx("logs", "talker", "--tail", "7").stdout.splitlines()
    assert [seven[0].split()[0], *seven[1:4]] == ["START", "line 0 of 39", "line 1 of 39", "line 2 of 39"]
    assert len(seven) == 6  # the seventh line from the end was the last of invocation 38

    everything = platform.fx("logs", "talker", "--tail", "1000")
    assert everything.stderr == ""  # nothing cut, nothing said
    assert everything.stdout.count("START RequestId: ") == 40


def test_since_timestamps_and_json(platform, make_function):
    deploy_talker(platform, make_function, lines=1)
    invoke(platform, "talker", 1)
    # Log stamps are in milliseconds and a warm invocation answers in less than one: stay clear of the
    # millisecond invocation 1 began in, and of the one invocation 2 begins in.
    time.sleep(0.005)
    between = datetime.now().astimezone()
    time.sleep(0.005)
    invoke(platform, "talker", 2)
    logs_with(platform, "talker", reports=2)

    since = platform.fx("logs", "talker", "--since", between.isoformat()).stdout
    assert "line 0 of 2" in since and "line 0 of 1" not in since and since.startswith("START RequestId: ")
    naive = platform.fx("logs", "talker", "--since", between.replace(tzinfo=None).isoformat()).stdout
    assert naive == since  # a time without an offset is the local time
    assert platform.fx("logs", "talker", "--since", "10m").stdout.count("START RequestId: ") == 2
    bad = platform.fx("logs", "talker", "--since", "yesterday")
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr

    plain = platform.fx("logs", "talker").stdout.splitlines()
    stamped = platform.fx("logs", "talker", "--timestamps").stdout.splitlines()
    assert len(stamped) == len(plain)
    for line, original in zip(stamped, plain, strict=True):
        stamp, _, rest = line.partition(" ")
        assert re.fullmatch(STAMP, stamp) and rest == original
    assert datetime.fromisoformat(stamped[-1].split()[0]) >= between

    as_json = [json.loads(line) for line in platform.fx("logs", "talker", "-o", "json").stdout.splitlines()]
    assert [o["message"] for o in as_json] == plain
    assert {o["function"] for o in as_json} == {"talker"} and all(re.fullmatch(STAMP, o["time"]) for o in as_json)


def test_follow_streams_new_invocations_and_ctrl_c_ends_it(platform, make_function):
    deploy_talker(platform, make_function, lines=1)
    invoke(platform, "talker", 1)
    logs_with(platform, "talker", reports=1)
    env = {"FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token, "FX_CONFIG": str(platform.config)}
    proc = subprocess.Popen(
        [FX, "logs", "talker", "-f", "--timestamps"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any(line.endswith(" line 0 of 1\n") for line in seen), 30, "the earlier invocation")
        invoke(platform, "talker", 2)
        wait_for(lambda: any(line.endswith(" line 0 of 2\n") for line in seen), 30, "the new invocation")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(30)
    assert proc.returncode == 0 and proc.stderr.read() == ""
    assert all(re.match(STAMP + " ", line) for line in seen)


def test_a_removed_function_s_logs_do_not_reappear_under_a_new_one(platform, make_function):
    project = deploy_talker(platform, make_function)
    invoke(platform, "talker", 1)
    logs_with(platform, "talker", reports=1)
    assert platform.fx("rm", "talker").returncode == 0

    assert platform.fx("deploy", cwd=project).returncode == 0
    # The readiness gate's replica of the new function has initialised: nothing else is in its log yet.
    assert [line.split(" ")[0] for line in platform.fx("logs", "talker").stdout.splitlines()] == ["INIT_START"]
    invoke(platform, "talker", 2)
    fresh = logs_with(platform, "talker", reports=1).stdout
    assert "line 0 of 2" in fresh and "of 1" not in fresh


def test_output_into_a_closed_pipe_ends_without_a_traceback(platform, make_function):
    deploy_talker(platform, make_function)
    invoke(platform, "talker", 1)
    logs_with(platform, "talker", reports=1)
    env = {"FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token, "FX_CONFIG": str(platform.config)}
    for argv in (["logs", "talker"], ["describe", "talker"], ["ls"]):
        # The reading end is closed before fx has started: its first write fails, as into `| head` gone.
        proc = subprocess.Popen([FX, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        proc.stdout.close()
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 1 and stderr == b"", (argv, stderr)
    head = subprocess.run(
        f"{FX} logs talker | head -1; {FX} describe talker | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    first_log_line, first_describe_line = head.stdout.splitlines()
    assert first_log_line.startswith("INIT_START Runtime Version: ") and first_describe_line == "name:     talker"
    assert head.stderr == ""
