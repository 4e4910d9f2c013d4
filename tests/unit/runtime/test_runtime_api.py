"""The Lambda Runtime API: a replica with FX_BOOTSTRAP relays invocations through a runtime client it starts."""

import base64
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.waiting import wait_for

# A minimal custom runtime, written from the Runtime API reference: what any `bootstrap` does.
BOOTSTRAP = """
import http.client, json, os, sys, time

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
api = http.client.HTTPConnection(host, int(port))

def call(method, path, body=None, headers=None):
    api.request(method, "/2018-06-01/runtime/" + path, body=body, headers=headers or {})
    r = api.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()

print("bootstrap starting", flush=True)
if os.environ.get("MODE") == "init-error":
    error = {"errorMessage": "no config", "errorType": "Custom.ConfigError", "stackTrace": []}
    status, _, _ = call("POST", "init/error", json.dumps(error), {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
    print("init/error answered", status, flush=True)
    sys.exit(1)
if os.environ.get("MODE") == "exit":
    sys.exit(7)
while True:
    status, headers, body = call("GET", "invocation/next")
    rid = headers["lambda-runtime-aws-request-id"]
    event = json.loads(body)
    if "rawPath" in event:  # an HTTP trigger's event: the action is in the request body
        event = {**json.loads(event.get("body") or "{}"), "rawPath": event["rawPath"]}
    action = event.get("action")
    print("handling", rid, flush=True)
    if action == "fail":
        error = {"errorMessage": "it failed", "errorType": "ValueError", "stackTrace": ["  File x"]}
        call("POST", f"invocation/{rid}/error", json.dumps(error), {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
        continue
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "exit":
        sys.exit(3)
    if action == "wrong-id":
        bad, _, answer = call("POST", "invocation/not-the-id/response", b"{}")
        call("POST", f"invocation/{rid}/response", json.dumps({"status": bad, "answer": json.loads(answer)}))
        continue
    if action == "http":
        result = {"statusCode": 201, "headers": {"x-seen": event["rawPath"]}, "cookies": ["a=1", "b=2"], "body": "made"}
        call("POST", f"invocation/{rid}/response", json.dumps(result))
        continue
    env = {k: os.environ.get(k) for k in ("AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "_HANDLER", "AWS_REGION")}
    call("POST", f"invocation/{rid}/response", json.dumps({"event": event, "headers": headers, "env": env}))
"""


@pytest.fixture
def start_bootstrap(start):
    def _start(wait: bool = True, **env: str):
        return start({"bootstrap.py": BOOTSTRAP}, wait=wait, FX_BOOTSTRAP="python3 bootstrap.py", **env)

    return _start


