"""What `fx deploy` says about each version, and its wait for the readiness gate (against a scripted API)."""

from datetime import UTC, datetime

import httpx
from fx import deploy
from fx.client import Client
from fx.models import DeployResult, FunctionInfo, FunctionSpec, InitError, VersionInfo

DIGEST = "sha256:" + "a" * 64


def result(**fields) -> DeployResult:
    base = {"function": "hello", "version": 2, "created": True, "digest": DIGEST, "message": "", "state": "Ready"}
    return DeployResult(**(base | fields))


def test_a_live_version_is_deployed_and_one_without_traffic_says_how_to_make_it_live():
    assert deploy.describe_result(result(traffic={2: 100})) == "hello: version 2 deployed (sha256:aaaaaaaaaaaa…)"
    line = deploy.describe_result(result(traffic={1: 100}))
    assert line.startswith("hello: version 2 deployed") and "`fx promote hello 2`" in line


def test_a_failed_version_shows_its_error_its_traceback_and_where_the_traffic_stayed():
    error = InitError(
        error_type="Runtime.UserCodeSyntaxError",
        message="Syntax error in module 'handler'",
        stack_trace=['  File "/var/task/handler.py" Line 1\n    def oops(:\n'],
    )
    text = deploy.describe_result(result(state="Failed", init_error=error, traffic={1: 90, 3: 10}))
    assert text.splitlines() == [
        "hello: version 2 failed to initialise: Runtime.UserCodeSyntaxError: Syntax error in module 'handler'",
        "Traceback (most recent call last):",
        '  File "/var/task/handler.py" Line 1',
        "    def oops(:",
        "hello: traffic stayed on version 1 (90 %), version 3 (10 %)",
    ]
    first = deploy.describe_result(result(version=1, state="Failed", init_error=error, traffic={1: 100}))
    assert first.endswith("hello: no version serves it: deploy a fixed version")


def test_a_version_still_initialising_says_so_whether_it_was_created_or_not():
    created = deploy.describe_result(result(state="Pending"))
    assert created == "hello: version 2 created (sha256:aaaaaaaaaaaa…), initialising: see `fx versions hello`"
    again = deploy.describe_result(result(state="Pending", created=False))
    assert again == "hello: unchanged, still version 2, initialising: see `fx versions hello`"


def test_unchanged_code_without_traffic_says_what_is_live_and_the_command_that_makes_it_live():
    line = deploy.describe_result(result(created=False, traffic={3: 100}))
    assert line == (
        "hello: unchanged, still version 2; version 3 has 100 % of traffic; version 2 (this code) has none."
        " Make it live with `fx promote hello 2`"
    )
    assert deploy.describe_result(result(created=False, traffic={2: 100})) == "hello: unchanged, still version 2"


def test_wait_polls_until_the_gate_settles_and_brings_back_the_split():
    states = iter(["Pending", "Pending", "Ready"])

    def answer(request: httpx.Request) -> httpx.Response:
        state = next(states)
        traffic = {2: 100} if state == "Ready" else {1: 100}
        spec = FunctionSpec(name="hello", artifact=DIGEST)
        version = VersionInfo(version=2, digest=DIGEST, created_at=datetime.now(UTC), spec=spec, state=state)
        info = FunctionInfo(name="hello", latest=2, traffic=traffic, versions=[version])
        return httpx.Response(200, content=info.model_dump_json())

    client = Client("http://fx.test", "t", transport=httpx.MockTransport(answer))
    notes: list[str] = []
    [done] = deploy.wait(client, [result(state="Pending", traffic={1: 100})], timeout=30, progress=notes.append)
    assert (done.state, done.traffic) == ("Ready", {2: 100})
    assert notes == ["hello: waiting for version 2 to initialise"]
