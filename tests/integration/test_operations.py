"""What an operator relies on: metrics on both components, state that survives a restart."""

import httpx

from tests.integration.helpers import metric


def test_metrics_count_requests_by_function_version_and_status(platform, make_function):
    project = make_function("counted", body="return {'statusCode': 201, 'body': 'made'}")
    assert platform.fx("deploy", cwd=project).returncode == 0
    for _ in range(3):
        assert httpx.get(f"{platform.gateway_url}/function/counted", timeout=30).status_code == 201

    gateway = httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text
    assert metric(gateway, "fx_gateway_requests_total", function="counted", version="1", code="201") == 3
    assert metric(gateway, "fx_gateway_request_duration_seconds_count", function="counted", version="1") == 3

    auth = {"Authorization": f"Bearer {platform.token}"}  # the controller's metrics are behind the admin token
    controller = httpx.get(f"{platform.controller_url}/metrics", headers=auth, timeout=10).text
    assert metric(controller, "fx_controller_replicas", function="counted", version="1", state="ready") == 1
    assert metric(controller, "fx_controller_replica_start_seconds_count", function="counted") >= 1


def test_the_admin_api_serves_its_openapi_document(platform):
    auth = {"Authorization": f"Bearer {platform.token}"}
    assert httpx.get(f"{platform.gateway_url}/system/openapi.json", timeout=10).status_code == 401
    doc = httpx.get(f"{platform.gateway_url}/system/openapi.json", headers=auth, timeout=10).json()
    assert "/system/functions/{name}" in doc["paths"]


def test_functions_survive_a_restart_of_the_platform(platform, make_function):
    project = make_function("durable", body="return {'statusCode': 200, 'body': 'still here'}")
    assert platform.fx("deploy", cwd=project).returncode == 0
    platform.restart()
    r = httpx.get(f"{platform.gateway_url}/function/durable", timeout=30)
    assert r.status_code == 200 and r.text == "still here"
    assert "unchanged" in platform.fx("deploy", cwd=project).stdout
