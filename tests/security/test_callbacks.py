"""An anonymous caller cannot aim an async call's result at fx's own subjects or at addresses the operator
did not allow, and a route table forged far ahead is not adopted.

Against the real platform; no traffic ever leaves loopback: every refused URL is refused when the call is
accepted, before anything is stored or any connection is made (a listener on a refused port proves it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import socket
import threading
import time

import httpx
import pytest
from fx.protocol import KV_ROUTES, STREAM_ASYNC, RouteTable

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import metric
from tests.waiting import wait_for


class _Received(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        _Received.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def callback_server():
    _Received.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Received)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def bystander():
    """A listener on a loopback port no allow-list names: nobody may ever connect to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    yield sock
    with pytest.raises(BlockingIOError):
        sock.accept()  # not one connection was attempted
    sock.close()


@pytest.fixture
def open_platform(platform_with, callback_server) -> RunningPlatform:
    """An operator who allows every subject that is not fx's, and one callback host:port."""
    return platform_with(FX_CALLBACK_SUBJECTS=">", FX_CALLBACK_HOSTS=f"127.0.0.1:{callback_server.server_address[1]}")


def deploy(platform: RunningPlatform, make_function, name: str, says: str) -> str:
    body = f"return {{'statusCode': 200, 'body': {says!r} if not event.get('body') else event['body']}}"
    project = make_function(name, body=body)
    assert platform.fx("deploy", cwd=project).returncode == 0
    url = f"{platform.gateway_url}/function/{name}"
    assert httpx.get(url, timeout=30).text == says
    return url


async def _route_table(platform: RunningPlatform, name: str) -> RouteTable:
    nc = await platform._platform.admin_nats()
    try:
        kv = await nc.jetstream().key_value(KV_ROUTES)
        return RouteTable.from_json((await kv.get(name)).value)
    finally:
        await nc.close()


async def _stored_calls(platform: RunningPlatform) -> int:
    nc = await platform._platform.admin_nats()
    try:
        return (await nc.jetstream().stream_info(STREAM_ASYNC)).state.messages
    finally:
        await nc.close()


def test_a_callback_subject_naming_fx_routes_is_refused_and_stores_nothing(open_platform, make_function, bystander):
    victim = deploy(open_platform, make_function, "victim", "the victim")
    deploy(open_platform, make_function, "echoing", "echo")
    table = asyncio.run(_route_table(open_platform, "victim"))
    forged = dataclasses.replace(table, revision=table.revision + 1)
    forged.versions["1"].endpoints = [f"127.0.0.1:{bystander.getsockname()[1]}"]
    for subject in ("$KV.fx_routes.victim", "$JS.API.STREAM.PURGE.FX_ASYNC", "fx.activate", "_INBOX.x.y"):
        r = httpx.post(
            f"{open_platform.gateway_url}/async-function/echoing",
            content=forged.to_json(),
            headers={"X-Fx-Callback-Subject": subject},
            timeout=10,
        )
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "InvalidCallback" and "X-Fx-Callback-Subject" in error["message"]
    assert asyncio.run(_stored_calls(open_platform)) == 0
    time.sleep(1)
    assert asyncio.run(_route_table(open_platform, "victim")).revision == table.revision
    assert httpx.get(victim, timeout=10).text == "the victim"
    allowed = httpx.post(
        f"{open_platform.gateway_url}/async-function/echoing",
        content=b"x",
        headers={"X-Fx-Callback-Subject": "results.mine"},
        timeout=10,
    )
    assert allowed.status_code == 202  # a subject the operator allowed still works


