"""The readiness gate through the CLI on the real platform: a version takes traffic only once a replica of it
has initialised; a broken one is marked Failed, `fx deploy` exits 1 with its error, and the traffic stays."""

import json

import httpx
import pytest

from tests.integration.helpers import wait_until

GOOD = "return {'statusCode': 200, 'body': 'v1'}"

BROKEN = {  # what breaks the init -> (handler, imports, what the output must show)
    "syntax": ("handler.handler", "def oops(:\n    pass", ["Runtime.UserCodeSyntaxError", "Traceback", "def oops(:"]),
    "missing-handler": ("handler.missing", "", ["Runtime.HandlerNotFound", "Handler 'missing' missing"]),
    "missing-module": ("handler.handler", "import module_that_is_not_there", ["Runtime.ImportModuleError"]),
    "raises": ("handler.handler", "raise RuntimeError('no config')", ["RuntimeError: no config", "Traceback"]),
    "exits": ("handler.handler", "import os\nos._exit(3)", ["Runtime.ExitError", "code 3"]),
}


def versions(platform, name: str) -> list[dict]:
    return json.loads(platform.fx("versions", name, "-o", "json").stdout)


def call(platform, name: str) -> httpx.Response:
    return httpx.get(f"{platform.gateway_url}/function/{name}", timeout=30)


def test_a_version_that_cannot_initialise_never_takes_traffic(platform, make_function):
    project = make_function("app", body=GOOD)
    first = platform.fx("deploy", cwd=project)
    assert first.returncode == 0, first.stderr
    assert "app: version 1 deployed" in first.stdout
    assert "waiting for version 1 to initialise" in first.stderr
    assert call(platform, "app").text == "v1"

    for number, (case, (handler, imports, shown)) in enumerate(BROKEN.items(), start=2):
        make_function("app", body="return 'never'", imports=imports, config={"handler": handler})
        result = platform.fx("deploy", cwd=project)
        out = result.stdout + result.stderr
        assert result.returncode == 1, (case, out)
        assert f"app: version {number} failed to initialise" in result.stderr, (case, out)
        for text in shown:
            assert text in result.stderr, (case, text, out)
        assert "traffic stayed on version 1 (100 %)" in result.stderr, (case, out)
        assert "deployed" not in out, (case, out)
        assert call(platform, "app").text == "v1", case  # still answered, by version 1

        version = versions(platform, "app")[-1]
        assert (version["version"], version["state"], version["traffic"]) == (number, "Failed", 0), case
        assert version["init_error"]["error_type"] == shown[0].split(":")[0], case

    table = platform.fx("versions", "app").stdout
    assert table.count("Failed") == len(BROKEN)
    assert "version 2 failed to initialise: Runtime.UserCodeSyntaxError" in table
    assert json.loads(platform.fx("describe", "app", "-o", "json").stdout)["traffic"] == {"1": 100}


def test_the_first_version_failing_leaves_a_failed_function_that_answers_its_error(platform, make_function):
    project = make_function("lonely", body=GOOD, imports="import module_that_is_not_there")
    result = platform.fx("deploy", cwd=project)
    assert result.returncode == 1
    assert "Runtime.ImportModuleError" in result.stderr and "no version serves it" in result.stderr
    [fn] = json.loads(platform.fx("ls", "-o", "json").stdout)
    assert fn["status"].startswith("Failed: Runtime.ImportModuleError")
    r = call(platform, "lonely")  # answered at once, never held
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "Runtime.ImportModuleError"
    assert "version 1 failed to initialise" in r.json()["error"]["message"]
    invoked = platform.fx("invoke", "lonely")
    assert invoked.returncode == 1 and "Runtime.ImportModuleError" in invoked.stderr

    make_function("lonely", body=GOOD)  # fixed: version 2 takes the traffic once ready
    fixed = platform.fx("deploy", cwd=project)
    assert fixed.returncode == 0, fixed.stderr
    assert "lonely: version 2 deployed" in fixed.stdout
    assert call(platform, "lonely").text == "v1"


