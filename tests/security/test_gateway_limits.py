"""A caller cannot make the gateway or the controller hold unbounded memory or connections.

Each attack of the issue, on real sockets against the embedded platform: a slowloris head, 100,000 headers,
8 MB of headers, `Content-Length: 2^63`, an overlong URL, an Upgrade, and a 200 MB admin body without a token.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.conftest import RunningPlatform
from tests.security.attacks import (
    closed_by_peer,
    connect,
    pid_of,
    read_answer,
    rss_kib,
    send_until_answered,
)

MIB = 1024 * 1024


@pytest.fixture
def quick_platform(platform_with) -> RunningPlatform:
    """The platform with timeouts short enough for a test (the defaults are 10, 30 and 75 s)."""
    return platform_with(FX_HEADER_TIMEOUT="1", FX_BODY_TIMEOUT="1", FX_IDLE_TIMEOUT="2", FX_MAX_CONNECTIONS="40")


@pytest.fixture
def echo(platform, make_function) -> str:
    project = make_function("echo", body="return {'statusCode': 200, 'body': event.get('body') or 'ok'}")
    assert platform.fx("deploy", cwd=project).returncode == 0
    url = f"{platform.gateway_url}/function/echo"
    assert httpx.get(url, timeout=30).status_code == 200
    return url


def test_slowloris_heads_bodies_and_idle_connections_are_cut(quick_platform):
    url = f"{quick_platform.gateway_url}/function/nothing"
    silent, dribbling, stalled, idle = (connect(url) for _ in range(4))
    dribbling.sendall(b"GET /function/nothing HTTP/1.1\r\n")
    stalled.sendall(b"POST /nowhere HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc")
    idle.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert read_answer(idle)[0] == 200
    for _ in range(4):  # one header line a second: each is progress, the head as a whole is not
        time.sleep(0.5)
        try:
            dribbling.sendall(b"X-Slow: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            break
    for sock in (silent, dribbling, stalled):
        status, headers, body = read_answer(sock)
        assert status == 408 and headers["connection"] == "close", body
        assert closed_by_peer(sock)
    assert closed_by_peer(idle)


def test_100000_headers_are_431_before_they_are_all_read(echo, platform):
    sock = connect(echo)
    head = b"GET /function/echo HTTP/1.1\r\nHost: x\r\n"
    status, headers, body = send_until_answered(sock, head, b"".join(b"X-%d: v\r\n" % i for i in range(1000)), 100)
    assert status == 431 and headers["connection"] == "close"
    assert b"HeadersTooLarge" in body


def test_megabytes_of_headers_do_not_grow_the_gateway(echo, platform):
    gateway = pid_of(platform, "gateway")
    before = rss_kib(gateway)
    for _ in range(3):  # the three 100 MB header streams grew the gateway by 290 MB, kept for good
        sock = connect(echo)
        status, _, _ = send_until_answered(sock, b"GET /function/echo HTTP/1.1\r\nX-Big: ", b"v" * 65536, 1600)
        assert status == 431
        sock.close()
    sock = connect(echo)  # 8 MB of ordinary 8 KB headers
    status, _, _ = send_until_answered(sock, b"GET /function/echo HTTP/1.1\r\n", b"X-H: " + b"v" * 8000 + b"\r\n", 1000)
    assert status == 431
    assert rss_kib(gateway) - before < 16 * 1024
    assert httpx.get(echo, timeout=10).status_code == 200


def test_a_content_length_of_2_pow_63_is_413_at_once(echo):
    for length in (b"%d" % 2**63, b"%d" % (7 * MIB)):
        sock = connect(echo, timeout=5)
        sock.sendall(b"POST /function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n" % length)
        status, headers, body = read_answer(sock)  # no body sent: the answer cannot wait for it
        assert status == 413 and headers["connection"] == "close" and b"RequestTooLarge" in body
        assert closed_by_peer(sock)
    sock = connect(echo, timeout=5)
    sock.sendall(b"POST /function/echo HTTP/1.1\r\nContent-Length: 12x\r\n\r\n")
    assert read_answer(sock)[0] == 400


def test_an_overlong_url_is_414(echo):
    sock = connect(echo)
    sock.sendall(b"GET /function/echo?q=" + b"a" * (64 * 1024) + b" HTTP/1.1\r\n\r\n")
    status, headers, _ = read_answer(sock)
    assert status == 414 and headers["connection"] == "close"


def test_an_upgrade_is_served_as_plain_http_and_never_switches(echo):
    sock = connect(echo)
    sock.sendall(
        b"GET /function/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        b"GET /function/echo HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    first = read_answer(sock)
    assert first[0] == 200 and first[2] == b"ok"  # not 101: the connection stays HTTP/1.1
    assert read_answer(sock)[0] == 200
    sock.close()


def test_connections_beyond_the_cap_are_refused_at_once(quick_platform):
    url = quick_platform.gateway_url
    held = [connect(url) for _ in range(40)]
    extra = connect(url)
    status, headers, body = read_answer(extra)
    assert status == 503 and headers["connection"] == "close" and b"TooManyConnections" in body
    for sock in held:
        sock.close()


@pytest.mark.parametrize("via", ["controller", "gateway"])
def test_a_200_mb_admin_body_without_a_token_is_401_and_never_read(platform, via):
    controller = pid_of(platform, "controller")
    before = rss_kib(controller)
    url = platform.controller_url if via == "controller" else platform.gateway_url
    sock = connect(url)
    head = b"PUT /system/functions/hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Content-Length: %d\r\n\r\n" % (200 * MIB)
    status, _, body = send_until_answered(sock, head, b" " * 65536, 3200)
    assert status == 401 and b"Unauthorized" in body
    sock.close()
    assert rss_kib(controller) - before < 16 * 1024  # the issue saw +600 MB


def test_an_admin_body_over_the_limit_is_413_with_the_token(platform):
    sock = connect(platform.controller_url)
    head = b"PUT /system/functions/hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" % platform.token.encode()
    sock.sendall(head + b"Content-Length: %d\r\n\r\n" % (2 * MIB))
    status, _, body = read_answer(sock)
    assert status == 413 and b"RequestTooLarge" in body
