"""Events on the real platform: async calls (HTTP and the Lambda Invoke API, boto3 included), retries,
dead letters, callbacks, and nothing lost when the gateway is killed in the middle of a stream of calls."""

import asyncio
import base64
import http.server
import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import nats
import pytest
from fx.platform import _http_ok
from fx.protocol import ASYNC_CALL_ID, DEAD_ERROR

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import KV_LISTENER, dead_letters, lambda_client, metric, report_file
from tests.waiting import wait_for

# Appends each event's "n" to $OUT.began when it begins and to $OUT once done; fails when asked to; holds the
# event $HELD until the test creates $OUT.release.
SINK = """\
import os
import time


def handler(event, context):
    with open(os.environ["OUT"] + ".began", "a") as began:
        began.write(f"{event['n']}\\n")
    if event["n"] == int(os.environ.get("HELD", "-1")):
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["OUT"] + ".release") and time.monotonic() < deadline:
            time.sleep(0.01)
    if event.get("fail"):
        raise RuntimeError(f"event {event['n']} asked to fail")
    with open(os.environ["OUT"], "a") as out:
        out.write(f"{event['n']}\\n")
    return {"n": event["n"], "version": context.function_version}
"""


def deploy_sink(
    platform: RunningPlatform, tmp_path: Path, name: str = "sink", scale: dict | None = None, held: int = -1
) -> Path:
    project = tmp_path / name
    project.mkdir()
    out = report_file(platform, name)
    (project / "handler.py").write_text(SINK)
    env = {"OUT": str(out), "HELD": str(held)}
    spec = {"handler": "handler.handler", "env": env, "scale": scale or {"max": 4}}
    (project / "fx.yaml").write_text(json.dumps({"functions": {name: spec}}))
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    return out


def processed(out: Path) -> list[int]:
    return [int(line) for line in out.read_text().split()] if out.exists() else []


def began(out: Path) -> list[int]:
    """Every n whose invocation began, once per attempt (the handlers here write it first)."""
    return processed(out.with_name(out.name + ".began"))


def release(out: Path) -> None:
    """Let the held invocation finish."""
    out.with_name(out.name + ".release").touch()


def test_boto3_invokes_fx_functions_sync_and_async(fast_platform, tmp_path):
    out = deploy_sink(fast_platform, tmp_path)
    client = lambda_client(fast_platform)

    sync = client.invoke(FunctionName="sink", Payload=json.dumps({"n": 1}))
    assert sync["StatusCode"] == 200 and "FunctionError" not in sync
    assert json.loads(sync["Payload"].read()) == {"n": 1, "version": "$LATEST"}  # unqualified: Lambda's $LATEST
    assert sync["ExecutedVersion"] == "$LATEST"

    failed = client.invoke(FunctionName="sink", Payload=json.dumps({"n": 2, "fail": True}))
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorMessage"] == "event 2 asked to fail"

    dry = client.invoke(FunctionName="sink", InvocationType="DryRun")
    assert dry["StatusCode"] == 204

    event = client.invoke(FunctionName="sink", InvocationType="Event", Payload=json.dumps({"n": 3}))
    assert event["StatusCode"] == 202 and event["Payload"].read() == b""
    wait_for(lambda: 3 in processed(out), 15, "the async call to run")

    qualified = client.invoke(FunctionName="sink", Qualifier="1", InvocationType="Event", Payload='{"n": 4}')
    assert qualified["StatusCode"] == 202
    wait_for(lambda: 4 in processed(out), 15, "the async call pinned to version 1 to run")
    assert processed(out) == [1, 3, 4]