@pytest.mark.parametrize("flags", [["--no-wait"], ["--no-traffic"]])
def test_no_wait_and_no_traffic_deploys_are_gated_too(platform, make_function, flags):
    project = make_function("gated", body=GOOD)
    assert platform.fx("deploy", cwd=project).returncode == 0
    make_function("gated", body=GOOD, imports="def oops(:\n    pass")
    result = platform.fx("deploy", *flags, cwd=project)
    if flags == ["--no-wait"]:
        assert result.returncode == 0, result.stderr
        assert "gated: version 2 created" in result.stdout and "initialising" in result.stdout
    else:
        assert result.returncode == 1 and "Runtime.UserCodeSyntaxError" in result.stderr
    wait_until(lambda: versions(platform, "gated")[-1]["state"] == "Failed", 30, "version 2 marked Failed")
    assert [v["traffic"] for v in versions(platform, "gated")] == [100, 0]
    assert call(platform, "gated").text == "v1"


def test_a_deploy_that_does_not_wait_gets_its_traffic_once_ready(platform, make_function):
    project = make_function("later", body=GOOD)
    assert platform.fx("deploy", cwd=project).returncode == 0
    make_function("later", body="return {'statusCode': 200, 'body': 'v2'}")
    assert platform.fx("deploy", "--no-wait", cwd=project).returncode == 0
    wait_until(lambda: versions(platform, "later")[-1]["state"] == "Ready", 30, "version 2 Ready")
    assert [v["traffic"] for v in versions(platform, "later")] == [0, 100]
    assert call(platform, "later").text == "v2"


def test_rollback_onto_a_failed_version_is_refused_unless_forced(platform, make_function):
    project = make_function("back", body=GOOD, imports="import module_that_is_not_there")
    assert platform.fx("deploy", cwd=project).returncode == 1  # version 1 Failed, with all the traffic
    make_function("back", body=GOOD)
    assert platform.fx("deploy", cwd=project).returncode == 0  # version 2 takes it over

    refused = platform.fx("rollback", "back")
    assert refused.returncode == 2
    assert "version 1" in refused.stderr and "failed to initialise" in refused.stderr
    assert "Runtime.ImportModuleError" in refused.stderr and "--force" in refused.stderr
    assert json.loads(platform.fx("describe", "back", "-o", "json").stdout)["traffic"] == {"2": 100}
    assert call(platform, "back").text == "v1"
    promoted = platform.fx("promote", "back", "1")  # nor can a traffic change give it any
    assert promoted.returncode == 2 and "version 1 of 'back' failed to initialise" in promoted.stderr

    forced = platform.fx("rollback", "back", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "traffic v1:100%" in forced.stdout
    assert call(platform, "back").status_code == 502


def test_deploying_the_code_of_a_version_without_traffic_says_what_is_live(platform, make_function):
    project = make_function("undo", body=GOOD)
    assert platform.fx("deploy", cwd=project).returncode == 0
    make_function("undo", body="return {'statusCode': 200, 'body': 'v2'}")
    assert platform.fx("deploy", cwd=project).returncode == 0
    assert platform.fx("rollback", "undo").returncode == 0

    again = platform.fx("deploy", cwd=project)  # version 2's code, which the rollback took the traffic from
    assert again.returncode == 0, again.stderr
    line = again.stdout.strip()
    assert line.startswith("undo: unchanged, still version 2;"), line
    assert "version 1 has 100 % of traffic; version 2 (this code) has none" in line
    assert "`fx promote undo 2`" in line
    assert call(platform, "undo").text == "v1"


@pytest.fixture
def short_init(monkeypatch) -> float:
    monkeypatch.setenv("FX_INIT_TIMEOUT", "2")  # the controller's --init-timeout, read when the platform starts
    return 2.0


def test_a_version_not_ready_within_the_init_timeout_is_failed(short_init, platform, make_function):
    project = make_function("slow", body=GOOD)
    assert platform.fx("deploy", cwd=project).returncode == 0
    make_function("slow", body=GOOD, imports="import time\ntime.sleep(60)")
    result = platform.fx("deploy", cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "slow: version 2 failed to initialise: Runtime.InitTimeout" in result.stderr
    assert "not ready within 2 s" in result.stderr and "traffic stayed on version 1 (100 %)" in result.stderr
    assert call(platform, "slow").text == "v1"
