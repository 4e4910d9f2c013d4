"""API upstream integrations (fx_gateway.api.http_upstream) between a caller and a real legacy HTTP server.

The gateway's caller connections are served in-process with a router that sends every request to one upstream,
as the API front door does for an `upstream` route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
from fx_gateway.api import http_upstream
from fx_gateway.api.http_upstream import Upstreams, escapes
from fx_gateway.config import Settings
from fx_gateway.http.connections import Connections
from fx_gateway.http.server import ClientConnection

from tests.legacy_http import LegacyServer
from tests.loopback import free_port
from tests.unit.gateway.conftest import Raw
from tests.waiting import until


class OneUpstream:
    """A router with one route: everything to `upstream`."""

    def __init__(self, upstreams: Upstreams, upstream: dict) -> None:
        self.upstreams, self.upstream = upstreams, upstream

    def open(self, client, method, url, headers):
        return self.upstreams.open(client, self.upstream, method, url, headers, None)


class Front:
    def __init__(self, upstreams: Upstreams, url: str, server: asyncio.AbstractServer) -> None:
        self.upstreams, self.url, self.server = upstreams, url, server
        self.client = httpx.AsyncClient(base_url=url, timeout=30)


def sample(upstreams: Upstreams, name: str, **labels: str) -> float | None:
    """The value of one of the upstreams' metrics, as /metrics would show it."""
    for family in upstreams.collect():
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


@pytest.fixture
def legacy():
    with LegacyServer() as server:
        yield server