def test_boto3_log_type_tail_returns_the_invocations_log(platform, make_function):
    project = make_function("talker", 'print(f"hello from {event[\'n\']}")\n    return {"n": event["n"]}')
    assert platform.fx("deploy", cwd=project).returncode == 0
    client = lambda_client(platform)

    tailed = client.invoke(FunctionName="talker", Payload=json.dumps({"n": 7}), LogType="Tail")
    assert json.loads(tailed["Payload"].read()) == {"n": 7}
    log = base64.b64decode(tailed["LogResult"]).decode()
    assert log.startswith("START RequestId: ") and "hello from 7" in log
    assert log.splitlines()[-1].startswith("REPORT RequestId: ") and "Duration: " in log
    assert "LogResult" not in client.invoke(FunctionName="talker", Payload=json.dumps({"n": 8}))


class _Callbacks(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_an_async_http_call_is_202_and_its_result_reaches_the_callback_url(fast_platform, make_function):
    project = make_function("echo", body="return {'statusCode': 201, 'body': event['body']}")
    assert fast_platform.fx("deploy", cwd=project).returncode == 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Callbacks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = httpx.post(
            f"{fast_platform.gateway_url}/async-function/echo/x",
            content=b"hello later",
            headers={"X-Callback-Url": f"http://127.0.0.1:{server.server_address[1]}/cb"},
        )
        assert r.status_code == 202
        wait_for(lambda: _Callbacks.received, 20, "the callback")
    finally:
        server.shutdown()
    headers, body = _Callbacks.received[0]
    assert headers["X-Fx-Call-Id"] == r.headers["X-Fx-Call-Id"] == r.json()["call_id"]
    assert headers["X-Fx-Function-Status"] == "201" and headers["X-Fx-Outcome"] == "success"
    assert body == b"hello later"


def test_nothing_is_lost_when_the_gateway_is_killed_in_a_stream_of_async_calls(fast_platform, tmp_path):
    """Every call answered 202 runs at least once, or its dead letter is stored: count them. One call is held in
    its handler when the gateway dies: it must run again."""
    held = 101  # sent after a hundred others
    out = deploy_sink(fast_platform, tmp_path, held=held)
    url = f"{fast_platform.gateway_url}/2015-03-31/functions/sink/invocations"
    accepted: dict[int, str] = {}  # n -> call id
    unsure: set[int] = set()  # no answer: stored or not, the caller cannot know
    senders, per_sender = 4, 150

    def send(first: int) -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=10) as client:
            for n in range(first, first + per_sender):
                event = {"n": n, "fail": n % 50 == 0}  # these fail every attempt: they must be dead-lettered
                while time.monotonic() < deadline:
                    try:
                        r = client.post(url, json=event, headers={"X-Amz-Invocation-Type": "Event"})
                    except httpx.HTTPError:
                        unsure.add(n)
                        time.sleep(0.05)
                        continue  # the gateway is down: try again, as a client would
                    if r.status_code == 202:
                        accepted[n] = r.headers["X-Fx-Call-Id"]
                        break

    threads = [threading.Thread(target=send, args=(i * per_sender,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    wait_for(lambda: held in began(out), 30, f"call {held} to begin")
    in_flight_at_kill = len(accepted)
    restart_gateway(fast_platform)  # while call `held` is in its handler: its result has no one to go to
    release(out)
    for thread in threads:
        thread.join(90)
    assert len(accepted) == senders * per_sender  # every call was eventually accepted
    to_fail = {n for n in accepted if n % 50 == 0}
    to_run = set(accepted) - to_fail

    def settled() -> bool:
        return to_run <= set(processed(out)) and len(dead_letters(fast_platform)) >= len(to_fail)

    wait_for(settled, 60, "every accepted call to run or be dead-lettered", interval=0.5)
    letters = dead_letters(fast_platform)
    assert {json.loads(letter.data)["n"] for letter in letters} == to_fail
    assert {accepted[n] for n in to_fail} <= {letter.headers[ASYNC_CALL_ID] for letter in letters}
    assert all(letter.headers[DEAD_ERROR] == "RuntimeError" for letter in letters)
    runs = processed(out)
    assert set(runs) == to_run
    wait_for(lambda: began(out).count(held) >= 2, 30, f"call {held}, interrupted by the kill, to run again")
    print(
        f"\naccepted {len(accepted)} ({in_flight_at_kill} before the kill), {len(unsure)} calls unanswered"
        f" while the gateway was down, ran {len(runs)} ({len(runs) - len(set(runs))} twice),"
        f" dead-lettered {len(letters)}"
    )


def restart_gateway(running: RunningPlatform) -> None:
    """SIGKILL the gateway (no drain: calls under way are abandoned), then start it again on the same port."""
    platform = running._platform
    [gateway] = [p for p in platform._running if p.name == "gateway"]
    os.kill(gateway.proc.pid, signal.SIGKILL)
    gateway.proc.wait()
    platform._running.remove(gateway)
    gateway.log.close()
    time.sleep(0.5)
    platform._spawn("gateway", list(gateway.proc.args), lambda: _http_ok(f"{platform.gateway_url}/healthz"))


# Replies with the event it got; appends its data to $OUT.
LISTENER = """\
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        out.write(event["data"] + "\\n")
    return {"got": event["data"], "subject": event["subject"], "base64": event["isBase64Encoded"]}
"""


def test_nats_messages_invoke_a_function_declared_with_a_trigger_and_a_request_gets_the_result(platform, tmp_path):
    project = tmp_path / "orders"
    project.mkdir()
    (project / "handler.py").write_text(LISTENER)
    out = report_file(platform, "orders")
    bad = {"functions": {"orders": {"triggers": [{"nats": "orders..new"}]}}}
    (project / "fx.yaml").write_text(json.dumps(bad))
    refused = platform.fx("deploy", cwd=project)
    assert refused.returncode == 2 and "NATS subject 'orders..new' is invalid" in refused.stderr

    spec = {"env": {"OUT": str(out)}, "triggers": [{"nats": "orders.*"}]}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"orders": spec}}))
    assert platform.fx("deploy", cwd=project).returncode == 0

    async def talk() -> dict:
        nc = await platform.nats()
        deadline = time.monotonic() + 15
        while True:  # the gateway subscribes once it has the route table
            try:
                reply = await nc.request("orders.quote", b"AAPL", timeout=10)
                break
            except nats.errors.NoRespondersError:
                assert time.monotonic() < deadline, "the gateway never subscribed to orders.*"
                await asyncio.sleep(0.1)
        for n in range(20):
            await nc.publish("orders.new", str(n).encode())
        await nc.close()
        return json.loads(reply.data)

    assert asyncio.run(talk()) == {"got": "AAPL", "subject": "orders.quote", "base64": False}
    expected = ["AAPL", *map(str, range(20))]
    wait_for(lambda: sorted(out.read_text().split()) == sorted(expected), 15, "20 messages to be handled once each")


