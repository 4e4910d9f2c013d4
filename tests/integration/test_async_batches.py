"""Async calls that wait for a replica reach it several per request (gateway events/batches.py, the replica's
/_fx/batch), each still its own invocation: its call id as its aws_request_id and log lines, its own failure and
dead letter, and none lost when the replica dies in the middle of a batch (real nats-server, real replicas)."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
from fx.client import Client
from fx.protocol import ASYNC_CALL_ID, DEAD_ERROR

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import dead_letters, report_file
from tests.integration.test_trigger_batches import began, done
from tests.waiting import wait_for

# Writes "n aws_request_id" to $OUT.began when it begins and n to $OUT once done; fails the calls that ask to;
# holds the call $HELD until the test creates $OUT.release.
SINK = """\
import os
import time


def handler(event, context):
    with open(os.environ["OUT"] + ".began", "a") as began:
        began.write(f"{event['n']} {context.aws_request_id}\\n")
    if event["n"] == int(os.environ["HELD"]):
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["OUT"] + ".release") and time.monotonic() < deadline:
            time.sleep(0.01)
    if event["fail"]:
        raise RuntimeError(f"call {event['n']} fails")
    time.sleep(0.003)  # slower than the calls come: they wait for the one replica, and go in batches
    with open(os.environ["OUT"], "a") as out:
        out.write(f"{event['n']}\\n")
    return {}
"""
SENDERS, PER_SENDER = 4, 75


def deploy(platform: RunningPlatform, tmp_path: Path, held: int) -> Path:
    project = tmp_path / "sink"
    project.mkdir()
    (project / "handler.py").write_text(SINK)
    out = report_file(platform, "sink")
    spec = {"env": {"OUT": str(out), "HELD": str(held)}, "scale": {"min": 1, "max": 1}}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"sink": spec}}))
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    return out


def send(platform: RunningPlatform, fail_every: int) -> dict[int, str]:
    """SENDERS * PER_SENDER Invoke API Event calls at once; n → the call id its 202 gave."""
    url = f"{platform.gateway_url}/2015-03-31/functions/sink/invocations"
    accepted: dict[int, str] = {}

    def sender(first: int) -> None:
        with httpx.Client(timeout=10) as client:
            for n in range(first, first + PER_SENDER):
                event = {"n": n, "fail": n % fail_every == 0}
                r = client.post(url, json=event, headers={"X-Amz-Invocation-Type": "Event"})
                assert r.status_code == 202, r.text
                accepted[n] = r.headers["X-Fx-Call-Id"]

    threads = [threading.Thread(target=sender, args=(1 + i * PER_SENDER,)) for i in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(accepted) == SENDERS * PER_SENDER
    return accepted


def test_each_batched_call_runs_with_its_call_id_and_a_failing_one_is_dead_lettered_alone(fast_platform, tmp_path):
    out = deploy(fast_platform, tmp_path, held=-1)
    accepted = send(fast_platform, fail_every=25)
    failing = {n for n in accepted if n % 25 == 0}
    wait_for(
        lambda: len(dead_letters(fast_platform)) >= len(failing), 60, "the failing calls dead-lettered", interval=0.5
    )
    wait_for(lambda: len(done(out)) >= len(accepted) - len(failing), 30, "the others run")
    letters = dead_letters(fast_platform)
    assert {json.loads(letter.data)["n"] for letter in letters} == failing
    assert {letter.headers[ASYNC_CALL_ID] for letter in letters} == {accepted[n] for n in failing}
    assert all(letter.headers[DEAD_ERROR] == "RuntimeError" for letter in letters)
    assert sorted(done(out)) == sorted(set(accepted) - failing)  # each once: no call failed for another's error
    runs = began(out)
    assert all(request_id == accepted[n] for n, request_id in runs)  # the 202's call id is aws_request_id
    log_file = fast_platform.state_dir / "logs" / "sink.log"
    last = accepted[max(set(accepted) - failing)]
    wait_for(lambda: f"REPORT RequestId: {last}" in log_file.read_text(), 10, "the last REPORT line")
    log = log_file.read_text()
    for call_id in accepted.values():
        assert f"START RequestId: {call_id} " in log and f"REPORT RequestId: {call_id}\t" in log
    with Client(fast_platform.gateway_url, fast_platform.token) as fx:
        metrics = fx.gateway_metrics()
    requests = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("fx_gateway_requests_total{") and 'function="sink"' in line
    )
    assert 0 < requests < len(runs)  # several calls to a request: they were batched


def test_nothing_is_lost_when_the_replica_is_killed_in_the_middle_of_a_batch_of_calls(fast_platform, tmp_path):
    held = 40
    out = deploy(fast_platform, tmp_path, held=held)
    results: list[dict[int, str]] = []
    sending = threading.Thread(target=lambda: results.append(send(fast_platform, fail_every=10**6)))
    sending.start()
    wait_for(lambda: held in [n for n, _ in began(out)], 60, f"call {held} to begin")
    (pid,) = fast_platform.replica_pids("sink")
    time.sleep(0.2)  # calls after the held one wait in its batch, in the next one, and in the gateway
    os.kill(pid, signal.SIGKILL)
    out.with_name(out.name + ".release").touch()
    sending.join(60)
    [accepted] = results
    wait_for(lambda: set(done(out)) == set(accepted), 90, "every accepted call run", interval=0.5)
    assert dead_letters(fast_platform) == []
    assert [n for n, _ in began(out)].count(held) >= 2  # cut off by the kill, run again
    assert all(request_id == accepted[n] for n, request_id in began(out))
