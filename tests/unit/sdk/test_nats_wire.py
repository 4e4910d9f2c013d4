"""fx.nats_wire's parser against nats-py's own, read by read, and Client.take against a real nats-server."""

from __future__ import annotations

import json
from pathlib import Path

import nats
import pytest
from fx import nats_client, nats_wire
from fx.nats_wire import Parser
from nats.errors import ProtocolError
from nats.protocol.parser import Parser as NatsPyParser

from tests.nats_server import nats_server
from tests.waiting import until

INFO = b'INFO {"server_id":"x","max_payload":1048576}\r\n'
HEADERS = b"NATS/1.0\r\nA: 1\r\n\r\n"
STATUS = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\n\r\n"
WIRE = b"".join(
    [
        INFO,
        b"MSG orders.new 1 _INBOX.a.b 2\r\n{}\r\n",
        b"MSG orders.new 1 0\r\n\r\n",
        b"+OK\r\n",
        b"MSG a 12 13\r\nMSG b 1 1\r\n\r\n\r\n",  # a payload that looks like lines
        b"HMSG h.x 3 $JS.ACK.S.C.1.2.3.4.5 %d %d\r\n%sdata\r\n" % (len(HEADERS), len(HEADERS) + 4, HEADERS),
        b"PING\r\n",
        b"HMSG _INBOX.y 4 %d %d\r\n%s\r\n" % (len(STATUS), len(STATUS), STATUS),
        b"MSG\tt 5 2\r\nok\r\n",  # a tab after MSG: nats-py's parser takes the rest of the read
        b"MSG after 6 3\r\nend\r\n",
        b"PONG\r\n",
        b"MSG big 7 %d\r\n%s\r\n" % (3000, b"x" * 3000),
    ]
)


class Recorder:
    """The parts of a nats-py client a parser calls, recording what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    async def _process_msg(self, sid, subject, reply, payload, headers) -> None:
        self.seen.append(("msg", sid, bytes(subject), bytes(reply), bytes(payload), headers and bytes(headers)))

    def take(self, sid, subject, reply, data, headers) -> bool:
        return False

    async def _process_ping(self) -> None:
        self.seen.append(("ping",))

    async def _process_pong(self) -> None:
        self.seen.append(("pong",))

    async def _process_info(self, info) -> None:
        self.seen.append(("info", info))

    async def _process_err(self, err) -> None:
        self.seen.append(("err", err))


async def parsed(parser_class, wire: bytes, step: int) -> list[tuple]:
    recorder = Recorder()
    parser = parser_class(recorder)
    for i in range(0, len(wire), step):
        await parser.parse(wire[i : i + step])
    assert not parser.buf
    return recorder.seen


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 16, 61, 1000, 100_000])
async def test_what_is_read_is_told_as_nats_py_tells_it_however_the_reads_cut_it(step: int):
    expected = await parsed(NatsPyParser, WIRE, len(WIRE))
    assert [e[0] for e in expected].count("msg") == 8  # the stream above, all of it understood
    assert await parsed(Parser, WIRE, step) == expected


@pytest.mark.parametrize(
    "line",
    [b"MSG a\r\n", b"MSG a 1 b c d\r\n", b"MSG a 1 -2\r\n", b"MSG a x 2\r\n", b"HMSG a 1 x 2\r\n", b"HMSG a 1 2\r\n"],
)
async def test_a_malformed_message_line_is_a_protocol_error_as_in_nats_py(line: bytes):
    """A ProtocolError makes nats-py's read loop reconnect; any other exception would end it silently."""
    for parser_class in (NatsPyParser, Parser):
        with pytest.raises(ProtocolError):
            await parsed(parser_class, line + b"xx\r\n", 100)


class Collector:
    """A subscription's `future` that is never done: every message, as fx's pulls take them."""

    def __init__(self) -> None:
        self.messages: list = []

    def cancelled(self) -> bool:
        return False

    def set_result(self, msg) -> None:
        self.messages.append(msg)


def fields(msg) -> dict:
    return {"subject": msg.subject, "reply": msg.reply, "data": msg.data, "headers": msg.headers, "sid": msg._sid}


async def test_take_hands_a_future_the_message_nats_py_would(tmp_path: Path):
    with nats_server(tmp_path / "nats") as url:
        fx = await nats_client.connect(url, "test")
        plain = await nats.connect(url)
        taken, made = Collector(), Collector()
        sub = await fx.subscribe("work.>", future=taken)  # type: ignore[arg-type]
        other = await plain.subscribe("work.>", future=made)  # type: ignore[arg-type]
        assert sub._id == other._id  # the same sid on either connection: the messages compare whole
        await plain.flush()
        await fx.flush()
        await plain.publish("work.a", b"1", reply="back.1")
        await plain.publish("work.b", b"2" * 70_000)  # over a read: its payload comes in pieces
        await plain.publish("work.c", b"3", headers={"K": "v", "Other": " ünï: x "})
        await plain.publish("work.d", b"", headers={})
        status = b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\n\r\n"  # as a pull request ends
        plain._transport.write(b"HPUB work.e %d %d\r\n%s\r\n" % (len(status), len(status), status))
        await until(lambda: len(taken.messages) == len(made.messages) == 5, 5, "the five messages")
        by_subject = {m.subject: m for m in taken.messages}
        assert by_subject["work.c"].headers == {"K": "v", "Other": "ünï: x"} and by_subject["work.d"].headers is None
        assert by_subject["work.e"].headers == {
            "Status": "408",
            "Description": "Request Timeout",
            "Nats-Pending-Messages": "5",
        }
        assert [fields(m) for m in taken.messages] == [fields(m) for m in made.messages]
        assert by_subject["work.a"]._client is fx and not by_subject["work.a"]._ackd
        assert fx.stats["in_msgs"] == plain.stats["in_msgs"] and fx.stats["in_bytes"] == plain.stats["in_bytes"]

        async def echo(msg) -> None:  # a callback subscription and a request, which take leaves to nats-py
            await msg.respond(json.dumps({"got": msg.data.decode()}).encode())

        await plain.subscribe("echo", cb=echo)
        await plain.flush()
        answer = await fx.request("echo", b"hi", timeout=5)
        assert json.loads(answer.data) == {"got": "hi"}
        await plain.close()
        await fx.close()


def test_the_installed_nats_py_is_read_by_fx_s_parser_and_another_shape_by_its_own(monkeypatch):
    """FAST_WIRE false means a nats-py release whose internals changed: fx.nats_wire and Client.take need a look."""
    assert nats_client.FAST_WIRE and isinstance(nats_client.Client()._ps, Parser)
    monkeypatch.setattr(nats_client, "FAST_WIRE", False)
    assert type(nats_client.Client()._ps) is NatsPyParser
    monkeypatch.setattr(nats_wire, "_MSG_FIELDS", ("subject", "_client", "reply", "data"))  # fields reordered
    assert not nats_wire.fits()
