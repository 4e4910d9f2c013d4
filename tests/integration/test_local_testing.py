"""`fx local invoke` against the real platform: for each kind of event, the event the platform delivers is the one
`fx event generate` makes (only the request's own ids and times differ), and the handler run locally with that
event answers what the platform's replica answers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import RunningPlatform
from tests.waiting import wait_for

# Answers what it saw: the event, its context and environment, so local and platform answers can be compared.
ECHO = """\
import json
import os


def handler(event, context):
    print("EVENT " + json.dumps(event, sort_keys=True))
    seen = {
        "event": event,
        "function": context.function_name,
        "memory": context.memory_limit_in_mb,
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "greeting": os.environ.get("GREETING"),
        "region": os.environ["AWS_REGION"],
        "task_root": os.environ["LAMBDA_TASK_ROOT"] == os.getcwd(),
    }
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(seen)}
"""
# What differs per request by design: its id and its time.
VOLATILE = {"requestId", "extendedRequestId", "time", "timeEpoch", "requestTime", "requestTimeEpoch"}
SCHEDULE = "*/3 * * * * *"  # every 3 s (a leading seconds field)
SAME_HEADERS = {"host": "localhost", "user-agent": "fx-local", "accept": "*/*", "accept-encoding": "identity"}


def project(tmp_path: Path, functions: dict) -> Path:
    root = tmp_path / "echo"
    root.mkdir(exist_ok=True)
    (root / "handler.py").write_text(ECHO)
    (root / "fx.yaml").write_text(json.dumps({"functions": functions}))
    return root


def steady(event: dict) -> dict:
    """The event without the per-request ids and times, and the gateway's request-id header."""
    context = {k: v for k, v in event.get("requestContext", {}).items() if k not in VOLATILE}
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k != "x-fx-request-id"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "x-fx-request-id"}
    out = {**event, "requestContext": context, "headers": headers}
    if "multiValueHeaders" in event:
        out["multiValueHeaders"] = multi
    return out


def local(platform: RunningPlatform, root: Path, name: str, event: dict):
    done = platform.fx("local", "invoke", name, "--data", json.dumps(event), cwd=root)
    assert done.returncode == 0, done.stderr
    assert "START RequestId:" in done.stderr and "REPORT RequestId:" in done.stderr  # the log, as the platform's
    return json.loads(done.stdout)


def same_answer(here: dict, there: dict) -> bool:
    """Equal, the version too: a local run is $LATEST, as `sam local` is, and so is an unqualified call of the
    platform's newest version, as on Lambda."""
    assert here["version"] == there["version"] == "$LATEST"
    return here == there


