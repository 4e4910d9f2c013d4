"""Fakes for the gateway's tests: a tiny replica HTTP server, a gateway served in-process, route tables."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import httpx
import pytest
from fx.protocol import ActivationReply, ActivationRequest, RouteTable, VersionRoute
from fx_gateway.config import Settings
from fx_gateway.gateway import Gateway

from tests.nats_server import nats_server as running_nats


class FakeReplica:
    """Answers every request with JSON describing it: {"name", "method", "path", "headers", "body"}.

    A path ending in /sleep/SECONDS waits that long first; /close drops the connection without answering,
    /partial after the head and part of the body; /report answers as the runtime does after a handler ran, its
    X-Fx-Report line (2.25 ms, 512 MB) split over two writes.
    While `failures` is above zero, each request is answered as a failed Lambda invoke (502, errorType "Boom");
    while `resets` is, its connection is reset instead (as the kernel resets the connection of a replica that
    died with the request unread: the gateway then knows it never reached the handler).
    `respond(request) -> body`, when set, makes the 200 answer's body instead; every request waits `delay` seconds
    before it is answered.
    /_fx/batch is answered as the runtime does: each of its events seen and answered as a request of its own, with
    its request id (X-Fx-Request-Id) as the batch's header names it. With `cut_after` N, the next batch ends as a
    timeout of its Nth event ends it: that one answered with Sandbox.Timedout, the ones after it never seen.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: asyncio.AbstractServer | None = None
        self.endpoint = ""
        self.requests = 0
        self.seen: list[dict] = []  # every request, as answered
        self.failures = 0
        self.resets = 0
        self.respond: Callable[[dict], bytes] | None = None
        self.relays = False  # answer /_fx/batch 404, as a custom runtime's relay (runtime_api.RelayServer) does
        self.cut_after: int | None = None
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.transports: set[asyncio.Transport] = set()

    async def start(self, unix: Path | None = None) -> FakeReplica:
        """Listen on a free loopback port, or on the Unix socket `unix`."""
        loop = asyncio.get_running_loop()
        if unix is not None:
            self.server = await loop.create_unix_server(lambda: _ReplicaConn(self), str(unix))
            self.endpoint = f"unix:{unix}"
            return self
        self.server = await loop.create_server(lambda: _ReplicaConn(self), "127.0.0.1", 0)
        self.endpoint = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    def batch(self, request: dict) -> bytes:
        """The answer to a /_fx/batch as the runtime's (fx_runtime/batch.py): each event seen and answered as an
        invoke of its own would be, framed."""
        parts = []
        events = json.loads(request["body"])
        given = request["headers"].get("x-fx-request-id")
        ids = given.split(",") if given else [""] * len(events)  # the events' own, else the replica's
        cut, self.cut_after = self.cut_after, None
        for n, event in enumerate(events[:cut]):
            request_id = ids[n] or f"id-{n}"
            seen = {
                **request,
                "body": json.dumps(event),
                "headers": {**request["headers"], "x-fx-request-id": request_id},
            }
            self.seen.append(seen)
            flag, payload = b"-", self.respond(seen) if self.respond else json.dumps(seen).encode()
            if self.failures > 0:
                self.failures -= 1
                flag, payload = b"Unhandled", b'{"errorType": "Boom", "errorMessage": "boom"}'
            if n + 1 == cut:
                flag, payload = b"Unhandled", b'{"errorType": "Sandbox.Timedout", "errorMessage": "timed out"}'
            parts.append(b"%s %s 0.5 %d\n%s" % (request_id.encode(), flag, len(payload), payload))
        body = b"".join(parts)
        head = b"HTTP/1.1 200 OK\r\nX-Fx-Batch: %d 128\r\nContent-Length: %d\r\n\r\n" % (len(parts), len(body))
        return head + body

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for transport in self.transports:
            transport.close()