SLOW_LISTENER = """\
import os, time


def handler(event, context):
    time.sleep(0.3)
    with open(os.environ["OUT"], "a") as out:
        out.write(event["data"] + "\\n")
    return event["data"]
"""


@pytest.fixture
def short_trigger_line(monkeypatch):
    """One NATS trigger event at a time on the gateway, and 3 more that may wait (fx-gateway reads its flags from
    the environment the platform starts it with)."""
    monkeypatch.setenv("FX_TRIGGER_CONCURRENCY", "1")
    monkeypatch.setenv("FX_TRIGGER_WAITING_MAX", "3")


def test_a_flood_on_a_trigger_subject_waits_in_order_up_to_its_bound_and_the_rest_is_dropped_and_counted(
    short_trigger_line, platform, tmp_path
):
    """Anyone allowed to publish on a trigger's subject (another function, a client) can send faster than the
    function runs: the gateway holds --trigger-waiting-max messages, no more, and counts what it drops."""
    project = tmp_path / "slow"
    project.mkdir()
    (project / "handler.py").write_text(SLOW_LISTENER)
    out = report_file(platform, "slow")
    spec = {"env": {"OUT": str(out)}, "triggers": [{"nats": "flood.*"}]}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"slow": spec}}))
    assert platform.fx("deploy", cwd=project).returncode == 0

    def counted(result: str) -> float:
        text = httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text
        return metric(text, "fx_gateway_trigger_events_total", function="slow", trigger="flood.*", result=result)

    async def flood(count: int) -> None:
        nc = await platform.nats()
        deadline = time.monotonic() + 15
        while True:  # the gateway subscribes once it has the route table; its answer means the line is free
            try:
                await nc.request("flood.ready", b"ready", timeout=10)
                break
            except nats.errors.NoRespondersError:
                assert time.monotonic() < deadline, "the gateway never subscribed to flood.*"
                await asyncio.sleep(0.1)
        for n in range(count):
            await nc.publish("flood.new", str(n).encode())
        await nc.close()

    asyncio.run(flood(20))
    wait_for(lambda: counted("ok") + counted("dropped") == 21, 30, "every message run or dropped")
    handled = [line for line in out.read_text().split() if line != "ready"]
    assert 4 <= len(handled) < 20 and counted("dropped") == 20 - len(handled)
    assert handled == [str(n) for n in range(len(handled))]  # in the order published: the first ones, none lost
    asyncio.run(flood(1))  # the line is empty again: a new message runs
    wait_for(lambda: counted("ok") == len(handled) + 3, 15, "the message after the flood")


