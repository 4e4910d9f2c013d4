"""HTTP/1.1 edges a caller or a replica can put the gateway on: pipelining, Expect: 100-continue, malformed and
smuggling requests, and replica answers arriving in pieces.

Raw sockets on both sides, since an HTTP library would neither send nor answer most of these.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.gateway.conftest import Raw, serving, table


async def test_two_requests_in_one_write_are_both_answered_in_order(gateway, replicas):
    gw, replica = await serving(gateway, replicas)
    raw = await Raw.open(gw.url)
    # The first is the slower one: an answer in order must wait for it.
    await raw.send(b"GET /function/hello/sleep/0.3 HTTP/1.1\r\n\r\nGET /function/hello/fast HTTP/1.1\r\n\r\n")
    first, second = await raw.response(), await raw.response()
    assert (first.status, second.status) == (200, 200)
    assert b"/_fx/http/sleep/0.3" in first.body and b"/_fx/http/fast" in second.body
    assert replica.requests == 2
    raw.close()


async def test_expect_100_continue_gets_100_before_the_body_is_sent(gateway, replicas):
    gw, replica = await serving(gateway, replicas)
    raw = await Raw.open(gw.url)
    await raw.send(b"POST /function/hello HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    async with asyncio.timeout(5):
        interim = await raw.reader.readuntil(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    await raw.send(b"hello")
    answer = await raw.response()
    assert answer.status == 200
    assert replica.seen[0]["body"] == "hello" and "expect" not in replica.seen[0]["headers"]  # hop-by-hop
    raw.close()


async def test_expect_100_continue_with_a_body_over_the_limit_is_413_without_100(gateway, replicas):
    gw, replica = await serving(gateway, replicas)
    gw.gateway.book.apply(table(revision=2, versions={"1": [replica.endpoint]}, max_request_bytes=1000))
    raw = await Raw.open(gw.url)
    await raw.send(b"POST /function/hello HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n")
    answer = await raw.response()  # the first answer is the refusal: no 100 before it
    assert answer.status == 413 and answer.headers["connection"] == "close"
    assert await raw.closed()
    assert replica.requests == 0


SMUGGLED = b"\r\n0\r\n\r\nGET /function/hello/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="bad-request-line"),
        pytest.param(b"GET /function/hello HTTP/9\r\n\r\n", id="bad-version"),
        pytest.param(b"GET /function/hello HTTP/1.1\r\nBad Header: x\r\n\r\n", id="space-in-header-name"),
        pytest.param(b"GET /function/hello HTTP/1.1\r\nNoColon\r\n\r\n", id="header-without-colon"),
        pytest.param(b"GET /function/hello HTTP/1.1\r\nX-A: a\rb\r\n\r\n", id="bare-cr-in-value"),
        pytest.param(
            b"POST /function/hello HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            id="two-content-lengths",
        ),
        # Smuggling: a front proxy and the gateway that disagreed on where a body ends would let its tail be a
        # second request; the gateway refuses every ambiguous framing instead of picking one.
        pytest.param(
            b"POST /function/hello HTTP/1.1\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n" + SMUGGLED,
            id="CL.TE",
        ),
        pytest.param(
            b"POST /function/hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n" + SMUGGLED,
            id="TE.CL",
        ),
        pytest.param(
            b"POST /function/hello HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"
            + SMUGGLED,
            id="TE.TE",
        ),
        pytest.param(
            b"POST /function/hello HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n" + SMUGGLED, id="unknown-coding"
        ),
    ],
)
async def test_a_malformed_or_ambiguous_request_is_400_closed_and_never_reaches_a_replica(
    gateway, replicas, request_bytes
):
    gw, replica = await serving(gateway, replicas)
    raw = await Raw.open(gw.url)
    await raw.send(request_bytes)
    answer = await raw.response()
    assert answer.status == 400 and answer.headers["connection"] == "close"
    assert b"malformed HTTP request" in answer.body
    assert await raw.closed()
    assert (await gw.client.get("/function/hello/next")).status_code == 200
    assert [seen["path"] for seen in replica.seen] == ["/_fx/http/next"]


class PieceReplica:
    """A replica that writes a fixed answer in the pieces a test gives, letting each reach the gateway alone."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.server: asyncio.AbstractServer | None = None
        self.endpoint = ""
        self.writers: set[asyncio.StreamWriter] = set()
        self.serving: set[asyncio.Task] = set()

    async def start(self) -> PieceReplica:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.endpoint = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        self.serving.add(asyncio.current_task())  # type: ignore[arg-type]
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            lines = [line.lower() for line in head.split(b"\r\n")]
            await reader.readexactly(sum(int(line[15:]) for line in lines if line.startswith(b"content-length:")))
            for piece in self.pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.02)  # a separate read on the gateway's side
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:  # ends each connection's loop before the test's event loop does
            writer.close()
        await asyncio.gather(*self.serving)


BODY = b'{"ok": true}'


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param([b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", BODY], id="head-then-body"),
        pytest.param(
            [b"HTT", b"P/1.1 2", b"00 OK\r", b"\nContent-Le", b"ngth: 12\r\n", b"\r\n{", b'"ok": true}'], id="bits"
        ),
        pytest.param(
            [b"HTTP/1.1 200 OK\r\n", b"X-Amz-Executed-Version: 1\r\n", b"Content-Length: 12\r\n\r\n" + BODY],
            id="version-named-in-a-later-read",
        ),
    ],
)
async def test_an_answer_split_across_reads_reaches_the_caller_whole_with_its_version_named_once(gateway, pieces):
    replica = await PieceReplica(pieces).start()
    try:
        gw = await gateway()
        gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
        for _ in range(2):  # and the replica connection, kept alive, frames the next answer right
            r = await gw.client.post("/2015-03-31/functions/hello/invocations", content=b"{}")
            assert r.status_code == 200 and r.content == BODY
            # The replica's own name for the version stands; else the gateway's: $LATEST, for an unqualified call
            named = any(b"X-Amz-Executed-Version" in piece for piece in pieces)
            assert r.headers.get_list("X-Amz-Executed-Version") == ["1" if named else "$LATEST"]
            http = await gw.client.get("/function/hello")
            assert http.status_code == 200 and http.content == BODY
    finally:
        await replica.stop()