class _ReplicaConn(asyncio.Protocol):
    def __init__(self, replica: FakeReplica) -> None:
        self.replica = replica
        self.parser = httptools.HttpRequestParser(self)

    def connection_made(self, transport):
        self.transport = transport
        self.replica.connections += 1
        self.replica.transports.add(transport)

    def connection_lost(self, exc):
        self.replica.transports.discard(self.transport)

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_begin(self):
        self.url, self.headers, self.body, self.names = b"", {}, b"", []

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers[name.decode().lower()] = value.decode()
        self.names.append(name.decode().lower())

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        asyncio.get_running_loop().create_task(self.answer(self.parser.get_method().decode(), self.url.decode()))

    async def answer(self, method: str, url: str) -> None:
        replica = self.replica
        replica.requests += 1
        replica.in_flight += 1
        replica.max_in_flight = max(replica.max_in_flight, replica.in_flight)
        try:
            if replica.delay:
                await asyncio.sleep(replica.delay)
            if "/sleep/" in url:
                await asyncio.sleep(float(url.rsplit("/sleep/", 1)[1].split("?")[0]))
            if url.endswith("/close"):
                self.transport.close()
                return
            if "/forged-report/" in url:  # a function writing the report line itself
                value = url.rsplit("/forged-report/", 1)[1].replace("_", " ").encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nX-Fx-Report: %s\r\nContent-Length: 2\r\n\r\nok" % value)
                return
            if url.endswith("/report"):
                self.transport.write(b"HTTP/1.1 200 OK\r\nX-Fx-Report: 2.2")
                await asyncio.sleep(0.01)
                self.transport.write(b"5 512\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                return
            if url.endswith("/partial"):
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
                self.transport.close()
                return
            if replica.resets > 0:
                replica.resets -= 1
                sock = self.transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.transport.abort()
                return
            body = self.body.decode()
            seen = {"name": replica.name, "method": method, "path": url, "headers": self.headers, "body": body}
            seen["header_names"] = self.names
            if url == "/_fx/batch":
                if replica.relays:  # a custom runtime's relay has no /_fx/batch
                    self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    self.transport.write(replica.batch(seen))
                return
            replica.seen.append(seen)
            if replica.failures > 0:
                replica.failures -= 1
                body = b'{"errorType": "Boom", "errorMessage": "boom"}'
                head = b"HTTP/1.1 502 Bad Gateway\r\nX-Amz-Function-Error: Unhandled\r\nContent-Length: %d\r\n\r\n"
                self.transport.write(head % len(body) + body)
                return
            body = replica.respond(seen) if replica.respond else json.dumps(seen).encode()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            self.transport.write(head + body)
        finally:
            replica.in_flight -= 1


@pytest.fixture
async def replicas() -> AsyncIterator[Callable]:
    started: list[FakeReplica] = []

    async def make(name: str = "r", unix: Path | None = None) -> FakeReplica:
        replica = await FakeReplica(name).start(unix)
        started.append(replica)
        return replica

    yield make
    for replica in started:
        await replica.stop()


def table(
    function: str = "hello",
    revision: int = 1,
    versions: dict[str, list[str]] | None = None,
    traffic: dict[str, int] | None = None,
    concurrency: int = 1,
    **extra,
) -> RouteTable:
    versions = versions if versions is not None else {"1": []}
    return RouteTable(
        function=function,
        revision=revision,
        traffic=traffic if traffic is not None else {next(iter(versions)): 100},
        versions={v: VersionRoute(list(e), concurrency) for v, e in versions.items()},
        **extra,
    )


class Message:
    """httptools callbacks collecting one HTTP request or response; `status` is the caller's to set."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}  # lower-case names
        self.body = b""
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


class FakeActivator:
    """Answers activation requests the way a test says, recording them."""

    def __init__(self) -> None:
        self.requests: list[ActivationRequest] = []
        self.reply: Callable[[ActivationRequest], ActivationReply] | None = None
        self.delay = 0.05

    async def __call__(self, request: ActivationRequest, timeout: float) -> ActivationReply:
        self.requests.append(request)
        await asyncio.sleep(self.delay)
        if self.reply is None:
            await asyncio.sleep(timeout)
            raise TimeoutError
        return self.reply(request)


class Running:
    def __init__(self, gateway: Gateway, url: str, server: asyncio.AbstractServer) -> None:
        self.gateway = gateway
        self.url = url
        self.server = server
        self.client = httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=200))


@pytest.fixture
async def gateway() -> AsyncIterator[Callable]:
    """A factory: gateway(activator, **settings) -> Running, served on a free loopback port. With `nats_url`
    in the settings the gateway is not yet connected (`await running.gateway.start()`) and asks the controller
    over NATS for replicas unless given an activator; without, a FakeActivator answers and /healthz is 200."""
    running: list[Running] = []

    async def make(activator=None, **settings) -> Running:
        if "nats_url" in settings:
            gw = Gateway(Settings(**settings), activator)
        else:
            gw = Gateway(Settings(**settings), activator or FakeActivator())
            gw.pages.healthy = lambda: True
        server = await asyncio.get_running_loop().create_server(gw.connection, "127.0.0.1", 0)
        run = Running(gw, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", server)
        running.append(run)
        return run

    yield make
    for run in running:
        await run.client.aclose()
        run.server.close()
        for conn in list(run.gateway.connections.open):
            conn.abort()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[str]:
    """A real nats-server with JetStream on a free loopback port; yields its URL."""
    with running_nats(tmp_path / "nats") as url:
        yield url


class Raw:
    """One connection to the gateway, written to and read from byte by byte as a test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser: httptools.HttpResponseParser | None = None
        self.answer = Message()

    @classmethod
    async def open(cls, url: str) -> Raw:
        parts = urlsplit(url)
        return cls(*await asyncio.open_connection(parts.hostname, parts.port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 5.0) -> Message:
        """The next answer on the connection (the test fails if none comes)."""
        self.answer = answer = Message()
        self.parser = httptools.HttpResponseParser(answer)
        async with asyncio.timeout(timeout):
            while not answer.complete:
                data = await self.reader.read(65536)
                assert data, "the connection closed without an answer"
                self.parser.feed_data(data)
        answer.status = self.parser.get_status_code()
        return answer

    async def closed(self, timeout: float = 5.0) -> bool:
        """Whether the gateway closes the connection (reading and dropping whatever else arrives)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


async def dead_letters(nc, count: int, timeout: float = 5.0) -> list:
    """The first `count` dead letters of the FX_DLQ stream."""
    sub = await nc.jetstream().subscribe("fx.dlq.>", ordered_consumer=True)
    letters = []
    async with asyncio.timeout(timeout):
        while len(letters) < count:
            letters.append(await sub.next_msg(timeout=timeout))
    await sub.unsubscribe()
    return letters


async def serving(gateway, replicas, **settings):
    """A gateway with these settings routing `hello` version 1 to one fake replica."""
    replica = await replicas()
    gw = await gateway(**settings)
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    return gw, replica
