"""events/publish.py writes into nats-py's pending buffer: what it relies on of nats-py, against a real nats-server."""

import nats
import nats.errors
import pytest
from fx import nats_client
from fx_gateway.events.publish import ack, acks, header_block, publish

from tests.waiting import until


@pytest.fixture
async def nc(nats_server):
    client = await nats.connect(nats_server)
    yield client
    await client.close()


@pytest.mark.parametrize(
    ("reply", "headers"),
    [("", None), ("_INBOX.a.1", None), ("", {"Fx-Status": "200"}), ("r.2", {"Fx-Status": "502", "E": " a\r\nb "})],
)
async def test_a_command_is_the_bytes_nats_py_publish_writes(nc, reply, headers):
    """If a nats-py upgrade changes its pending buffer or protocol, this fails, not the triggers."""
    await nc.flush()
    await nc.publish("orders.new", b"payload", reply=reply, headers=headers)
    theirs = nc._pending[-1]  # publish() queued the command and woke the flusher, which has not run yet
    publish(nc, "orders.new", b"payload", header_block(headers) if headers else b"", reply)
    assert nc._pending[-1] == theirs
    assert nc._pending_data_size == 2 * len(theirs)


async def test_published_messages_reach_a_subscriber_with_their_headers(nc, nats_server):
    other = await nats_client.connect(nats_server, "subscriber")  # its flush() waits for the SUB to be read
    sub = await other.subscribe("orders.*")
    await other.flush()
    publish(nc, "orders.1", b"one", header_block({"Fx-Status": "200", "Fx-Function-Error": "Handled"}))
    publish(nc, "orders.2", b"two", reply="back.2")
    first = await sub.next_msg(timeout=5)  # flushed without an await on the publishing side
    second = await sub.next_msg(timeout=5)
    assert (first.data, first.headers) == (b"one", {"Fx-Status": "200", "Fx-Function-Error": "Handled"})
    assert (second.data, second.reply) == (b"two", "back.2")
    await other.close()


async def test_an_ack_acknowledges_a_jetstream_message(nc):
    js = nc.jetstream()
    await js.add_stream(name="ACKS", subjects=["acks"])
    await js.publish("acks", b"x")
    sub = await js.pull_subscribe("acks", durable="c", stream="ACKS")
    [msg] = await sub.fetch(1, timeout=5)
    ack(nc, msg.reply)
    await nc.flush()
    await all_acknowledged(js, "ACKS")


async def test_acks_are_the_bytes_of_an_ack_each_and_acknowledge_them_all(nc):
    js = nc.jetstream()
    await js.add_stream(name="MANY", subjects=["many"])
    for i in range(3):
        await js.publish("many", b"%d" % i)
    sub = await js.pull_subscribe("many", durable="c", stream="MANY")
    msgs = await sub.fetch(3, timeout=5)
    await nc.flush()
    for msg in msgs:
        ack(nc, msg.reply)
    one_each = nc._pending[-3:]
    del nc._pending[-3:]  # not sent: the flusher has not run
    nc._pending_data_size -= sum(map(len, one_each))
    acks(nc, [msg.reply for msg in msgs])
    assert nc._pending[-1] == b"".join(one_each)
    await nc.flush()
    await all_acknowledged(js, "MANY")


async def all_acknowledged(js, stream: str) -> None:
    """The server applies an ack on its own time: a consumer_info sent after it can be answered first."""

    async def none_pending() -> bool:
        info = await js.consumer_info(stream, "c")
        return (info.num_ack_pending, info.num_pending) == (0, 0)

    await until(none_pending, what=f"every message of {stream} acknowledged")


async def test_errors_are_nats_py_s(nc):
    with pytest.raises(nats.errors.MaxPayloadError):
        publish(nc, "big", b"x" * (nc.max_payload + 1))
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        publish(nc, "late", b"x")
