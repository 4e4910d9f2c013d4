"""Reading NATS's wire protocol: nats-py's parser, with a faster path for the messages (MSG and HMSG).

nats-py's parser tries a regular expression per line (MSG's, then HMSG's), keeps each message's fields in a
dict and deletes every line and payload from the front of its buffer, then awaits a coroutine per message:
3.5 µs a message of 100 read together, to the subscription's future (bench/README.md, Events, round 9). Here a
read is cut with find() and split() at offsets into it and a message is handed over by `Client.take`
(fx.nats_client), no coroutine: 1.8 µs. Any other line (PING, PONG, INFO, +OK, -ERR) goes to
nats-py's own parser with the rest of the read, so what it does for those stays its own.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ProtocolError
from nats.protocol import parser

if TYPE_CHECKING:
    from fx.nats_client import Client

_CONTROL, _PAYLOAD = parser.AWAITING_CONTROL_LINE, parser.AWAITING_MSG_PAYLOAD
_MSG_FIELDS = ("_client", "subject", "reply", "data", "headers", "_metadata", "_ackd", "_sid")  # Client.take's order


def fits() -> bool:
    """Whether the installed nats-py has the internals this parser and Client.take use (nats-py 2.16's): with any
    other shape (a later release), fx.nats_client keeps nats-py's own parser, slower but its own."""
    state = parser.Parser(None)
    sub = Subscription(None)
    return (
        tuple(field.name for field in dataclasses.fields(Msg)) == _MSG_FIELDS
        and callable(getattr(NATS, "_parse_header_lines", None))
        and all(hasattr(state, name) for name in ("buf", "state", "needed", "header_needed", "msg_arg"))
        and all(hasattr(sub, name) for name in ("_future", "_max_msgs", "_jsi", "_received"))
    )


class Parser(parser.Parser):
    nc: Client

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf  # reset() (a reconnect) puts a new one in its place: what is left of this read is stale
        if buf:  # the rest of the last read: a line or a payload cut in two
            buf.extend(data)
            if self.state == _PAYLOAD and len(buf) < self.needed + 2:
                return  # a large payload still on its way: copied once it is whole, not at every read
            data = bytes(buf)
            buf.clear()
        nc = self.nc
        size = len(data)
        pos = 0
        while pos < size:
            if self.state == _PAYLOAD:  # a message whose line came in an earlier read
                end = pos + self.needed
                if end + 2 > size:
                    break
                arg, header_size = self.msg_arg, self.header_needed
                sid, subject, reply = arg["sid"], arg["subject"], arg["reply"]
                self.state, self.header_needed = _CONTROL, 0
            else:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    break
                try:
                    if data.startswith(b"MSG ", pos):
                        fields = data[pos + 4 : eol].split()
                        header_size = 0
                        if len(fields) == 4:
                            subject, sid_text, reply, total = fields
                        else:
                            subject, sid_text, total = fields
                            reply = b""
                    elif data.startswith(b"HMSG ", pos):
                        fields = data[pos + 5 : eol].split()
                        if len(fields) == 5:
                            subject, sid_text, reply, headers_text, total = fields
                        else:
                            subject, sid_text, headers_text, total = fields
                            reply = b""
                        if not headers_text.isdigit():
                            raise ValueError(headers_text)
                        header_size = int(headers_text)
                    else:  # any other line: nats-py's parser, from here to the end of the read
                        buf[:] = data[pos:]
                        await super().parse()
                        return
                    if not total.isdigit():
                        raise ValueError(total)
                    sid = int(sid_text)
                except ValueError:
                    raise ProtocolError("nats: malformed MSG") from None
                pos = eol + 2
                end = pos + int(total)
                if end + 2 > size:  # its payload is still on its way
                    self.msg_arg.update(subject=subject, sid=sid, reply=reply)
                    self.needed, self.header_needed, self.state = end - pos, header_size, _PAYLOAD
                    break
            if header_size:
                headers, payload = data[pos : pos + header_size], data[pos + header_size : end]
            else:
                headers, payload = None, data[pos:end]
            pos = end + 2
            if not nc.take(sid, subject, reply, payload, headers):
                await nc._process_msg(sid, subject, reply, payload, headers)  # type: ignore[arg-type]
                if self.buf is not buf:
                    return
        if pos < size:
            buf[:] = data[pos:]
