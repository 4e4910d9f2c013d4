"""events/pulls.py's Handoff: what it relies on of nats-py (subscribe(future=...) hands over every message, not one),
against a real nats-server."""

import nats
from fx_gateway.events.pulls import Handoff

from tests.waiting import until


async def test_every_message_is_handed_over_in_order_and_a_failing_one_ends_nothing(nats_server, caplog):
    """If a nats-py upgrade stops calling a subscription's future per message, this fails, not the triggers."""
    nc = await nats.connect(nats_server)
    taken: list[bytes] = []

    def take(msg) -> None:
        if msg.data == b"2":
            raise RuntimeError("the handler's own bug")
        taken.append(msg.data)

    await nc.subscribe("orders", future=Handoff(take, "test pull"))
    for n in range(1, 6):
        await nc.publish("orders", str(n).encode())
    await until(lambda: len(taken) == 4)
    assert taken == [b"1", b"3", b"4", b"5"]
    assert nc.is_connected  # raised in nats-py's read loop, it would have ended the connection
    assert "test pull: a message could not be taken" in caplog.text
    await nc.close()
