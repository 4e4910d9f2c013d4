"""The embedded platform as a new user meets it: init, deploy, call, inspect, remove.

Everything here is real: nats-server, the controller with its local backend and zygote,
the gateway, replicas running fx_runtime, and the `fx` CLI as a subprocess.
"""

import json

import httpx

from tests.wheels import make_wheel


def test_init_deploy_call_and_remove(platform, tmp_path):
    fx = platform.fx
    assert fx("init", "hello", cwd=tmp_path).returncode == 0
    project = tmp_path / "hello"
    assert (project / "handler.py").is_file() and (project / "fx.yaml").is_file()

    deployed = fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    assert "version 1" in deployed.stdout

    again = fx("deploy", cwd=project)
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout

    r = httpx.get(f"{platform.gateway_url}/function/hello/any/path?x=1", timeout=30)
    assert r.status_code == 200, r.text
    assert "hello" in r.text

    invoked = fx("invoke", "hello", "--data", '{"rawPath": "/direct"}')
    assert invoked.returncode == 0, invoked.stderr

    listed = json.loads(fx("ls", "--output", "json").stdout)
    assert [f["name"] for f in listed] == ["hello"]

    described = json.loads(fx("describe", "hello", "--output", "json").stdout)
    assert described["latest"] == 1
    assert described["versions"][0]["replicas_ready"] >= 1

    logs = fx("logs", "hello")
    assert "START RequestId:" in logs.stdout and "REPORT RequestId:" in logs.stdout

    removed = fx("rm", "hello")
    assert removed.returncode == 0, removed.stderr
    gone = httpx.get(f"{platform.gateway_url}/function/hello", timeout=10)
    assert gone.status_code == 404
    assert gone.json()["error"]["function"] == "hello"
    assert platform.replica_pids("hello") == []


def test_changed_code_makes_a_new_version_that_takes_the_traffic(platform, make_function):
    project = make_function("greeter", body="return {'statusCode': 200, 'body': 'v1'}")
    assert "version 1" in platform.fx("deploy", cwd=project).stdout
    assert httpx.get(f"{platform.gateway_url}/function/greeter", timeout=30).text == "v1"

    make_function("greeter", body="return {'statusCode': 200, 'body': 'v2'}")
    assert "version 2" in platform.fx("deploy", cwd=project).stdout
    assert httpx.get(f"{platform.gateway_url}/function/greeter", timeout=30).text == "v2"


def test_dependencies_from_requirements_txt_are_importable_in_the_replica(platform, make_function, tmp_path):
    wheel = make_wheel(tmp_path, "tinydep", "VALUE = 'from a dependency'\n")
    project = make_function(
        "withdeps", body="return {'statusCode': 200, 'body': tinydep.VALUE}", imports="import tinydep"
    )
    (project / "requirements.txt").write_text(f"{wheel}\n")
    deployed = platform.fx("deploy", cwd=project, env={"PIP_NO_INDEX": "1", "FX_CACHE_DIR": str(tmp_path / "cache")})
    assert deployed.returncode == 0, deployed.stderr
    assert httpx.get(f"{platform.gateway_url}/function/withdeps", timeout=30).text == "from a dependency"
