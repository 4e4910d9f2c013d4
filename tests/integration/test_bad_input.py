"""Bad input gets a clear error naming what is wrong, and nothing is half-deployed."""

import json

import httpx


def test_invalid_function_name_is_refused_and_nothing_is_deployed(platform, make_function):
    project = make_function("ok-name", body="return 1")
    (project / "fx.yaml").write_text("functions:\n  Bad_Name:\n    handler: handler.handler\n")
    result = platform.fx("deploy", cwd=project)
    assert result.returncode == 2
    assert "Bad_Name" in result.stderr and "DNS-1123" in result.stderr
    assert json.loads(platform.fx("ls", "--output", "json").stdout) == []


def test_malformed_manifest_names_the_file_line_and_field(platform, make_function):
    project = make_function("lines", body="return 1")
    (project / "fx.yaml").write_text("functions:\n  lines:\n    handler: handler.handler\n    scale:\n      max: 0\n")
    result = platform.fx("deploy", cwd=project)
    assert result.returncode == 2
    assert "fx.yaml:5" in result.stderr and "scale.max" in result.stderr


def test_missing_handler_function_is_reported_by_the_runtime(platform, make_function):
    project = make_function("nohandler", body="return 1", config={"handler": "handler.missing"})
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 1 and "Runtime.HandlerNotFound" in deployed.stderr  # its init failed
    r = httpx.get(f"{platform.gateway_url}/function/nohandler", timeout=30)
    assert r.status_code == 502
    assert "Runtime.HandlerNotFound" in r.text


def test_admin_api_requires_the_token(platform):
    no_token = httpx.get(f"{platform.gateway_url}/system/functions", timeout=10)
    assert no_token.status_code == 401
    wrong = httpx.get(f"{platform.gateway_url}/system/functions", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"]
    ok = httpx.get(
        f"{platform.gateway_url}/system/functions", headers={"Authorization": f"Bearer {platform.token}"}, timeout=10
    )
    assert ok.status_code == 200


def test_unknown_function_is_a_404_naming_it(platform):
    r = httpx.post(f"{platform.gateway_url}/function/nope", content=b"{}", timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["function"] == "nope"


def test_request_body_over_the_limit_is_413(platform, make_function):
    project = make_function("small", body="return {'statusCode': 200, 'body': 'fine'}")
    assert platform.fx("deploy", cwd=project).returncode == 0
    url = f"{platform.gateway_url}/function/small"
    assert httpx.post(url, content=b"x" * 1024, timeout=30).status_code == 200
    too_big = httpx.post(url, content=b"x" * (6 * 1024 * 1024 + 1), timeout=30)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["function"] == "small"