@pytest.fixture
async def front():
    """front(url, timeout=29, **settings) -> Front: a gateway listener whose one route is that upstream."""
    made: list[Front] = []

    async def make(url: str, timeout: float = 29, **settings) -> Front:
        settings = Settings(**settings)
        upstreams = Upstreams(settings)
        router, connections = OneUpstream(upstreams, {"url": url, "timeout": timeout}), Connections(settings)
        server = await asyncio.get_running_loop().create_server(
            lambda: ClientConnection(router, connections), "127.0.0.1", 0
        )
        running = Front(upstreams, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", server)
        made.append(running)
        return running

    yield make
    for running in made:
        await running.client.aclose()
        running.upstreams.close()
        running.server.close()


async def test_the_upstream_gets_the_callers_path_under_its_prefix_with_forwarding_headers(front, legacy):
    gw = await front(legacy.url + "/legacy/")
    headers = {"X-Forwarded-For": "10.0.0.9", "Forwarded": "for=1.2.3.4", "X-Fx-Replica-Token": "t", "X-Mine": "1"}
    r = await gw.client.get("/users/7?page=2&q=a%20b", headers={**headers, "Host": "shop.example.com"})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["path"] == "/legacy/users/7?page=2&q=a%20b"
    sent = seen["headers"]
    assert sent["host"] == f"127.0.0.1:{legacy.port}"  # the upstream's, as API Gateway's HTTP integrations
    assert sent["x-forwarded-host"] == "shop.example.com" and sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert sent["x-mine"] == "1"
    assert "forwarded" not in sent and "x-fx-replica-token" not in sent  # not the gateway's to pass on
    assert "keep-alive" not in r.headers  # the upstream's hop-by-hop answer headers stay with that hop


async def test_calls_share_kept_alive_connections_and_at_most_the_limit_are_open(front, legacy):
    gw = await front(legacy.url, upstream_max_connections=2)
    for _ in range(5):
        assert (await gw.client.get("/one")).status_code == 200
    assert legacy.connections == 1  # one after the other: the same connection each time
    slow = [asyncio.create_task(gw.client.get("/slow")) for _ in range(4)]
    await until(lambda: legacy.open >= 2, what="two connections held by slow requests")
    upstream = legacy.url
    await until(lambda: sample(gw.upstreams, "fx_gateway_api_upstream_waiting", upstream=upstream) == 2)
    # The server saw the second connection open before the gateway's side of it completed: busy follows.
    await until(
        lambda: sample(gw.upstreams, "fx_gateway_api_upstream_connections", upstream=upstream, state="busy") == 2
    )
    legacy.release.set()
    answers = await asyncio.gather(*slow)
    assert [a.status_code for a in answers] == [200] * 4
    assert legacy.most_open == 2  # the other two waited for a connection


async def test_a_large_upload_streams_to_the_upstream(front, legacy):
    gw = await front(legacy.url)
    size = 20 * 1024 * 1024
    r = await gw.client.post("/count", content=b"x" * size)
    assert r.status_code == 200 and r.json() == {"bytes": size}

    before = legacy.received

    async def chunks():
        for i in range(size // 65536):
            if i == 16:  # the first MiB must be at the upstream before the caller sends more
                await until(lambda: legacy.received - before >= 1 << 20, 30, "the first MiB at the upstream")
            yield b"y" * 65536

    r = await gw.client.post("/count", content=chunks())  # no length: chunked all the way
    assert r.status_code == 200 and r.json() == {"bytes": size}


async def test_an_answer_streams_to_the_caller_as_the_upstream_sends_it(front, legacy):
    gw = await front(legacy.url)
    async with gw.client.stream("GET", "/stream") as r:
        chunks = r.aiter_bytes()
        first = await anext(chunks)
        assert first == b"first\n"  # here while the upstream holds the rest back until the test says so
        legacy.go.set()
        assert b"".join([c async for c in chunks]) == b"last\n"


async def test_an_answer_ending_with_its_connection_ends_the_callers_connection(front, legacy):
    gw = await front(legacy.url)
    raw = await Raw.open(gw.url)
    await raw.send(b"GET /until-close HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(raw.reader.read(), 10)
    assert data.startswith(b"HTTP/1.1 200") and b"\r\nConnection: close\r\n" in data
    assert data.endswith(b"\r\n\r\nthe whole body")


async def test_an_upstream_that_does_not_answer_in_time_is_a_504(front, legacy):
    gw = await front(legacy.url, timeout=0.5)
    r = await gw.client.get("/slow")
    assert r.status_code == 504 and r.json() == {"message": "Endpoint request timed out"}
    legacy.release.set()
    assert (await gw.client.get("/after")).status_code == 200  # the caller's connection is still good


async def test_an_upstream_that_refuses_the_connection_is_a_502(front):
    gw = await front(f"http://127.0.0.1:{free_port()}")
    r = await gw.client.post("/anything", content=b"body")
    assert r.status_code == 502 and r.json() == {"message": "Bad Gateway"}
    assert (await gw.client.get("/again")).status_code == 502


@pytest.mark.parametrize("path", [b"/a/../../admin", b"/a/%2e%2e/admin", b"/a/.%2E/admin", b"/a\\..\\admin", b"/./x"])
async def test_a_path_that_could_leave_the_prefix_is_refused(front, legacy, path):
    gw = await front(legacy.url + "/public")
    raw = await Raw.open(gw.url)
    await raw.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
    answer = await raw.response()
    assert answer.status == 400 and "'..'" in json.loads(answer.body)["message"]
    assert legacy.requests == []


def test_dots_inside_names_are_not_segments():
    assert not escapes(b"/files/report..final.pdf") and not escapes(b"/a/.well-known/x")
    assert escapes(b"/a/..") and escapes(b"/%2E%2e/etc")


async def test_a_body_over_the_limit_is_refused_before_it_is_read(front, legacy):
    gw = await front(legacy.url, upstream_max_body_bytes=1000)
    r = await gw.client.post("/count", content=b"x" * 1001)
    assert r.status_code == 413 and "1000 bytes" in r.json()["message"]
    assert (await gw.client.post("/count", content=b"x" * 1000)).json() == {"bytes": 1000}


async def test_a_request_waiting_for_a_connection_is_bounded_by_the_timeout(front, legacy):
    gw = await front(legacy.url, timeout=1, upstream_max_connections=1)
    upload = await Raw.open(gw.url)  # holds the one connection while it owes the rest of its body
    await upload.send(b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await until(lambda: legacy.received == 5, what="the first chunk at the upstream")
    r = await gw.client.get("/queued")
    assert r.status_code == 504 and r.json() == {"message": "Endpoint request timed out"}
    await upload.send(b"0\r\n\r\n")  # a caller that is slow with its body is not the upstream's fault
    answer = await upload.response()
    assert answer.status == 200 and json.loads(answer.body) == {"bytes": 5}


async def test_a_caller_that_leaves_mid_answer_frees_the_upstream_connection(front, legacy):
    gw = await front(legacy.url)
    raw = await Raw.open(gw.url)
    await raw.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"first" in await asyncio.wait_for(raw.reader.readuntil(b"first"), 10)
    raw.writer.transport.abort()
    await until(lambda: not gw.upstreams.in_flight, 10, "the gateway to give up the call")
    legacy.go.set()  # only now: the rest would complete the answer, and its connection would be kept
    await until(lambda: legacy.open == 0, 10, "the upstream connection closed")
    assert (await gw.client.get("/after")).status_code == 200


async def test_an_upstream_that_stops_reading_the_body_is_a_504(front, legacy):
    gw = await front(legacy.url, timeout=1)
    r = await gw.client.post("/slow", content=b"x" * (20 * 1024 * 1024))  # /slow reads nothing until released
    assert r.status_code == 504 and r.json() == {"message": "Endpoint request timed out"}
    legacy.release.set()


class ClosesReusedConnections:
    """Answers the first request on a connection, and closes it when the next one comes: an upstream closing an
    idle keep-alive connection just as the gateway sends on it."""

    def __init__(self) -> None:
        self.requests = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        if b"Content-Length: " in head:
            await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()


async def test_a_get_on_a_connection_the_upstream_closed_is_sent_again_on_a_fresh_one(front):
    upstream = ClosesReusedConnections()
    gw = await front(await upstream.start())
    assert (await gw.client.get("/a")).text == "ok"
    assert (await gw.client.get("/b")).text == "ok"  # the kept connection broke unanswered: a new one
    assert sample(gw.upstreams, "fx_gateway_api_upstream_retries_total") == 1
    r = await gw.client.post("/c", content=b"body")  # a body may have been read: not sent again
    assert r.status_code == 502 and r.json() == {"message": "Bad Gateway"}


async def test_a_head_request_gets_the_head_alone_and_the_connection_goes_on(front, legacy):
    gw = await front(legacy.url)
    r = await gw.client.head("/thing")
    assert r.status_code == 200 and int(r.headers["content-length"]) > 0 and r.content == b""
    assert (await gw.client.get("/thing")).json()["method"] == "GET"
    assert legacy.connections == 1


async def test_an_interim_answer_is_not_taken_for_the_answer(front):
    async def early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):  # the gateway closing the connection at the end
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)  # the final answer comes in a read of its own
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")
                await writer.drain()

    server = await asyncio.start_server(early_hints, "127.0.0.1", 0)
    gw = await front(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    for _ in range(2):  # the connection is still in step for the next request
        r = await gw.client.get("/x")
        assert r.status_code == 201 and r.text == "done"
    server.close()


async def test_a_kept_connection_unused_for_a_while_is_closed(front, legacy, monkeypatch):
    monkeypatch.setattr(http_upstream, "IDLE_S", 0.5)
    gw = await front(legacy.url)
    assert (await gw.client.get("/a")).status_code == 200
    await until(lambda: legacy.open == 0, 10, "the idle connection closed")
    assert (await gw.client.get("/b")).status_code == 200 and legacy.connections == 2


async def test_a_caller_asking_for_100_continue_gets_it_from_the_gateway(front, legacy):
    gw = await front(legacy.url)
    raw = await Raw.open(gw.url)
    await raw.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert (await raw.response()).status == 100
    await raw.send(b"abc")
    answer = await raw.response()
    assert answer.status == 200
    seen = json.loads(answer.body)
    assert seen["body"] == 3 and "expect" not in seen["headers"]  # the upstream is not asked again


async def test_an_answer_before_the_body_is_all_in_is_the_connections_last(front, legacy):
    gw = await front(legacy.url)
    raw = await Raw.open(gw.url)
    await raw.send(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 100_000)
    assert (await raw.response()).status == 413
    assert await raw.closed()  # the rest of the body is never read: nothing after it could be framed


async def test_an_https_upstream_is_verified_against_the_ca_the_operator_names(front, tmp_path):
    with LegacyServer(tls=tmp_path) as legacy:
        assert legacy.url.startswith("https://")
        gw = await front(legacy.url + "/v1", upstream_ca_file=str(tmp_path / "cert.pem"))
        r = await gw.client.post("/users?id=1", content=b"abc")
        assert r.status_code == 200 and r.json()["path"] == "/v1/users?id=1" and r.json()["body"] == 3
        assert r.json()["headers"]["host"] == f"127.0.0.1:{legacy.port}"
        untrusted = await front(legacy.url)  # the system's CAs do not know this certificate
        r = await untrusted.client.get("/users")
        assert r.status_code == 502 and r.json() == {"message": "Bad Gateway"}
