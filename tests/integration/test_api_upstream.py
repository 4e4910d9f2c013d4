"""Legacy upstreams on the real platform (the strangler pattern): a legacy HTTP service serves the routes not yet
moved (`ANY /{proxy+}`), a function the one that was, behind the same front door; then one more route moves from
the legacy service to a function while a client calls it, and no call fails.

The move is an `fx deploy` of an fx.yaml whose API gains the route; the other APIs are put through the admin API
(PUT /system/apis/NAME, as `fx deploy` puts them). One platform and one legacy server (tests/legacy_http.py)
serve the module.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.legacy_http import LegacyServer
from tests.loopback import free_port
from tests.waiting import wait_for

from .conftest import RunningPlatform

FUNCTIONS = Path(__file__).parent / "functions"
MIB = 1 << 20


@pytest.fixture(scope="module")
def legacy() -> Iterator[LegacyServer]:
    with LegacyServer() as server:
        yield server


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    root = tmp_path_factory.mktemp("api-upstream")
    running = RunningPlatform(root / "state", root / "fx-config.json")
    try:
        deployed = running.fx("deploy", cwd=FUNCTIONS / "users_api")
        assert deployed.returncode == 0, deployed.stderr + deployed.stdout
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(fx: RunningPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fx.gateway_url, timeout=60) as c:
        yield c


def put_api(fx: RunningPlatform, name: str, spec: dict) -> None:
    headers = {"Authorization": f"Bearer {fx.token}"}
    r = httpx.put(f"{fx.gateway_url}/system/apis/{name}", json=spec, headers=headers, timeout=30)
    assert r.status_code == 200, r.text


def serve(fx: RunningPlatform, client: httpx.Client, name: str, spec: dict, probe: str, host: str) -> None:
    """Put the API and wait until the gateway serves it (`probe` answers from one of its routes)."""
    put_api(fx, name, spec)
    wait_for(lambda: client.get(probe, headers={"Host": host}).status_code != 404, 30, f"API {name} served")


def shop(legacy: LegacyServer, moved: dict) -> dict:
    """The shop: everything to the legacy service but the `moved` routes."""
    return {"hosts": ["shop.test"], "routes": {"ANY /{proxy+}": {"upstream": legacy.url}, **moved}}


USERS = {"GET /users/{id}": {"function": "users"}}
SHOP = {"Host": "shop.test"}


def test_the_legacy_serves_what_is_not_moved_and_the_function_what_is(fx, client, legacy) -> None:
    serve(fx, client, "shop", shop(legacy, USERS), "/users/1", "shop.test")
    assert client.get("/users/7", headers=SHOP).json() == {"served_by": "function", "id": "7"}
    r = client.post("/orders?sort=new", content=b"order", headers={**SHOP, "X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200
    seen = r.json()
    assert seen["legacy"] and seen["method"] == "POST" and seen["path"] == "/orders?sort=new" and seen["body"] == 5
    sent = seen["headers"]
    assert sent["host"] == f"127.0.0.1:{legacy.port}"  # the upstream's own
    assert sent["x-forwarded-host"] == "shop.test" and sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    metrics = client.get("/metrics").text
    assert f'fx_gateway_api_upstream_connections{{state="idle",upstream="{legacy.url}"}}' in metrics
    r = client.get("/static/%2e%2e/users/7", headers=SHOP)  # ../ is resolved by httpx itself; this is not
    assert r.status_code == 400 and "'..'" in r.json()["message"]


def test_bodies_stream_both_ways(fx, client, legacy) -> None:
    serve(fx, client, "shop", shop(legacy, USERS), "/users/1", "shop.test")
    size = 20 * MIB
    before = legacy.received

    def upload() -> Iterator[bytes]:
        for i in range(size // (64 * 1024)):
            if i == 16:  # the first MiB is at the legacy service before the caller sends the rest
                wait_for(lambda: legacy.received - before >= MIB, 30, "the first MiB at the legacy service")
            yield b"u" * (64 * 1024)

    r = client.post("/count", content=upload(), headers=SHOP)
    assert r.status_code == 200 and r.json() == {"bytes": size}

    legacy.go.clear()
    with client.stream("GET", "/stream", headers=SHOP) as answer:
        chunks = answer.iter_bytes()
        assert next(chunks) == b"first\n"  # here while the legacy holds the rest back until the test says so
        legacy.go.set()
        assert b"".join(chunks) == b"last\n"


def test_a_slow_upstream_is_a_504_and_an_unreachable_one_a_502(fx, client, legacy) -> None:
    slow = {"hosts": ["slow.test"], "routes": {"ANY /{proxy+}": {"upstream": {"url": legacy.url, "timeout": 1}}}}
    serve(fx, client, "slow", slow, "/probe", "slow.test")
    legacy.release.clear()
    try:
        r = client.get("/slow", headers={"Host": "slow.test"})
        assert r.status_code == 504 and r.json() == {"message": "Endpoint request timed out"}
    finally:
        legacy.release.set()
    gone = {"hosts": ["gone.test"], "routes": {"ANY /{proxy+}": {"upstream": f"http://127.0.0.1:{free_port()}"}}}
    put_api(fx, "gone", gone)
    wait_for(lambda: client.get("/x", headers={"Host": "gone.test"}).status_code == 502, 30, "the 502 of gone.test")
    assert client.get("/x", headers={"Host": "gone.test"}).json() == {"message": "Bad Gateway"}


def deploy_shop(fx: RunningPlatform, project: Path, legacy: LegacyServer, moved: bool) -> None:
    """`fx deploy` of a project whose fx.yaml has the users function and the shop API, /users/{id} moved or not."""
    project.mkdir(exist_ok=True)
    shutil.copy(FUNCTIONS / "users_api" / "handler.py", project / "handler.py")
    users = '      "GET /users/{id}": {function: users}\n' if moved else ""
    (project / "fx.yaml").write_text(
        "functions:\n  users: {handler: handler.handler, timeout: 10}\n"
        "apis:\n  shop:\n    hosts: [shop.test]\n    routes:\n"
        f'      "ANY /{{proxy+}}": {{upstream: "{legacy.url}"}}\n{users}'
    )
    deployed = fx.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr + deployed.stdout


def test_a_route_moves_from_the_legacy_to_a_function_with_no_failed_call(fx, client, legacy, tmp_path) -> None:
    deploy_shop(fx, tmp_path / "shop", legacy, moved=False)
    wait_for(lambda: client.get("/users/3", headers=SHOP).json().get("legacy"), 30, "the legacy serving /users/3")
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def call_in_a_loop() -> None:
        with httpx.Client(base_url=fx.gateway_url, timeout=60) as own:
            while not stop.is_set():
                r = own.get("/users/3", headers=SHOP)
                body = r.json() if r.status_code == 200 else {}
                answers.append((r.status_code, "function" if body.get("served_by") == "function" else "legacy"))

    caller = threading.Thread(target=call_in_a_loop)
    caller.start()
    try:
        wait_for(lambda: len(answers) >= 20, 30, "calls to the legacy before the move")
        deploy_shop(fx, tmp_path / "shop", legacy, moved=True)
        wait_for(lambda: answers[-1][1] == "function", 30, "the function answering GET /users/{id}")
        moved_at = len(answers)
        wait_for(lambda: len(answers) >= moved_at + 50, 60, "calls after the move")
    finally:
        stop.set()
        caller.join(60)
    assert {status for status, _ in answers} == {200}, [a for a in answers if a[0] != 200][:5]
    served = [by for _, by in answers]
    first = served.index("function")
    assert served[0] == "legacy" and set(served[first:]) == {"function"}  # once moved, never back