def test_invocations_reach_the_runtime_client_with_lambdas_headers(start_bootstrap):
    replica = start_bootstrap(FX_TIMEOUT_MS="5000")
    context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    r = httpx.post(
        f"{replica.base}/_fx/invoke",
        json={"n": 1},
        headers={"X-Fx-Request-Id": "req-1", "X-Amz-Client-Context": context},
    )
    assert r.status_code == 200 and "X-Amz-Function-Error" not in r.headers
    assert next(iter(r.headers.raw))[0].lower() == b"x-fx-report"  # the gateway's billing, first as always
    seen = r.json()
    assert seen["event"] == {"n": 1}
    headers = seen["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["lambda-runtime-aws-request-id"] == "req-1"
    assert headers["lambda-runtime-invoked-function-arn"] == "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert 4000 < int(headers["lambda-runtime-deadline-ms"]) - time.time() * 1000 <= 5000
    assert headers["lambda-runtime-trace-id"].startswith("Root=1-")
    assert json.loads(headers["lambda-runtime-client-context"]) == {"custom": {"k": "v"}}
    env = seen["env"]
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:") and env["AWS_REGION"] == "us-east-1"
    assert env["LAMBDA_TASK_ROOT"] == os.getcwd() or env["LAMBDA_TASK_ROOT"].endswith("code")

    # Many invocations, one bootstrap: it keeps its state (here: the same process) between them.
    for n in range(5):
        assert httpx.post(f"{replica.base}/_fx/invoke", json={"n": n}).json()["event"] == {"n": n}
    log = replica.log_text("handling req-1")
    assert log.count("bootstrap starting") == 1
    assert "START RequestId: req-1 Version: 3" in log and "REPORT RequestId: req-1" in log
    assert log.index("START RequestId: req-1") < log.index("handling req-1") < log.index("END RequestId: req-1")
    assert "Init Duration" in log.split("REPORT RequestId: req-1")[1].splitlines()[0]


def test_errors_posted_by_the_runtime_are_lambdas_error_shape(start_bootstrap):
    replica = start_bootstrap()
    r = httpx.post(f"{replica.base}/_fx/invoke", json={"action": "fail"}, headers={"X-Fx-Request-Id": "r-9"})
    assert r.status_code == 200 and r.headers["X-Amz-Function-Error"] == "Unhandled"
    assert r.json() == {
        "errorMessage": "it failed",
        "errorType": "ValueError",
        "requestId": "r-9",
        "stackTrace": ["  File x"],
    }
    # Through the HTTP trigger a function error is a 502 with a JSON body.
    http = httpx.post(f"{replica.base}/_fx/http/x", json={"action": "fail"})
    assert http.status_code == 502 and http.json() == {"message": "Internal Server Error"}


def test_a_result_for_an_unknown_request_id_is_refused(start_bootstrap):
    replica = start_bootstrap()
    r = httpx.post(f"{replica.base}/_fx/invoke", json={"action": "wrong-id"})
    assert r.json()["status"] == 400 and r.json()["answer"]["errorType"] == "InvalidRequestID"


def test_http_trigger_events_and_answers_go_through_the_runtime(start_bootstrap):
    replica = start_bootstrap()
    r = httpx.post(f"{replica.base}/_fx/http/shop/cart?x=1", json={"action": "http"})
    assert r.status_code == 201 and r.text == "made"
    assert r.headers["x-seen"] == "/shop/cart"
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_init_error_posted_by_the_runtime_fails_the_replica(start_bootstrap):
    replica = start_bootstrap(wait=False, MODE="init-error")
    assert replica.wait_exit() == 1
    log = replica.log_text("init/error answered")
    assert "[ERROR] Custom.ConfigError: no config" in log
    assert "Status: error\tError Type: Custom.ConfigError" in log
    assert "init/error answered 202" in log


def test_a_runtime_exiting_before_it_asks_for_work_is_an_init_error(start_bootstrap):
    replica = start_bootstrap(wait=False, MODE="exit")
    assert replica.wait_exit() == 1
    assert "Runtime.ExitError: Runtime exited with error: exit status 7" in replica.log_text("ExitError")


def test_a_missing_bootstrap_is_an_init_error(start):
    replica = start({"handler.py": ""}, wait=False, FX_BOOTSTRAP="./bootstrap")
    assert replica.wait_exit() == 1
    assert "Runtime.InvalidEntrypoint" in replica.log_text("InvalidEntrypoint")


def test_a_runtime_exiting_mid_invocation_fails_it_and_resets_the_replica(start_bootstrap):
    replica = start_bootstrap()
    r = httpx.post(f"{replica.base}/_fx/invoke", json={"action": "exit"})
    assert r.headers["X-Amz-Function-Error"] == "Unhandled" and r.json()["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in r.json()["errorMessage"]
    assert replica.wait_exit() == 3


def test_timeout_answers_lambdas_error_and_kills_the_runtime(start_bootstrap):
    replica = start_bootstrap(FX_TIMEOUT_MS="500")
    started = time.monotonic()
    r = httpx.post(f"{replica.base}/_fx/invoke", json={"action": "sleep", "seconds": 30}, timeout=10)
    assert time.monotonic() - started < 3
    assert r.json()["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 0.50 seconds" in r.json()["errorMessage"]
    assert replica.wait_exit() == 124
    log = replica.log_text("Status: timeout")
    assert "Status: timeout" in log
    # The bootstrap went with it: nothing still has the replica's log open.
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    holders = []
    for pid in pids:
        try:
            if os.readlink(f"/proc/{pid}/fd/1") == str(replica.log):
                holders.append(pid)
        except OSError:
            continue
    assert holders == []


def accepts(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def test_a_runtime_client_started_elsewhere_is_served_on_a_fixed_address(start, tmp_path):
    """FX_RUNTIME_API without a bootstrap: e.g. an unmodified Lambda image in a container beside the runtime."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api = f"127.0.0.1:{s.getsockname()[1]}"
    replica = start({"handler.py": ""}, wait=False, FX_RUNTIME_API=api)
    script = tmp_path / "client.py"
    script.write_text(BOOTSTRAP)
    # Up and serving the Runtime API, yet not ready: it becomes ready only when a runtime client asks for work.
    wait_for(lambda: accepts(api), 10, "the Runtime API listening")
    assert "fx-runtime ready" not in replica.log_text() and replica.proc.poll() is None
    client = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "AWS_LAMBDA_RUNTIME_API": api})
    try:
        replica.wait_ready()
        assert httpx.post(f"{replica.base}/_fx/invoke", json={"n": 3}).json()["event"] == {"n": 3}
    finally:
        client.kill()
        client.wait(5)


def test_a_relaying_replica_checks_the_replica_token_too(start_bootstrap):
    replica = start_bootstrap(FX_REPLICA_TOKEN="t" * 64)
    assert httpx.post(f"{replica.base}/_fx/invoke", content=b"{}").status_code == 403
    answer = httpx.post(f"{replica.base}/_fx/invoke", content=b"{}", headers={"X-Fx-Replica-Token": "t" * 64})
    assert answer.status_code == 200
