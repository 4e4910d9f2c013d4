"""Lambda code nobody here wrote, deployed unchanged with `fx deploy` and called through the gateway.

The apps in functions/ are written as their libraries' docs say to write them for AWS Lambda: FastAPI behind
Mangum (HTTP API), Flask behind apig-wsgi (REST API and ALB), AWS Lambda Powertools' resolvers (HTTP API and
REST API), and handlers run by awslambdaric through fx's Lambda Runtime API. Their dependencies come from PyPI
at pinned versions. One platform serves the whole module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_for

from .conftest import RunningPlatform

FUNCTIONS = Path(__file__).parent / "functions"
ORIGIN = "https://app.example.com"
# name -> (status of an exception the app does not handle, how the app answers an unknown route)
APPS = {
    "fastapi-app": 500,  # Starlette's ServerErrorMiddleware answers 500 itself
    "flask-rest": 500,  # so does Flask
    "flask-alb": 500,
    "pt-http": 502,  # Powertools lets it propagate: a function error, which API Gateway answers with 502
    "pt-rest": 502,
}


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    root = tmp_path_factory.mktemp("foreign")
    running = RunningPlatform(root / "state", root / "fx-config.json")
    try:
        for folder in ("fastapi_mangum", "flask_wsgi", "powertools", "awslambdaric_bootstrap"):
            deployed = running.fx("deploy", cwd=FUNCTIONS / folder)
            assert deployed.returncode == 0, deployed.stderr + deployed.stdout
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(fx: RunningPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{fx.gateway_url}/function", timeout=30) as c:
        yield c


def blob(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


@pytest.mark.parametrize("app", APPS)
def test_routes_path_parameters_and_repeated_query_keys(client: httpx.Client, app: str) -> None:
    r = client.get(f"/{app}/items/42", params=[("tag", "red"), ("tag", "blue green"), ("other", "x")])
    assert r.status_code == 200, r.text
    assert r.json()["item_id"] == 42
    # ALB's event carries the values still URL-encoded (as AWS's does); apig-wsgi decodes them, as on AWS.
    assert r.json()["tags"] == ["red", "blue green"]
    assert r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("app", APPS)
def test_cookies_in_and_set_cookie_out(client: httpx.Client, app: str) -> None:
    r = client.get(f"/{app}/session", headers={"Cookie": "user=ann; theme=dark"})
    assert r.status_code == 200, r.text
    assert r.json() == {"user": "ann", "theme": "dark"}
    set_cookies = r.headers.get_list("set-cookie")
    assert len(set_cookies) == 2, set_cookies
    assert set_cookies[0].startswith("seen=yes") and "httponly" in set_cookies[0].lower()
    assert set_cookies[1].startswith("visits=1") and "max-age=60" in set_cookies[1].lower()


@pytest.mark.parametrize("app", APPS)
def test_binary_upload_and_download_round_trip(client: httpx.Client, app: str) -> None:
    data = blob(70_000)
    up = client.put(f"/{app}/blobs", content=data, headers={"Content-Type": "application/octet-stream"})
    assert up.status_code == 200, up.text
    assert up.json()["size"] == len(data) and up.json()["sha256"] == hashlib.sha256(data).hexdigest()

    down = client.get(f"/{app}/blobs/70000")
    assert down.status_code == 200
    assert down.content == data
    assert down.headers["content-type"] == "application/octet-stream"
    assert down.headers["x-digest"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("app", APPS)
def test_error_statuses(client: httpx.Client, app: str) -> None:
    assert client.get(f"/{app}/no/such/route").status_code == 404
    boom = client.get(f"/{app}/boom")
    assert boom.status_code == APPS[app]
    if boom.status_code == 502:
        assert boom.json() == {"message": "Internal Server Error"}
    if app.startswith("pt-"):
        bad = client.get(f"/{app}/items/abc")
        assert bad.status_code == 400 and "not a number" in bad.json()["message"]
    else:
        assert client.get(f"/{app}/teapot").status_code == 418


@pytest.mark.parametrize("app", APPS)
def test_cors_preflight_and_simple_requests(client: httpx.Client, app: str) -> None:
    preflight = client.options(
        f"/{app}/items/1",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert preflight.status_code in (200, 204), preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()

    simple = client.get(f"/{app}/blobs/10", headers={"Origin": ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ORIGIN
    assert "x-digest" in simple.headers["access-control-expose-headers"].lower()

    foreign = client.get(f"/{app}/items/1", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 200
    assert foreign.headers.get("access-control-allow-origin") != "https://evil.example"


def test_awslambdaric_runs_unmodified_through_the_runtime_api(fx: RunningPlatform, client: httpx.Client) -> None:
    invoke = f"{fx.gateway_url}/2015-03-31/functions/ric-app/invocations"
    first = httpx.post(invoke, json={"n": 1}, timeout=30)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["event"] == {"n": 1}
    assert body["function_name"] == "ric-app"
    assert body["arn"].endswith(":function:ric-app")
    assert 0 < body["remaining_ms"] <= 5000  # the deadline fx gave it, through Lambda-Runtime-Deadline-Ms
    assert body["runtime_api"].startswith("127.0.0.1:")
    # One bootstrap serves many invocations: the handler's module state survives.
    assert httpx.post(invoke, json={"n": 2}, timeout=30).json()["invocations"] == body["invocations"] + 1

    failed = httpx.post(invoke, json={"fail": True}, timeout=30)
    assert failed.status_code == 200 and failed.headers["X-Amz-Function-Error"] == "Unhandled"
    assert failed.json()["errorType"] == "ValueError" and failed.json()["errorMessage"] == "asked to fail"

    http = client.get("/ric-app/via/http")
    assert http.status_code == 200 and http.text == "/via/http"
    assert http.headers["x-runtime"] == "awslambdaric" and http.headers.get_list("set-cookie") == ["ric=1"]

    rid = body["request_id"]
    logs = wait_for(
        lambda: (out := fx.fx("logs", "ric-app").stdout) and f"REPORT RequestId: {rid}" in out and out,
        10,
        "the invocation's REPORT line in fx logs",
    )
    assert f"START RequestId: {rid}" in logs and f"END RequestId: {rid}" in logs
    assert "[ERROR]" in logs and "asked to fail" in logs  # awslambdaric's own error log, in the function's log