def test_callback_urls_go_only_where_the_operator_allowed(open_platform, make_function, callback_server, bystander):
    deploy(open_platform, make_function, "echoing", "echo")
    async_url = f"{open_platform.gateway_url}/async-function/echoing"
    for url in (
        f"http://127.0.0.1:{bystander.getsockname()[1]}/",  # loopback, but a port not on the list
        "http://169.254.169.254/latest/meta-data/iam/",  # cloud metadata, whatever the list says
        "http://[fd00:ec2::254]/latest/",
        "http://192.0.2.10/hook",  # a host not on the list
        f"http://127.0.0.1:{callback_server.server_address[1]}@192.0.2.10/",
        "file:///etc/passwd",
    ):
        r = httpx.post(async_url, content=b"secret", headers={"X-Callback-Url": url}, timeout=10)
        assert r.status_code == 400, (url, r.text)
        assert "X-Callback-Url" in r.json()["error"]["message"]
    assert asyncio.run(_stored_calls(open_platform)) == 0
    allowed = f"http://127.0.0.1:{callback_server.server_address[1]}/done"
    r = httpx.post(async_url, content=b"delivered", headers={"X-Callback-Url": allowed}, timeout=10)
    assert r.status_code == 202
    wait_for(lambda: _Received.bodies, 20, "the allowed callback")
    assert _Received.bodies == [b"delivered"]


def test_the_default_allows_loopback_callbacks_but_never_fx_own_listeners(platform, make_function):
    deploy(platform, make_function, "echoing", "echo")
    async_url = f"{platform.gateway_url}/async-function/echoing"
    for own in (platform.controller_url, platform.gateway_url):
        r = httpx.post(async_url, headers={"X-Callback-Url": f"{own}/system/functions"}, timeout=10)
        assert r.status_code == 400 and "fx's own listeners" in r.json()["error"]["message"]
    r = httpx.post(async_url, headers={"X-Fx-Callback-Subject": "results.x"}, timeout=10)
    assert r.status_code == 400 and "FX_CALLBACK_SUBJECTS" in r.json()["error"]["message"]  # none by default


def test_an_allowed_callback_name_no_lookup_can_encode_is_a_failed_callback_not_a_rerun(platform_with, make_function):
    platform = platform_with(FX_CALLBACK_HOSTS=".example.com")
    deploy(platform, make_function, "echoing", "echo")
    url = f"http://{'a' * 64}.example.com/done"  # allowed by the suffix; a label over 63 bytes never resolves
    r = httpx.post(f"{platform.gateway_url}/async-function/echoing", headers={"X-Callback-Url": url}, timeout=10)
    assert r.status_code == 202

    def counted(name: str, **labels: str) -> float:
        return metric(httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text, name, **labels)

    wait_for(lambda: counted("fx_gateway_async_callbacks_total", result="failed") == 1, 20, "a failed callback")
    assert counted("fx_gateway_async_attempts_total", function="echoing", result="ok") == 1
    # Acked: the call is done, not left to be redelivered and run again.
    wait_for(lambda: asyncio.run(_stored_calls(platform)) == 0, 10, "the call to be acked")
    assert counted("fx_gateway_async_attempts_total", function="echoing", result="ok") == 1


async def _put_table(platform: RunningPlatform, table: RouteTable) -> None:
    """As the platform's admin: function code can no longer write route tables (NATS permissions); this
    tests the gateway's own refusal, the second line."""
    nc = await platform._platform.admin_nats()
    try:
        await (await nc.jetstream().key_value(KV_ROUTES)).put(table.function, table.to_json())
    finally:
        await nc.close()


def test_a_route_table_forged_far_ahead_is_ignored_and_the_owner_keeps_control(platform, make_function, bystander):
    victim = deploy(platform, make_function, "victim", "the victim")
    table = asyncio.run(_route_table(platform, "victim"))
    forged = dataclasses.replace(table, revision=table.revision + 10**13)  # the hijack
    forged.versions["1"].endpoints = [f"127.0.0.1:{bystander.getsockname()[1]}"]
    asyncio.run(_put_table(platform, forged))
    time.sleep(1)
    for _ in range(5):
        assert httpx.get(victim, timeout=10).text == "the victim"
    project = make_function("victim", body="return {'statusCode': 200, 'body': 'redeployed'}")
    assert platform.fx("deploy", cwd=project).returncode == 0  # the owner's redeploy takes over
    wait_for(lambda: httpx.get(victim, timeout=10).text == "redeployed", 20, "the redeploy")
