"""What one caller connection may cost the gateway: sizes, counts, timeouts, connections, protocol switches.

Raw sockets, since an HTTP client library would refuse to send most of these requests.
"""

from __future__ import annotations

import asyncio
import time

from tests.unit.gateway.conftest import Raw, serving, table


async def test_an_overlong_request_target_is_414_and_the_connection_closes(gateway, replicas):
    gw, replica = await serving(gateway, replicas, max_url_bytes=1024)
    raw = await Raw.open(gw.url)
    await raw.send(b"GET /function/hello/" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await raw.response()
    assert answer.status == 414 and answer.headers["connection"] == "close"
    assert "1024 bytes" in answer.body.decode()
    assert await raw.closed()
    assert replica.requests == 0
    ok = await gw.client.get("/function/hello/" + "a" * 900)
    assert ok.status_code == 200


async def test_too_many_headers_are_431(gateway, replicas):
    gw, replica = await serving(gateway, replicas, max_headers=100)
    raw = await Raw.open(gw.url)
    head = b"GET /function/hello HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(100_000)) + b"\r\n"
    raw.writer.write(head)  # not drained: the gateway stops reading once it refuses
    answer = await raw.response()
    assert answer.status == 431 and answer.headers["connection"] == "close"
    assert await raw.closed()
    assert replica.requests == 0
    assert (await gw.client.get("/function/hello", headers={f"X-{i}": "v" for i in range(90)})).status_code == 200


async def test_header_bytes_are_bounded_in_total_and_within_one_unfinished_header(gateway, replicas):
    gw, replica = await serving(gateway, replicas, max_header_bytes=32 * 1024)
    many = await Raw.open(gw.url)
    await many.send(
        b"GET /function/hello HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(40))
    )
    assert (await many.response()).status == 431
    one = await Raw.open(gw.url)  # one header that never ends: httptools buffers it, the gateway counts it
    await one.send(b"GET /function/hello HTTP/1.1\r\nX-Big: ")
    for _ in range(64):
        one.writer.write(b"v" * 65536)
        if one.reader.at_eof() or one.reader._buffer:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0)
    answer = await one.response()
    assert answer.status == 431
    assert await one.closed()
    assert replica.requests == 0


async def test_a_content_length_over_the_limit_is_413_at_once_without_reading_the_body(gateway, replicas):
    gw, replica = await serving(gateway, replicas, max_request_bytes=1000)
    for length in (b"1001", b"%d" % 2**63):
        raw = await Raw.open(gw.url)
        await raw.send(b"POST /function/hello HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\nabc" % length)
        answer = await raw.response()
        assert answer.status == 413 and answer.headers["connection"] == "close"
        assert answer.body.startswith(b'{"error": {"code": "RequestTooLarge"')
        assert await raw.closed()
    assert replica.requests == 0


async def test_a_malformed_content_length_is_400(gateway, replicas):
    gw, _ = await serving(gateway, replicas)
    for length in (b"12a", b"%d" % 2**64, b"-1"):
        raw = await Raw.open(gw.url)
        await raw.send(b"POST /function/hello HTTP/1.1\r\nContent-Length: %s\r\n\r\n" % length)
        assert (await raw.response()).status == 400
        assert await raw.closed()


