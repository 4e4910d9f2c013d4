"""A NATS connection that never gives up: every fx process's connection to NATS.

nats-py reconnects forever (max_reconnect_attempts=-1) after a lost socket, but an `-ERR` from the server
while connected (other than a stale connection or a permissions violation) makes it close the client for
good: its subscriptions are dropped and every later call fails, so a controller or gateway that met, say,
`User Authentication Expired` or `Maximum Payload Violation` once was cut off until someone restarted it.
Here such an error starts a reconnect instead (the server has closed the socket anyway), so subscriptions
are replayed, and the creds file is read again.

Who must redo something after a reconnect (a KV watch whose consumer died with nats-server, a bucket to
re-create) waits for `reconnected()` or registers with `on_reconnect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats.errors
from nats.aio.client import PING_PROTO
from nats.aio.client import Client as NATS
from nats.aio.client import parse_email as _parse_email  # None unless fast_mail_parser is installed
from nats.aio.msg import Msg

from fx import nats_wire

log = logging.getLogger("fx.nats")

RECONNECT_WAIT_S = 0.5  # between two attempts; nats-py's default of 2 s only lengthens an outage
# A connection whose peer vanished without a word (a node lost, not a process) is found dead after
# PING_INTERVAL_S * MAX_OUTSTANDING_PINGS, not nats-py's 2 x 120 s.
PING_INTERVAL_S = 10
MAX_OUTSTANDING_PINGS = 3
# At a stop: the longest a NATS server that no longer answers may hold the exit (Client.leave).
DRAIN_S = 5.0
PERMISSIONS_ERR = "permissions violation"  # nats-py keeps the connection open for these
_PLAIN_HEADERS = b"NATS/1.0\r\n"  # a header block without a status: the header lines follow
FAST_WIRE = nats_wire.fits()  # nats-py's internals are the ones fx.nats_wire reads: its parser is used

Listener = Callable[[], Awaitable[None]]


class Client(NATS):
    def __init__(self) -> None:
        super().__init__()
        if FAST_WIRE:
            self._ps = nats_wire.Parser(self)
        self._waiting: list[asyncio.Future[None]] = []
        self._listeners: list[Listener] = []
        self._running: set[asyncio.Task] = set()
        self.stopping = False  # closed by its owner: no complaint

    async def close(self) -> None:
        self.stopping = True
        await super().close()

    def take(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> bool:
        """What nats-py's _process_msg does with a message for a subscription made with a `future` and no message
        limit (fx's pull subscriptions and NATS triggers: fx_gateway.events.pulls.Handoff), without its coroutine
        and its look at JetStream's flow control; False for any other message, which goes there: one to another
        subscription, or whose headers begin with a status (a pull request's end), which nats-py reads its way."""
        sub = self._subs.get(sid)
        future = sub._future if sub is not None else None
        if future is None or sub._max_msgs or sub._jsi is not None:
            return False
        hdr = None
        if headers is not None:
            if not headers.startswith(_PLAIN_HEADERS) or _parse_email is not None:
                return False
            hdr = NATS._parse_header_lines(headers[len(_PLAIN_HEADERS) :]) or None
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        sub._received += 1
        if not future.cancelled():
            # Msg's fields in their order, not named: 0.3 µs against 0.55
            future.set_result(Msg(self, subject.decode(), reply.decode(), data, hdr, None, False, sid))
        return True

    async def _send_ping(self, future: asyncio.Future | None = None) -> None:
        """nats-py (2.16) writes a PING to the socket at once, ahead of the commands still in its pending buffer:
        `flush()` could then return before the server had a SUB or PUB made just before it, and a message
        published meanwhile missed a subscription said to be in place. Queued behind them instead, so a PONG
        means the server has read everything sent before the flush."""
        self._pongs.append(future if future is not None else asyncio.get_running_loop().create_future())
        self._pending.append(PING_PROTO)
        self._pending_data_size += len(PING_PROTO)
        await self._flush_pending()

    async def _process_pong(self) -> None:
        """nats-py sets the oldest PING's future when its PONG comes, even when that flush timed out and cancelled
        it; the InvalidStateError ended its read loop, so one slow flush (at a stop, or /system/publish) cost the
        connection. A timed-out flush's PONG, late, is taken here instead."""
        if self._pongs and self._pongs[0].done():
            self._pongs.pop(0)
            self._pings_outstanding = 0
            return
        await super()._process_pong()

    async def leave(self) -> None:
        """At a stop, once the owner's work is done: what it published reaches the server, bounded to DRAIN_S,
        then the connection closes.

        Not nats-py's drain(): with the work done it would only unsubscribe, and it holds a stop for its own
        30 s plus a 10 s flush when the server no longer answers (cancelled, it still waits for that flush):
        past a pod's grace period."""
        if self.is_connected:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self.flush(timeout=DRAIN_S)
        # NATS away (reconnecting) or not answering: closing may touch a dead socket. A requested stop still
        # ends cleanly (exit 0: on Kubernetes the pod is not left in Error).
        with contextlib.suppress(Exception):
            await self.close()

    async def _process_err(self, err_msg: str) -> None:
        if PERMISSIONS_ERR in err_msg.lower() or not self.options.get("allow_reconnect") or self.is_closed:
            await super()._process_err(err_msg)
            return
        error = nats.errors.Error(f"nats: {err_msg.strip().strip(chr(39))}")
        log.warning("NATS closed the connection (%s); reconnecting", error)
        await self._process_op_err(error)

    def reconnected(self) -> asyncio.Future[None]:
        """Resolves at the next successful reconnect."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        return future

    def on_reconnect(self, listener: Listener) -> None:
        """Run `listener` (in its own task) after every successful reconnect."""
        self._listeners.append(listener)

    async def _announce(self) -> None:
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            if not future.done():
                future.set_result(None)
        for listener in self._listeners:
            task = asyncio.get_running_loop().create_task(listener())
            self._running.add(task)  # held until done: the loop keeps only a weak reference
            task.add_done_callback(self._running.discard)


async def connect(
    url: str,
    name: str,
    creds: str | Path | None = None,
    *,
    reconnected_cb: Listener | None = None,
    **options,
) -> Client:
    """Connect (retrying until NATS answers), reconnecting forever afterwards; `options` go to nats-py. Unless
    the caller passes its own callbacks, a lost connection is logged once, with the first error meeting the
    reconnects (e.g. an authorization violation), and its return once."""
    nc = Client()
    said: list[bool] = [False]  # this outage's first error is logged

    async def disconnected() -> None:
        log.warning("NATS connection %r lost; reconnecting every %g s", name, options["reconnect_time_wait"])

    async def error(exc: Exception) -> None:
        if not said[0] and not nc.is_connected:
            said[0] = True
            log.warning("NATS connection %r: %s", name, exc)
        else:
            log.debug("NATS connection %r: %s", name, exc)

    async def reconnected() -> None:
        said[0] = False
        if reconnected_cb is None:
            log.info("NATS connection %r back", name)
        else:
            await reconnected_cb()
        await nc._announce()

    async def closed() -> None:
        if not nc.stopping:
            log.error("NATS connection %r closed for good: %s", name, nc._err)

    options.setdefault("reconnect_time_wait", RECONNECT_WAIT_S)
    options.setdefault("ping_interval", PING_INTERVAL_S)
    options.setdefault("max_outstanding_pings", MAX_OUTSTANDING_PINGS)
    options.setdefault("disconnected_cb", disconnected)
    options.setdefault("error_cb", error)
    await nc.connect(
        url,
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        user_credentials=str(creds) if creds else None,
        reconnected_cb=reconnected,
        closed_cb=closed,
        **options,
    )
    return nc
