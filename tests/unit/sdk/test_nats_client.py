"""fx.nats_client and kv_watch.follow against a real nats-server: a server error, a restart, a lost store."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import nats
import pytest
from fx import kv_watch, nats_client

from tests.nats_server import nats_process, nats_server
from tests.waiting import until


async def protocol_error(nc) -> None:
    """Make nats-server answer -ERR 'Unknown Protocol Operation' and close the connection."""
    nc._transport.write(b"BOGUS\r\n")
    await nc._transport.drain()


async def test_nats_py_closes_for_good_on_a_server_error(tmp_path: Path):
    """Why fx.nats_client exists: nats-py reconnects after a lost socket, not after an -ERR."""
    with nats_server(tmp_path / "nats") as url:
        nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        await protocol_error(nc)
        await until(lambda: nc.is_closed, 5, "nats-py to close the client")


async def test_a_server_error_reconnects_and_the_subscriptions_go_on(tmp_path: Path):
    with nats_server(tmp_path / "nats") as url:
        nc = await nats_client.connect(url, "test")
        got: list[bytes] = []

        async def received(msg) -> None:
            got.append(msg.data)

        await nc.subscribe("things", cb=received)
        reconnected = nc.reconnected()
        await protocol_error(nc)
        await asyncio.wait_for(reconnected, 10)
        other = await nats.connect(url)
        await other.publish("things", b"after")
        await until(lambda: got == [b"after"], 5, "the message published after the error")
        assert nc.is_connected and not nc.is_closed
        await other.close()
        await nc.close()


async def test_follow_watches_again_after_nats_came_back_without_its_store(tmp_path: Path):
    """The watch's consumer died with nats-server and the new bucket's sequences start again at 1: follow
    still yields what is written after NATS is back, and marks the initial load once."""
    port, seen = 0, []
    with nats_server(tmp_path / "before") as url:
        port = int(url.rpartition(":")[2])
        nc = await nats_client.connect(url, "test")
        kv = await nc.jetstream().create_key_value(bucket="things", history=1)
        await kv.put("a", b"1")
        await kv.put("b", b"2")

        async def follow() -> None:
            async for entry in kv_watch.follow(nc, lambda: nc.jetstream().key_value("things")):
                seen.append(None if entry is None else (entry.key, entry.value))

        task = asyncio.create_task(follow())
        await until(lambda: seen == [("a", b"1"), ("b", b"2"), None], 5, "the initial load")
    reconnected = nc.reconnected()
    with nats_server(tmp_path / "after", port=port) as url:  # same port, empty store
        await asyncio.wait_for(reconnected, 10)
        admin = await nats.connect(url)
        kv = await admin.jetstream().create_key_value(bucket="things", history=1)
        await kv.put("c", b"3")
        await until(lambda: seen[-1] == ("c", b"3"), 10, "the entry written after NATS came back")
        assert seen.count(None) == 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await admin.close()
        await nc.close()


async def test_leave_closes_within_its_bound_when_the_server_no_longer_answers(tmp_path: Path):
    """What a gateway and a controller do at a stop: a stopped server holds it DRAIN_S at most, where nats-py's
    drain held it 15 s even when cancelled after 5."""
    with nats_process(tmp_path / "nats") as (url, server):
        nc = await nats_client.connect(url, "test")
        await nc.publish("things", b"sent before the stop")
        os.kill(server.pid, signal.SIGSTOP)
        began = time.monotonic()
        await nc.leave()
        took = time.monotonic() - began
    assert nc.is_closed
    assert took < nats_client.DRAIN_S + 2


async def commands_read(connect, tmp_path: Path) -> list[str]:
    """What nats-server read, in order, from a client that subscribed and flushed at once (its trace log)."""
    log = tmp_path / "nats.log"
    config = tmp_path / "nats.conf"
    config.write_text(f'trace: true\nlog_file: "{log}"\n')
    with nats_server(tmp_path / "nats", config) as url:
        nc = await connect(url)
        await nc.subscribe("ordered")
        await nc.flush()
        await until(lambda: "<<- [SUB ordered" in log.read_text(), 5, "the server to read the SUB")
        await nc.close()
    lines = log.read_text().splitlines()
    return [cmd for line in lines for cmd in ("PING", "SUB") if f"<<- [{cmd}" in line]


async def test_nats_py_flush_can_answer_before_the_server_has_a_subscription(tmp_path: Path):
    """Why Client._send_ping exists: nats-py writes flush()'s PING ahead of the SUB still in its buffer, so the
    PONG can come before the server has the subscription (a trigger said to be in place missed messages). If a
    nats-py upgrade fixes this, this fails: drop the override."""
    assert await commands_read(nats.connect, tmp_path) == ["PING", "PING", "SUB"]  # the connect's PING first


async def test_a_flush_answers_once_the_server_has_what_was_sent_before_it(tmp_path: Path):
    got = await commands_read(lambda url: nats_client.connect(url, "test"), tmp_path)
    assert got == ["PING", "SUB", "PING"]


async def test_a_flush_that_timed_out_leaves_the_connection_working(tmp_path: Path):
    """nats-py ended its read loop on the late PONG of a flush that had timed out: the connection still looked
    connected, and no message reached it any more."""
    with nats_server(tmp_path / "nats") as url:
        nc = await nats_client.connect(url, "test")
        with pytest.raises(nats.errors.FlushTimeoutError):
            await nc.flush(timeout=0.000001)
        await asyncio.sleep(0.2)  # its PONG came meanwhile
        sub = await nc.subscribe("after")
        await nc.publish("after", b"x")
        assert (await sub.next_msg(timeout=5)).data == b"x"
        await nc.close()