async def test_a_chunked_body_is_refused_once_it_outgrows_the_limit(gateway, replicas):
    gw, replica = await serving(gateway, replicas, max_request_bytes=1000)
    raw = await Raw.open(gw.url)
    await raw.send(b"POST /function/hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    await raw.send(b"400\r\n" + b"x" * 1024 + b"\r\n")  # never the last chunk
    answer = await raw.response()
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert await raw.closed()
    assert replica.requests == 0


async def test_an_async_call_over_the_async_limit_is_413_at_once(gateway, replicas):
    gw, _ = await serving(gateway, replicas, async_max_bytes=100)
    raw = await Raw.open(gw.url)
    await raw.send(b"POST /async-function/hello HTTP/1.1\r\nContent-Length: 101\r\n\r\n")
    answer = await raw.response()
    assert answer.status == 413 and b"100 bytes" in answer.body


async def test_a_body_the_gateway_does_not_need_is_refused_past_a_bound(gateway):
    gw = await gateway()
    raw = await Raw.open(gw.url)
    await raw.send(b"POST /nowhere HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % 2**40 + b"x" * 100_000)
    answer = await raw.response()
    assert answer.status == 404 and answer.headers["connection"] == "close"
    assert await raw.closed()


async def test_an_upgrade_request_is_served_as_plain_http(gateway, replicas):
    gw, replica = await serving(gateway, replicas)
    raw = await Raw.open(gw.url)
    upgrade = b"GET /function/hello/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    await raw.send(upgrade + b"GET /function/hello/next HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await raw.response()
    assert first.status == 200 and "upgrade" not in first.headers
    seen = replica.seen[0]
    assert seen["path"] == "/_fx/http/ws" and "upgrade" not in seen["headers"]  # hop-by-hop: never forwarded
    assert (await raw.response()).status == 200  # the connection goes on in HTTP/1.1
    assert replica.seen[1]["path"] == "/_fx/http/next"
    raw.close()


async def test_upgrade_with_a_body_and_connect_are_refused(gateway, replicas):
    gw, replica = await serving(gateway, replicas)
    raw = await Raw.open(gw.url)
    await raw.send(
        b"POST /function/hello HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabc"
    )
    answer = await raw.response()
    assert answer.status == 400 and b"without Upgrade" in answer.body
    raw = await Raw.open(gw.url)
    await raw.send(b"CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n")
    assert (await raw.response()).status == 405
    assert await raw.closed()
    assert replica.requests == 0


async def test_connections_beyond_the_cap_are_answered_503_and_closed(gateway, replicas):
    gw, _ = await serving(gateway, replicas, max_connections=2)
    held = [await Raw.open(gw.url) for _ in range(2)]
    await asyncio.sleep(0.05)
    extra = await Raw.open(gw.url)
    answer = await extra.response()
    assert answer.status == 503 and answer.headers["connection"] == "close"
    assert await extra.closed()
    held[0].close()
    await asyncio.sleep(0.05)
    assert (await gw.client.get("/function/hello")).status_code == 200


async def test_a_slow_head_is_408_then_closed(gateway, replicas):
    gw, replica = await serving(gateway, replicas, header_timeout=0.2)
    silent = await Raw.open(gw.url)  # connects and sends nothing
    slow = await Raw.open(gw.url)
    await slow.send(b"GET /function/hello HTTP/1.1\r\nX-A: 1\r\n")
    await asyncio.sleep(0.3)
    gw.gateway.connections.sweep(time.monotonic())
    for raw in (silent, slow):
        answer = await raw.response()
        assert answer.status == 408 and answer.headers["connection"] == "close"
    gw.gateway.connections.sweep(time.monotonic() + 3)  # after the linger
    assert await slow.closed(1) and await silent.closed(1)
    assert replica.requests == 0


async def test_a_stalled_body_is_408_then_closed(gateway, replicas):
    gw, replica = await serving(gateway, replicas, body_timeout=0.2)
    raw = await Raw.open(gw.url)
    await raw.send(b"POST /function/hello HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    await asyncio.sleep(0.3)
    gw.gateway.connections.sweep(time.monotonic())
    assert (await raw.response()).status == 408
    assert replica.requests == 0


async def test_an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not(gateway, replicas):
    gw, _ = await serving(gateway, replicas, idle_timeout=0.2, header_timeout=0.2)
    idle, busy = await Raw.open(gw.url), await Raw.open(gw.url)
    await idle.send(b"GET /function/hello HTTP/1.1\r\n\r\n")
    assert (await idle.response()).status == 200
    await busy.send(b"GET /function/hello/sleep/0.6 HTTP/1.1\r\n\r\n")
    await asyncio.sleep(0.3)
    gw.gateway.connections.sweep(time.monotonic())
    assert await idle.closed(1)
    assert (await busy.response()).status == 200  # waiting on the function is not the caller's delay


async def test_a_route_table_far_ahead_of_the_clock_is_refused(gateway, replicas):
    gw, _ = await serving(gateway, replicas)
    now = time.time_ns()
    gw.gateway.book.apply(table(revision=now, versions={"1": ["127.0.0.1:9"]}))
    forged = table(revision=now + 10**13, versions={"1": ["127.0.0.1:1"]})
    gw.gateway.book.apply(forged)
    assert gw.gateway.book.functions["hello"].table.revision == now
    gw.gateway.book.apply(table("other", revision=now + 10**13))  # a first table too
    assert "other" not in gw.gateway.book.functions
    gw.gateway.book.apply(table(revision=now + 30 * 10**9, versions={"1": ["127.0.0.1:2"]}))  # within the skew
    assert gw.gateway.book.functions["hello"].table.revision == now + 30 * 10**9
