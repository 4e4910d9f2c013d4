"""Invoke as Lambda does it, driven with boto3 against the real platform: errors botocore classifies, ARNs and
versions per qualifier, request ids, the environment a function sees, custom runtimes, HTTP-route timeouts."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest
import yaml

from tests.waiting import wait_for

from .conftest import RunningPlatform, platform_in
from .helpers import lambda_client, report_file

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
FUNCTIONS = Path(__file__).parent / "functions"

# Lambda's documented environment of a Python function (docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html,
# "Defined runtime environment variables"): what a function may find beside its own variables. The credentials,
# X-Ray daemon and log-format variables are among them; fx sets no credentials and runs no X-Ray daemon.
LAMBDA_ENV = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "LANG",
    "PATH",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "TZ",
    "AWS_XRAY_CONTEXT_MISSING",
    "AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_ADDRESS",
    "_AWS_XRAY_DAEMON_PORT",
    "AWS_LAMBDA_LOG_FORMAT",
    "AWS_LAMBDA_LOG_LEVEL",
}

# A custom runtime (`runtime: provided`) with the standard library only: its bootstrap polls the Runtime API as
# awslambdaric does, prints to stdout (its log), sleeps when asked.
BOOTSTRAP = """\
#!/usr/bin/env python3
import json, os, time, urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        arn = r.headers["Lambda-Runtime-Invoked-Function-Arn"]
        event = json.loads(r.read())
    print(f"custom runtime got {event}", flush=True)
    time.sleep(event.get("sleep", 0))
    answer = json.dumps({"request_id": request_id, "arn": arn}).encode()
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", answer, method="POST")).read()
"""


def deploy(platform: RunningPlatform, project: Path) -> None:
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr


def invoke(client, name: str, payload: object = None, **kwargs) -> tuple[dict, object]:
    """(boto3's answer, the decoded payload)."""
    answer = client.invoke(FunctionName=name, Payload=json.dumps(payload or {}), **kwargs)
    return answer, json.loads(answer["Payload"].read())


def test_the_invoke_apis_errors_are_botocores_modeled_exceptions(platform, make_function):
    deploy(platform, make_function("picky", "return event"))
    client = lambda_client(platform)
    errors = client.exceptions

    with pytest.raises(errors.ResourceNotFoundException, match="function 'nope' not found"):
        client.invoke(FunctionName="nope", Payload=b"{}")
    with pytest.raises(errors.ResourceNotFoundException, match="no version or alias '7'"):
        client.invoke(FunctionName="picky", Qualifier="7", Payload=b"{}")
    with pytest.raises(errors.ResourceNotFoundException):
        client.invoke(FunctionName=f"{ARN}picky:nosuchalias", Payload=b"{}")
    with pytest.raises(errors.InvalidRequestContentException, match="Could not parse request body into json"):
        client.invoke(FunctionName="picky", Payload=b"this is not json")
    with pytest.raises(errors.InvalidRequestContentException):  # refused before it is queued, as on Lambda
        client.invoke(FunctionName="picky", InvocationType="Event", Payload=b"{not json")
    with pytest.raises(errors.RequestTooLargeException) as too_large:
        client.invoke(FunctionName="picky", Payload=json.dumps({"x": "y" * (7 << 20)}))
    assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    # The fx SDK and CLI still read fx's own error in the same answer.
    missing = platform.fx("invoke", "nope")
    assert missing.returncode == 2 and "FunctionNotFound" in missing.stderr
    _, payload = invoke(client, "picky", {"still": "works"})
    assert payload == {"still": "works"}


@pytest.fixture
def unqueued_platform(tmp_path: Path, monkeypatch) -> Iterator[RunningPlatform]:
    """A platform whose gateway holds no request for a busy replica (--hold-queue 0)."""
    monkeypatch.setenv("FX_HOLD_QUEUE", "0")
    yield from platform_in(tmp_path)


def test_a_function_with_no_replica_free_and_no_room_to_wait_is_throttled(unqueued_platform, make_function):
    platform = unqueued_platform
    project = make_function(
        "single",
        "import os, time\n    if event.get('hold'): open(os.environ['OUT'], 'w').close(), time.sleep(3)\n    return 1",
        config={"scale": {"min": 1, "max": 1, "concurrency": 1}, "env": {"OUT": str(report_file(platform, "single"))}},
    )
    deploy(platform, project)
    client = lambda_client(platform)
    wait_for(lambda: _ok(client, "single"), 30, "the one replica to be up")

    marker = report_file(platform, "single")
    busy = threading.Thread(target=client.invoke, kwargs={"FunctionName": "single", "Payload": '{"hold": true}'})
    busy.start()
    try:
        wait_for(marker.exists, 15, "the first call to hold the replica")
        with pytest.raises(client.exceptions.TooManyRequestsException) as throttled:
            client.invoke(FunctionName="single", Payload=b"{}")
        assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert throttled.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"
    finally:
        busy.join(30)


def _ok(client, name: str) -> bool:
    try:
        return client.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    except client.exceptions.TooManyRequestsException:
        return False


def test_arns_versions_and_request_ids_are_lambdas(platform, make_function):
    seen = report_file(platform, "where").parent  # where the function may write
    body = (
        "import os, json\n"
        "    facts = {'arn': context.invoked_function_arn, 'version': context.function_version,\n"
        "             'request_id': context.aws_request_id, 'trace': os.environ.get('_X_AMZN_TRACE_ID')}\n"
        "    path = os.path.join(os.path.dirname(os.environ['OUT']), facts['request_id'])\n"
        "    if event.get('record'):  # whole or not at all: the test reads it as soon as it is there\n"
        "        open(path + '.tmp', 'w').write(json.dumps(facts)), os.rename(path + '.tmp', path)\n"
        "    print('running', context.aws_request_id)\n"
        "    return facts"
    )
    project = make_function("where", body, config={"env": {"OUT": str(report_file(platform, "where"))}})
    deploy(platform, project)  # version 1
    (project / "handler.py").write_text((project / "handler.py").read_text() + "\n# version 2\n")
    deploy(platform, project)  # version 2: the newest, Lambda's $LATEST
    assert platform.fx("alias", "where", "beta", "1").returncode == 0
    client = lambda_client(platform)

    for qualifier, arn_suffix, version in [
        (None, "", "$LATEST"),
        ("$LATEST", ":$LATEST", "$LATEST"),
        ("1", ":1", "1"),
        ("2", ":2", "2"),
        ("beta", ":beta", "1"),
    ]:
        extra = {"Qualifier": qualifier} if qualifier else {}
        answer, facts = invoke(client, "where", LogType="Tail", **extra)
        assert facts["arn"] == f"{ARN}where{arn_suffix}", qualifier
        assert facts["version"] == answer["ExecutedVersion"] == version, qualifier
        request_id = answer["ResponseMetadata"]["RequestId"]
        assert request_id == facts["request_id"], qualifier
        log = base64.b64decode(answer["LogResult"]).decode()
        assert f"START RequestId: {request_id} Version: {version}" in log
        assert f"running {request_id}" in log and f"REPORT RequestId: {request_id}" in log
        assert facts["trace"].startswith("Root=1-")

    # The caller's trace header is the invocation's; an ARN names the function as a name does.
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    traced = httpx.post(
        f"{platform.gateway_url}/2015-03-31/functions/{ARN}where:1/invocations",
        json={},
        headers={"X-Amzn-Trace-Id": trace},
        timeout=30,
    )
    assert traced.json()["trace"] == trace and traced.json()["arn"] == f"{ARN}where:1"
    assert traced.headers["x-amzn-RequestId"] == traced.json()["request_id"]

    # An Event invoke's request id is the one the function sees when the call runs.
    accepted = client.invoke(FunctionName="where", InvocationType="Event", Payload=json.dumps({"record": True}))
    assert accepted["StatusCode"] == 202
    request_id = accepted["ResponseMetadata"]["RequestId"]
    ran = wait_for(lambda: recorded(seen, request_id), 20, "the async call to run")
    assert ran["request_id"] == request_id and ran["version"] == "$LATEST" and ran["arn"] == f"{ARN}where"
    pinned = client.invoke(FunctionName="where", Qualifier="beta", InvocationType="Event", Payload='{"record": 1}')
    request_id = pinned["ResponseMetadata"]["RequestId"]
    ran = wait_for(lambda: recorded(seen, request_id), 20, "the async call pinned to beta to run")
    assert (ran["arn"], ran["version"]) == (f"{ARN}where:beta", "1")


def recorded(folder: Path, request_id: str) -> dict | None:
    """What the function wrote down when it ran with `request_id`, once it did."""
    path = folder / request_id
    return json.loads(path.read_text()) if path.exists() else None


def test_a_function_sees_lambdas_environment_and_its_own_not_fxs(platform, make_function):
    project = make_function(
        "nosy", "import os\n    return dict(os.environ)", config={"env": {"GREETING": "hello", "LEVEL": "3"}}
    )
    deploy(platform, project)
    _, env = invoke(lambda_client(platform), "nosy")
    assert set(env) - LAMBDA_ENV == {"GREETING", "LEVEL"}, sorted(env)
    assert not [name for name in env if name.startswith("FX_")]
    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001"  # Lambda's value; nothing a handler calls is there
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-")


def custom_runtime(tmp_path: Path, name: str, timeout: float) -> Path:
    project = tmp_path / "functions" / name
    project.mkdir(parents=True)
    bootstrap = project / "bootstrap"
    bootstrap.write_text(BOOTSTRAP)
    bootstrap.chmod(bootstrap.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    spec = {"runtime": "provided", "handler": "handler.handler", "timeout": timeout}  # the bootstrap ignores it
    (project / "fx.yaml").write_text(yaml.safe_dump({"functions": {name: spec}}))
    return project


def test_a_custom_runtime_returns_the_log_tail_and_qualified_arns(platform, tmp_path):
    deploy(platform, custom_runtime(tmp_path, "custom", 5))
    client = lambda_client(platform)
    answer, payload = invoke(client, "custom", {"n": 1}, LogType="Tail", Qualifier="1")
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert payload == {"request_id": request_id, "arn": f"{ARN}custom:1"} and answer["ExecutedVersion"] == "1"
    log = base64.b64decode(answer["LogResult"]).decode()
    assert log.startswith(f"START RequestId: {request_id} Version: 1")
    assert "custom runtime got {'n': 1}" in log and log.splitlines()[-1].startswith(f"REPORT RequestId: {request_id}")
    plain, _ = invoke(client, "custom")
    assert plain["ExecutedVersion"] == "$LATEST" and "LogResult" not in plain


ROUNDS = 50
RIC_HANDLER = """\
import os, time


def handler(event, context):
    if event.get("sleep"):
        open(os.environ["OUT"], "a").write(f"{event['n']}\\n")  # the test sends the next call now
        time.sleep(event["sleep"])
    return {"n": event["n"]}
"""


def test_the_invoke_after_a_custom_runtimes_timeout_always_works(platform, tmp_path):
    """awslambdaric, unmodified (tests/integration/functions/awslambdaric_bootstrap), with a 1 s timeout. Each
    round: a call that times out, and one sent while it runs, so the gateway holds it and sends it the moment
    the timeout is answered, to the replica that is dying then. Both ways of reaching a replica that has
    answered a timeout are tried: the held call at once, a new call right after. About 1.5 s a round, so
    about 80 s in all on 2 cores; each call bounded by boto3's read timeout."""
    project = tmp_path / "ric-sleepy"
    shutil.copytree(FUNCTIONS / "awslambdaric_bootstrap", project)
    (project / "handler.py").write_text(RIC_HANDLER)
    out = report_file(platform, "ric-sleepy")
    spec = {
        "runtime": "provided",
        "handler": "handler.handler",
        "timeout": 1,
        "env": {"OUT": str(out)},
        "scale": {"max": 1},
    }
    (project / "fx.yaml").write_text(yaml.safe_dump({"functions": {"ric-sleepy": spec}}))
    deploy(platform, project)
    client = lambda_client(platform, read_timeout=20)
    failures: list[str] = []
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        for n in range(ROUNDS):
            timing_out = pool.submit(invoke, client, "ric-sleepy", {"sleep": 3, "n": n})
            wait_for(partial(began, out, n), 20, f"round {n}'s call to begin")
            failures += failed(client, f"round {n}, the call held behind it", n)
            timed_out, error = timing_out.result(20)
            assert timed_out["FunctionError"] == "Unhandled" and error["errorType"] == "Sandbox.Timedout"
            failures += failed(client, f"round {n}, the call after it", n)
    elapsed = time.monotonic() - started
    assert failures == [], f"{len(failures)} of {2 * ROUNDS} calls after a timeout failed in {elapsed:.0f} s"


def began(out: Path, n: int) -> bool:
    return out.exists() and f"{n}\n" in out.read_text()


def failed(client, what: str, n: int) -> list[str]:
    """[] if invoking with `n` answers `n`, else what went wrong (all are reported at once)."""
    try:
        answer, payload = invoke(client, "ric-sleepy", {"n": n})
    except Exception as exc:
        return [f"{what}: {exc!r}"]
    return [] if answer["StatusCode"] == 200 and payload == {"n": n} else [f"{what}: {answer['StatusCode']} {payload}"]


def test_a_function_timeout_behind_an_http_route_is_502_as_api_gateway_answers(platform, make_function):
    deploy(platform, make_function("sluggish", "import time\n    time.sleep(5)", config={"timeout": 1}))
    r = httpx.get(f"{platform.gateway_url}/function/sluggish/", timeout=30)
    assert (r.status_code, r.json()) == (502, {"message": "Internal Server Error"})
    # The Invoke API reports the same timeout as Lambda does: a function error.
    answer, error = invoke(lambda_client(platform), "sluggish")
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Sandbox.Timedout"
