"""Publishing without a coroutine, for what the triggers send per event (a request's reply, a JetStream ack).

nats-py's publish() is a coroutine that appends the PUB command to the client's pending buffer and wakes its
flusher task; awaiting one per event cost the gateway more than the command itself. `publish` does the same at
once, so that a batch's replies or acks are written together and flushed by one wake-up. It reads nats-py's
internals (`_status`, `_max_payload`, `_pending`, `_pending_data_size`, `_max_pending_size`, `_flush_queue`):
this module is the one place that does, and tests/unit/gateway/test_publish.py pins that its commands are the
bytes publish() writes and its errors nats-py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import nats.errors
from nats.aio.client import Client as NATS

ACK = b"+ACK"
_HEADER_LINE = b"NATS/1.0\r\n"
_PUB = b"PUB %s %s %d\r\n%s\r\n"  # subject, reply, size, payload
_ACK_PUB = _PUB % (b"%s", b"", len(ACK), ACK)  # an ack's whole command but its subject: 3x cheaper per ack


def header_block(headers: Mapping[str, str]) -> bytes:
    """Headers as a message carries them (names are the caller's constants; values lose CR/LF, as nats-py's)."""
    lines = b"".join(
        b"%s: %s\r\n" % (name.encode(), value.strip().replace("\r", " ").replace("\n", " ").encode())
        for name, value in headers.items()
    )
    return _HEADER_LINE + lines + b"\r\n"


_CONNECTED, _CLOSED = NATS.CONNECTED, NATS.CLOSED
_DRAINING_PUBS, _DRAINING_SUBS = NATS.DRAINING_PUBS, NATS.DRAINING_SUBS


def publish(nc: NATS, subject: str, payload: bytes, headers: bytes = b"", reply: str = "") -> None:
    """What `await nc.publish(subject, payload, reply, headers)` does, now: `headers` is a header_block().
    Raises nats.errors.Error as publish() does (closed, draining, over max_payload, buffer full while away)."""
    size = len(payload)
    connected = _may_buffer(nc, size, size)
    if headers:
        total = len(headers) + size
        command = b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
            subject.encode(),
            reply.encode(),
            len(headers),
            total,
            headers,
            payload,
        )
    else:
        command = _PUB % (subject.encode(), reply.encode(), size, payload)
    _buffer(nc, command, 1, size, connected)


def ack(nc: NATS, reply: str) -> None:
    """Acknowledge the JetStream message whose reply subject is `reply`, as `await msg.ack()` does."""
    publish(nc, reply, ACK)


def acks(nc: NATS, replies: list[str]) -> None:
    """ack() each of `replies`, checked and buffered once for all (a batch of 100 records is acked so)."""
    if not replies:
        return
    connected = _may_buffer(nc, len(ACK) * len(replies), len(ACK))
    command = b"".join([_ACK_PUB % reply.encode() for reply in replies])
    _buffer(nc, command, len(replies), len(ACK) * len(replies), connected)


def _may_buffer(nc: NATS, size: int, largest: int) -> bool:
    """Whether the client is connected; raises as publish() does, in its order, when payloads of `size` bytes in
    all, the largest `largest`, may not be buffered."""
    status = nc._status  # read once: the client's is_closed, is_draining_pubs, is_connected are a call each
    if status == _CLOSED:
        raise nats.errors.ConnectionClosedError
    if status == _DRAINING_PUBS:
        raise nats.errors.ConnectionDrainingError
    if largest > nc._max_payload:
        raise nats.errors.MaxPayloadError
    connected = status == _CONNECTED or status == _DRAINING_SUBS  # nc.is_connected (draining pubs raised above)
    if not connected and (nc._max_pending_size <= 0 or size + nc._pending_data_size > nc._max_pending_size):
        raise nats.errors.OutboundBufferLimitError  # reconnecting, and nothing more may be buffered
    return connected


def _buffer(nc: NATS, command: bytes, messages: int, size: int, connected: bool) -> None:
    nc._pending.append(command)
    nc._pending_data_size += len(command)
    nc.stats["out_msgs"] += messages
    nc.stats["out_bytes"] += size
    queue = nc._flush_queue
    if connected and queue is not None and queue.empty():  # wake the flusher (a reconnect flushes what waits)
        queue.put_nowait(asyncio.get_running_loop().create_future())