# A durable-trigger handler: records every n when its batch begins ($OUT.began) and once done ($OUT), reports every
# 50th as failed (ReportBatchItemFailures), holds the batch holding $HELD until the test creates $OUT.release.
BATCH_SINK = """\
import os
import time


def handler(event, context):
    numbers = [int(record["data"]) for record in event["Records"]]
    with open(os.environ["OUT"] + ".began", "a") as began:
        began.write("".join(f"{n}\\n" for n in numbers))
    if int(os.environ["HELD"]) in numbers:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["OUT"] + ".release") and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(0.05)  # so that batches are in flight when the gateway is killed
    failures = []
    with open(os.environ["OUT"], "a") as out:
        for record in event["Records"]:
            n = int(record["data"])
            if n % 50 == 0:
                failures.append({"itemIdentifier": record["messageId"]})
            else:
                out.write(f"{n}\\n")
    return {"batchItemFailures": failures}
"""


def test_nothing_is_lost_when_the_gateway_is_killed_in_a_stream_of_durable_events(fast_platform, tmp_path):
    """Every event stored in the stream is processed at least once, or its dead letter is stored: count them. The
    batch holding one event is in its handler when the gateway dies: it must be delivered again."""
    total, held = 2000, 501

    async def create_stream() -> None:
        nc = await fast_platform.nats()
        await nc.jetstream().add_stream(name="ORDERS", subjects=["orders.>"])
        await nc.close()

    asyncio.run(create_stream())
    project = tmp_path / "batcher"
    project.mkdir()
    (project / "handler.py").write_text(BATCH_SINK)
    out = report_file(fast_platform, "batcher")
    trigger = {"stream": "ORDERS", "batch": 20, "window_ms": 20, "max_in_flight": 4, "max_deliver": 2, "backoff": 0.1}
    spec = {"env": {"OUT": str(out), "HELD": str(held)}, "triggers": [{"jetstream": trigger}], "scale": {"max": 4}}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"batcher": spec}}))
    deployed = fast_platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr

    async def publish() -> None:
        nc = await fast_platform.nats()
        js = nc.jetstream()
        for n in range(total):
            await js.publish("orders.new", str(n).encode())  # returns once stored
            if n % 20 == 0:
                await asyncio.sleep(0.02)  # a stream over time, not one burst
        await nc.close()

    publisher = threading.Thread(target=asyncio.run, args=(publish(),))
    publisher.start()
    wait_for(lambda: held in began(out), 30, f"the batch holding event {held} to begin")
    restart_gateway(fast_platform)  # batches in flight are lost with it, and redelivered after ack_wait
    release(out)
    publisher.join(60)

    to_fail = {n for n in range(total) if n % 50 == 0}
    to_run = set(range(total)) - to_fail
    wait_for(
        lambda: to_run <= set(processed(out)) and len(dead_letters(fast_platform)) >= len(to_fail),
        60,
        "every event to be processed or dead-lettered",
        interval=0.5,
    )
    letters = dead_letters(fast_platform)
    assert {int(letter.data) for letter in letters} == to_fail
    assert all(letter.headers["Fx-Error"] == "BatchItemFailure" for letter in letters)
    runs = processed(out)
    assert set(runs) == to_run
    wait_for(lambda: began(out).count(held) >= 2, 30, f"event {held}, interrupted by the kill, delivered again")
    print(f"\n{total} events: ran {len(runs)} ({len(runs) - len(set(runs))} twice), dead-lettered {len(letters)}")


