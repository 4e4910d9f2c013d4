"""Trigger events that wait for a replica reach it several per request (gateway events/batches.py, the replica's
/_fx/batch), each still its own invocation: its own error and dead letter, and none lost when the replica dies
in the middle of a batch (real nats-server, real replicas)."""

import asyncio
import json
import os
import signal
from pathlib import Path

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import dead_letters, report_file
from tests.waiting import wait_for

# A durable trigger's handler (batch 1: one record per invocation): writes n to $OUT.began when it begins and to
# $OUT once done; fails the n that are multiples of $FAIL_EVERY; holds $HELD until the test creates $OUT.release.
SINK = """\
import os
import time


def handler(event, context):
    (record,) = event["Records"]
    n = int(record["data"])
    with open(os.environ["OUT"] + ".began", "a") as began:
        began.write(f"{n} {context.aws_request_id}\\n")
    if n == int(os.environ["HELD"]):
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["OUT"] + ".release") and time.monotonic() < deadline:
            time.sleep(0.01)
    if n % int(os.environ["FAIL_EVERY"]) == 0:
        raise RuntimeError(f"event {n} fails")
    time.sleep(0.002)  # slower than the gateway sends: events wait, and go in batches
    with open(os.environ["OUT"], "a") as out:
        out.write(f"{n}\\n")
    return {}
"""
TOTAL = 300


def deploy(
    platform: RunningPlatform, tmp_path: Path, held: int, fail_every: int, max_deliver: int, timeout: int = 30
) -> Path:
    """Store TOTAL events in a stream first (a backlog: they wait for the one replica), then deploy the sink."""

    async def fill() -> None:
        nc = await platform.nats()
        js = nc.jetstream()
        await js.add_stream(name="JOBS", subjects=["jobs.>"])
        for n in range(1, TOTAL + 1):
            await js.publish("jobs.new", str(n).encode())
        await nc.close()

    asyncio.run(fill())
    project = tmp_path / "sink"
    project.mkdir()
    (project / "handler.py").write_text(SINK)
    out = report_file(platform, "sink")
    trigger = {"stream": "JOBS", "batch": 1, "max_in_flight": 64, "max_deliver": max_deliver, "backoff": 0.1}
    env = {"OUT": str(out), "HELD": str(held), "FAIL_EVERY": str(fail_every)}
    spec = {"env": env, "triggers": [{"jetstream": trigger}], "scale": {"min": 1, "max": 1}, "timeout": timeout}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"sink": spec}}))
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    return out


def began(out: Path) -> list[tuple[int, str]]:
    path = out.with_name(out.name + ".began")
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(n), request_id) for n, request_id in (line.split() for line in lines)]


def done(out: Path) -> list[int]:
    return [int(n) for n in out.read_text().split()] if out.exists() else []


def test_an_event_whose_handler_fails_is_dead_lettered_alone_and_each_has_its_log_lines(platform, tmp_path):
    out = deploy(platform, tmp_path, held=-1, fail_every=25, max_deliver=1)
    failing = set(range(25, TOTAL + 1, 25))
    wait_for(lambda: len(dead_letters(platform)) >= len(failing), 60, "the failing events dead-lettered", interval=0.5)
    wait_for(lambda: len(done(out)) >= TOTAL - len(failing), 30, "the others processed")
    assert {int(letter.data) for letter in dead_letters(platform)} == failing
    assert sorted(done(out)) == sorted(set(range(1, TOTAL + 1)) - failing)
    ids = [request_id for _, request_id in began(out)]
    assert len(set(ids)) == TOTAL  # one invocation per event
    log_file = platform.state_dir / "logs" / "sink.log"
    wait_for(lambda: f"REPORT RequestId: {ids[-1]}" in log_file.read_text(), 10, "the last REPORT line")
    log = log_file.read_text()
    for request_id in ids:
        assert f"START RequestId: {request_id} " in log and f"REPORT RequestId: {request_id}\t" in log
    assert log.count("RuntimeError: event") >= len(failing)


def test_nothing_is_lost_when_the_replica_is_killed_in_the_middle_of_a_batch(platform, tmp_path):
    held = 40
    out = deploy(platform, tmp_path, held=held, fail_every=TOTAL + 1, max_deliver=5)
    wait_for(lambda: held in [n for n, _ in began(out)], 60, f"event {held} to begin")
    (pid,) = platform.replica_pids("sink")
    os.kill(pid, signal.SIGKILL)  # events after the held one wait in its batch, in the next one, and in the gateway
    out.with_name(out.name + ".release").touch()
    wait_for(lambda: set(done(out)) == set(range(1, TOTAL + 1)), 90, "every event processed", interval=0.5)
    assert dead_letters(platform) == []
    assert [n for n, _ in began(out)].count(held) >= 2  # cut off by the kill, delivered again


def test_an_event_that_times_out_in_a_batch_is_dead_lettered_alone_and_the_events_after_it_run_once(platform, tmp_path):
    """The held event outlasts the function's timeout, in the middle of a batch: it alone fails (max_deliver 1:
    dead-lettered at once); the events after it in its batch never started, and run once each, elsewhere."""
    held = 40
    out = deploy(platform, tmp_path, held=held, fail_every=TOTAL + 1, max_deliver=1, timeout=1)
    wait_for(lambda: len(done(out)) >= TOTAL - 1, 90, "every other event processed", interval=0.5)
    wait_for(lambda: dead_letters(platform), 10, "the held event dead-lettered")
    [letter] = dead_letters(platform)
    assert int(letter.data) == held and "Sandbox.Timedout" in str(letter.headers)
    assert sorted(done(out)) == sorted(set(range(1, TOTAL + 1)) - {held})
    starts = [n for n, _ in began(out)]
    assert sorted(starts) == list(range(1, TOTAL + 1))  # each began once: none cut off and delivered again
