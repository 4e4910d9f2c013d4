"""/system/* through the gateway: a body reaches the controller only once it asked for it, and is bounded."""

from __future__ import annotations

import asyncio
import re

from tests.unit.gateway.conftest import Raw
from tests.waiting import until


class FakeController:
    """Answers 200 after reading the body of requests carrying `Bearer ok` (saying 100 Continue first when
    asked), resets the connection after 100 Continue to `Bearer reset`, and 401 from the head alone to the
    others, recording what arrived after that head."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.after_refusal: list[bytes] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        if b"Authorization: Bearer reset" in head:  # asks for the body, then dies without answering
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await reader.read(1)
            writer.transport.abort()
            return
        if b"Authorization: Bearer ok" in head:
            if b"Expect: 100-continue" in head:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.bodies.append(await reader.readexactly(int(re.search(rb"Content-Length: (\d+)", head)[1])))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        else:
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno")
            writer.write_eof()
            self.after_refusal.append(await asyncio.wait_for(reader.read(), 5))
        await writer.drain()
        writer.close()


async def proxied(gateway, **settings):
    controller = FakeController()
    port = await controller.start()
    return await gateway(controller_host="127.0.0.1", controller_port=port, **settings), controller


async def test_a_body_is_sent_after_the_controllers_100_continue(gateway):
    gw, controller = await proxied(gateway)
    r = await gw.client.put("/system/functions/x", content=b'{"a": 1}', headers={"Authorization": "Bearer ok"})
    assert r.status_code == 200 and r.content == b"ok"  # the 100 the gateway asked for is not relayed
    assert b"Expect: 100-continue" in controller.heads[0] and controller.bodies == [b'{"a": 1}']
    raw = await Raw.open(gw.url)  # a caller that asks for 100 Continue itself gets it
    await raw.send(
        b"PUT /system/x HTTP/1.1\r\nAuthorization: Bearer ok\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    )
    assert (await raw.response()).status == 100
    await raw.send(b"abc")
    assert (await raw.response()).status == 200 and controller.bodies[-1] == b"abc"


async def test_a_controller_gone_before_its_answer_is_a_502_not_a_dropped_connection(gateway):
    gw, _ = await proxied(gateway)
    r = await gw.client.put("/system/artifacts/x", content=b" " * 500_000, headers={"Authorization": "Bearer reset"})
    assert r.status_code == 502 and r.json()["error"]["code"] == "ControllerUnavailable", r.text
    assert "without answering" in r.json()["error"]["message"]


async def test_a_request_refused_from_its_head_never_sends_its_body(gateway):
    gw, controller = await proxied(gateway)
    raw = await Raw.open(gw.url)
    await raw.send(b"PUT /system/functions/x HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n" + b" " * 100_000)
    answer = await raw.response()
    assert answer.status == 401 and answer.body == b"no"
    assert await raw.closed()
    await until(lambda: controller.after_refusal)
    assert controller.after_refusal == [b""]  # not a byte of the body went to the controller


async def test_system_bodies_are_bounded(gateway):
    gw, controller = await proxied(gateway, system_max_bytes=1000)
    raw = await Raw.open(gw.url)
    await raw.send(b"PUT /system/x HTTP/1.1\r\nAuthorization: Bearer ok\r\nContent-Length: 1001\r\n\r\n")
    answer = await raw.response()
    assert answer.status == 413 and b"1000 bytes" in answer.body
    assert controller.heads == []  # refused before the controller heard of it
    raw = await Raw.open(gw.url)
    await raw.send(b"PUT /system/x HTTP/1.1\r\nAuthorization: Bearer ok\r\nTransfer-Encoding: chunked\r\n\r\n")
    await raw.send(b"800\r\n" + b"x" * 2048 + b"\r\n")
    assert (await raw.response()).status == 413
