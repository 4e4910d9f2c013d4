"""API routes served by the gateway on the real platform: matching, events, hosts, mocks, CORS, route changes.

The Chalice app's API comes with its fx.yaml (`fx deploy`); the others go through the admin API
(`PUT /system/apis/NAME`), which stores them in KV fx_apis for the gateway to follow. One platform serves the module.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.waiting import wait_for

from .conftest import RunningPlatform

FUNCTIONS = Path(__file__).parent / "functions"
ORIGIN = "https://app.example.com"


def wire(name: str, routes: dict, **fields) -> dict:
    """An API as fx.yaml declares one (its name aside)."""
    return {"name": name, "routes": routes, **fields}


def put_api(platform: RunningPlatform, api: dict) -> None:
    body = {k: v for k, v in api.items() if k != "name"}
    headers = {"Authorization": f"Bearer {platform.token}"}
    r = httpx.put(f"{platform.gateway_url}/system/apis/{api['name']}", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    root = tmp_path_factory.mktemp("api-routes")
    # Chalice's runtime part beside the app, as `chalice package` ships it (the CLI part needs botocore)
    chalice_app = root / "chalice_app"
    shutil.copytree(FUNCTIONS / "chalice_app", chalice_app)
    installed = Path(importlib.util.find_spec("chalice").origin).parent  # type: ignore[union-attr,arg-type]
    (chalice_app / "chalice").mkdir()
    for part in ("__init__.py", "app.py"):
        shutil.copy(installed / part, chalice_app / "chalice" / part)
    running = RunningPlatform(root / "state", root / "fx-config.json")
    try:
        for folder in (chalice_app, FUNCTIONS / "route_echo"):
            deployed = running.fx("deploy", cwd=folder)
            assert deployed.returncode == 0, deployed.stderr + deployed.stdout
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(fx: RunningPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fx.gateway_url, timeout=30) as c:
        yield c


def serve(fx: RunningPlatform, client: httpx.Client, api: dict, probe: str, host: str = "localhost") -> None:
    """Store `api` and wait until the gateway serves it (its `probe` path answers from a route, not a 404)."""
    put_api(fx, api)
    wait_for(
        lambda: client.get(probe, headers={"Host": host}).status_code != 404,
        30,
        f"API {api['name']} served at {probe}",
    )


CHALICE_CALLS = [
    ("GET", "/", None),
    ("GET", "/users/1", None),
    ("GET", "/users/404", None),  # NotFoundError
    ("POST", "/users", {"name": "bob"}),  # Response with status and headers
    ("POST", "/users", {"nom": "bob"}),  # BadRequestError
    ("GET", "/orders/7/items/x-y?size=L&size=XL", None),  # (Chalice's client leaves %XX in a parameter; AWS not)
    ("PUT", "/orders/7/items/9", None),
    ("GET", "/text", None),
]


def test_an_unmodified_chalice_app_answers_as_its_own_test_client(fx: RunningPlatform, client: httpx.Client) -> None:
    wait_for(  # deployed with its fx.yaml
        lambda: client.get("/users/1", headers={"Host": "chalice.test"}).status_code == 200, 30, "chalice's API"
    )
    sys.path.insert(0, str(FUNCTIONS / "chalice_app"))
    try:
        from app import app  # type: ignore[import-not-found]
        from chalice.test import Client
    finally:
        sys.path.pop(0)
    with Client(app) as local:
        for method, path, body in CHALICE_CALLS:
            kwargs = {"body": json.dumps(body), "headers": {"content-type": "application/json"}} if body else {}
            expected = local.http.request(method, path, **kwargs)
            got = client.request(method, path, json=body, headers={"Host": "chalice.test"})
            what = f"{method} {path}"
            assert got.status_code == expected.status_code, (what, got.text, expected.body)
            content_type = expected.headers.get("Content-Type")  # Chalice names none for a plain dict
            assert got.headers.get("content-type") == content_type, what
            if content_type in (None, "application/json"):
                assert got.json() == json.loads(expected.body), what
            else:
                assert got.content == expected.body, what
            if "Location" in expected.headers:
                assert got.headers["location"] == expected.headers["Location"]
    assert client.get("/text", headers={"Host": "chalice.test"}).headers["x-custom"] == "yes"


PRECEDENCE = {
    "GET /pets/dog/1": {"function": "echo"},
    "GET /pets/dog/{id}": {"function": "echo"},
    "GET /pets/{proxy+}": {"function": "echo"},
    "ANY /{proxy+}": {"function": "echo"},
    "$default": {"function": "echo"},
}


@pytest.mark.parametrize(
    ("method", "path", "route", "params"),
    [  # API Gateway's documented example (HTTP APIs, "Routing API requests"), then its edges
        ("GET", "/pets/dog/1", "GET /pets/dog/1", None),
        ("GET", "/pets/dog/2", "GET /pets/dog/{id}", {"id": "2"}),
        ("GET", "/pets/dog/a%20b", "GET /pets/dog/{id}", {"id": "a b"}),  # decoded, as API Gateway does
        ("GET", "/pets/cat/1", "GET /pets/{proxy+}", {"proxy": "cat/1"}),
        ("POST", "/test/5", "ANY /{proxy+}", {"proxy": "test/5"}),
        ("GET", "/", "$default", None),
    ],
)
def test_requests_land_on_the_route_api_gateway_documents(
    fx: RunningPlatform, client: httpx.Client, method: str, path: str, route: str, params: dict | None
) -> None:
    api = wire("pets", PRECEDENCE, hosts=["pets.test"], stage="prod", stage_variables={"env": "prod"})
    serve(fx, client, api, "/pets/dog/1", "pets.test")
    r = client.request(method, path, headers={"Host": "pets.test", "X-Fx-Route": '{"routeKey": "forged"}'})
    assert r.status_code == 200, r.text
    echo = r.json()
    assert (echo["routeKey"], echo["pathParameters"]) == (route, params)
    assert echo["version"] == "2.0" and echo["stage"] == "prod" and echo["apiId"] == "pets"
    assert echo["stageVariables"] == {"env": "prod"}
    assert echo["fxRoute"] == []  # the gateway's header is not the handler's to see, nor the caller's to set


def test_a_rest_payload_route_gets_the_v1_event(fx: RunningPlatform, client: httpx.Client) -> None:
    api = wire("rest", {"GET /things/{id}/{rest+}": {"function": "echo", "payload": "1.0"}}, hosts=["rest.test"])
    serve(fx, client, api, "/things/1/a", "rest.test")
    echo = client.get("/things/1/a/b", headers={"Host": "rest.test"}).json()
    assert echo["version"] == "1.0"
    assert echo["resource"] == echo["resourcePath"] == "/things/{id}/{rest+}"
    assert echo["pathParameters"] == {"id": "1", "rest": "a/b"}
    assert echo["stageVariables"] is None and echo["stage"] == "$default"


def test_apis_on_two_hosts_and_the_gateway_404_elsewhere(fx: RunningPlatform, client: httpx.Client) -> None:
    serve(fx, client, wire("one", {"GET /who": {"function": "echo"}}, hosts=["one.test"]), "/who", "one.test")
    serve(fx, client, wire("two", {"GET /who": {"function": "echo-two"}}, hosts=["two.test"]), "/who", "two.test")
    assert client.get("/who", headers={"Host": "one.test"}).json()["function"] == "echo"
    assert client.get("/who", headers={"Host": "two.test:8080"}).json()["function"] == "echo-two"
    unmatched = client.get("/nothing", headers={"Host": "one.test"})
    assert (unmatched.status_code, unmatched.json()) == (404, {"message": "Not Found"})  # API Gateway's
    elsewhere = client.get("/who", headers={"Host": "nobody.test"})
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "NotFound"  # the gateway's own
    assert client.get("/function/echo-two/x").json()["function"] == "echo-two"  # /function/ as before


def test_a_mock_route_answers_without_a_replica(fx: RunningPlatform, client: httpx.Client) -> None:
    mock = {"status": 200, "headers": {"x-served-by": "fx"}, "body": {"ok": True, "items": [1, 2]}}
    serve(fx, client, wire("mocked", {"GET /health": {"mock": mock}}, hosts=["mock.test"]), "/health", "mock.test")
    r = client.get("/health", headers={"Host": "mock.test"})
    assert (r.status_code, r.json(), r.headers["x-served-by"]) == (200, {"ok": True, "items": [1, 2]}, "fx")
    assert r.headers["content-type"] == "application/json"


def test_cors_preflight_and_headers_on_every_answer(fx: RunningPlatform, client: httpx.Client) -> None:
    cors = {
        "origins": [ORIGIN],
        "methods": ["GET", "POST"],
        "headers": ["authorization"],
        "expose_headers": ["x-served-by"],
        "max_age": 600,
        "credentials": False,
    }
    routes = {"GET /things/{id}": {"function": "echo"}, "GET /mock": {"mock": {"status": 200, "body": "hi"}}}
    serve(fx, client, wire("cors", routes, hosts=["cors.test"], cors=cors), "/things/1", "cors.test")
    preflight = client.options(
        "/things/1",
        headers={"Host": "cors.test", "Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["access-control-allow-methods"] == "GET, POST"
    assert preflight.headers["access-control-allow-headers"] == "authorization"
    assert preflight.headers["access-control-max-age"] == "600"
    for path in ("/things/1", "/mock", "/missing"):
        r = client.get(path, headers={"Host": "cors.test", "Origin": ORIGIN})
        if path != "/missing":
            assert r.headers["access-control-allow-origin"] == ORIGIN, path
            assert r.headers["access-control-expose-headers"] == "x-served-by", path
    stranger = client.get("/things/1", headers={"Host": "cors.test", "Origin": "https://evil.example"})
    assert stranger.status_code == 200 and "access-control-allow-origin" not in stranger.headers


def test_a_changed_route_takes_effect_without_a_restart(fx: RunningPlatform, client: httpx.Client) -> None:
    api = wire("moving", {"GET /where": {"function": "echo"}}, hosts=["moving.test"])
    serve(fx, client, api, "/where", "moving.test")
    assert client.get("/where", headers={"Host": "moving.test"}).json()["function"] == "echo"
    put_api(fx, wire("moving", {"GET /where": {"function": "echo-two"}}, hosts=["moving.test"]))
    wait_for(
        lambda: client.get("/where", headers={"Host": "moving.test"}).json()["function"] == "echo-two",
        30,
        "the route moved to echo-two",
    )