def generated(platform: RunningPlatform, *args: str) -> dict:
    done = platform.fx("event", "generate", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(("kind", "http"), [("apigw-v2", "v2"), ("apigw-v1", "v1"), ("alb", "alb")])
def test_http_events_and_answers_match_the_platform(platform: RunningPlatform, tmp_path: Path, kind, http) -> None:
    name = f"echo-{http}"
    root = project(tmp_path, {name: {"handler": "handler.handler", "env": {"GREETING": "hi"}, "http": {"event": http}}})
    assert platform.fx("deploy", cwd=root).returncode == 0
    answer = httpx.post(
        f"{platform.gateway_url}/function/{name}/orders/7?n=1&tag=a",
        content=b'{"id": 7}',
        headers={**SAME_HEADERS, "content-type": "application/json", "x-user": "ann"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    on_platform = answer.json()

    headers = [f"--header={k}:{v}" for k, v in {**SAME_HEADERS, "x-user": "ann"}.items()]
    sample = generated(platform, kind, "--function", name, "--method", "POST", "--path", "/orders/7",
                       "--query", "n=1&tag=a", "--body", '{"id": 7}', *headers)  # fmt: skip
    assert steady(sample) == steady(on_platform["event"])

    result = local(platform, root, name, on_platform["event"])
    assert same_answer(json.loads(result["body"]), on_platform)


def test_trigger_events_and_answers_match_the_platform(platform: RunningPlatform, tmp_path: Path) -> None:
    assert platform.fx("stream", "create", "ECHO", "echo-js.>").returncode == 0
    assert platform.fx("kv", "create", "echo").returncode == 0
    triggers = [
        {"nats": "echo.*"},
        {"jetstream": {"stream": "ECHO"}},
        {"kv": {"bucket": "echo"}},
        {"schedule": SCHEDULE},
    ]
    root = project(tmp_path, {"echo": {"handler": "handler.handler", "env": {"GREETING": "hi"}, "triggers": triggers}})
    assert platform.fx("deploy", cwd=root).returncode == 0

    def delivered(source: str) -> dict | None:
        for line in platform.fx("logs", "echo", "--tail", "1000").stdout.splitlines():
            if line.startswith("EVENT ") and json.loads(line[6:]).get(source[0]) == source[1]:
                return json.loads(line[6:])
        return None

    wait_for(lambda: platform.fx("kv", "ls", "-o", "json").stdout.count('"consumers": 1') >= 1, 30, "the kv consumer")
    assert platform.fx("publish", "echo.eu", '{"id": 7}').returncode == 0
    assert platform.fx("publish", "echo-js.new", '{"id": 8}').returncode == 0
    assert platform.fx("kv", "put", "echo", "eu.ann", '{"name": "Ann"}').returncode == 0
    events = {
        source: wait_for(lambda s=source: delivered(s), 30, f"the {source[1]} event")
        for source in [
            ("eventSource", "fx:nats"),
            ("eventSource", "fx:jetstream"),
            ("eventSource", "fx:kv"),
            ("source", "fx.schedule"),
        ]
    }
    nats_event, js_event, kv_event, tick = events.values()
    assert nats_event == generated(
        platform, "nats", "--subject", "echo.eu", "--trigger", "echo.*", "--data", '{"id": 7}'
    )
    record = js_event["Records"][0]
    assert js_event == generated(
        platform, "jetstream", "--stream", "ECHO", "--subject", "echo-js.new", "--data", '{"id": 8}',
        "--sequence", record["messageId"], "--time", record["timestamp"], "--header", "Nats-Expected-Stream:ECHO",
    )  # fmt: skip
    change = kv_event["Records"][0]
    assert kv_event == generated(
        platform, "kv", "--bucket", "echo", "--key", "eu.ann", "--data", '{"name": "Ann"}',
        "--sequence", change["messageId"], "--time", change["timestamp"],
    )  # fmt: skip
    assert tick == generated(platform, "schedule", "--function", "echo", "--schedule", SCHEDULE, "--time", tick["time"])

    for event in events.values():  # the same event gives the same answer locally and on the platform
        invoked = platform.fx("invoke", "echo", "--data", json.dumps(event), "-o", "json")
        assert invoked.returncode == 0, invoked.stderr
        here, there = local(platform, root, "echo", event), json.loads(invoked.stdout)
        assert here["statusCode"] == there["statusCode"] == 200
        assert same_answer(json.loads(here["body"]), json.loads(there["body"]))


def test_a_handler_that_fails_fails_alike(platform: RunningPlatform, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    root.mkdir()
    (root / "handler.py").write_text("def handler(event, context):\n    raise KeyError('order')\n")
    (root / "fx.yaml").write_text("functions:\n  broken:\n    handler: handler.handler\n")
    assert platform.fx("deploy", cwd=root).returncode == 0
    remote, here = platform.fx("invoke", "broken"), platform.fx("local", "invoke", cwd=root)
    assert remote.returncode == here.returncode == 1
    shape = json.loads(here.stderr[here.stderr.rindex("\n{") :])
    assert shape["errorType"] == "KeyError" and json.loads(remote.stderr)["errorType"] == "KeyError"

    (root / "handler.py").write_text("import not_installed\n")
    here = platform.fx("local", "invoke", cwd=root)
    assert here.returncode == 1
    shape = json.loads(here.stderr[here.stderr.rindex("\n{") :])  # after the function's log, as Lambda shows it
    assert shape["errorType"] == "Runtime.ImportModuleError" and "not_installed" in shape["errorMessage"]
    assert "fx/cli" not in here.stderr  # no traceback of fx itself