# Records each KV change it is told about.
def test_a_kv_change_invokes_the_function_and_a_missing_bucket_is_refused_at_deploy(platform, tmp_path):
    project = tmp_path / "welcome"
    project.mkdir()
    (project / "handler.py").write_text(KV_LISTENER)
    out = report_file(platform, "welcome")
    spec = {"env": {"OUT": str(out)}, "triggers": [{"kv": {"bucket": "users", "keys": "eu.*"}}]}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"welcome": spec}}))
    refused = platform.fx("deploy", cwd=project)
    assert refused.returncode == 2 and "KV bucket 'users' does not exist" in refused.stderr

    async def create_bucket() -> None:
        nc = await platform.nats()
        await nc.jetstream().create_key_value(bucket="users")
        await nc.close()

    async def consumers() -> int:
        nc = await platform.nats()
        found = len(await nc.jetstream().consumers_info("KV_users"))
        await nc.close()
        return found

    async def change() -> None:
        nc = await platform.nats()
        kv = await nc.jetstream().key_value("users")
        await kv.put("eu.ann", b"Ann")
        await kv.put("us.bob", b"Bob")
        await kv.delete("eu.ann")
        await nc.close()

    asyncio.run(create_bucket())
    assert platform.fx("deploy", cwd=project).returncode == 0
    # Only changes after the trigger started count: wait for the gateway's consumer.
    wait_for(lambda: asyncio.run(consumers()), 10, "the trigger's consumer")
    asyncio.run(change())
    wait_for(lambda: out.exists() and out.read_text() == "eu.ann PUT Ann\neu.ann DEL -\n", 15, "both changes")


# Appends each scheduled event's time to $OUT.
TICKER = """\
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        out.write(f"{event['detail-type']} {event['source']} {event['time']}\\n")
"""


def test_a_schedule_invokes_the_function_at_each_tick_and_a_bad_one_is_refused(platform, tmp_path):
    project = tmp_path / "ticker"
    project.mkdir()
    (project / "handler.py").write_text(TICKER)
    out = report_file(platform, "ticker")
    spec = {"env": {"OUT": str(out)}, "triggers": [{"schedule": "cron(* * * * * *)"}]}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"ticker": spec}}))
    refused = platform.fx("deploy", cwd=project)
    assert refused.returncode == 2 and "exactly one of day-of-month and day-of-week must be '?'" in refused.stderr

    spec["triggers"] = [{"schedule": "* * * * * *"}]  # every second: Unix cron with a seconds field
    (project / "fx.yaml").write_text(json.dumps({"functions": {"ticker": spec}}))
    assert platform.fx("deploy", cwd=project).returncode == 0
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 3, 20, "three ticks")
    assert platform.fx("rm", "ticker").returncode == 0
    lines = out.read_text().splitlines()
    assert all(line.startswith("Scheduled Event fx.schedule ") and line.endswith("Z") for line in lines)
    assert len(set(lines)) == len(lines)  # each tick once
    time.sleep(2)
    assert len(out.read_text().splitlines()) <= len(lines) + 1  # removed: at most the tick under way still ran
