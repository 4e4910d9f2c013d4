"""Durable (JetStream) triggers against a real nats-server: batches, partial failures, dead letters, order."""

import asyncio
import json

import nats
import pytest
from fx.protocol import (
    DEAD_ATTEMPTS,
    DEAD_ERROR,
    DEAD_SEQUENCE,
    DEAD_STREAM,
    SUBJECT_ACTIVATE,
    ActivationReply,
    TriggerRoute,
)
from fx_gateway.events import durable_triggers, pulls
from nats.js.api import StreamConfig

from tests.unit.gateway.conftest import dead_letters, table
from tests.waiting import until


def durable(endpoints: list[str], revision: int = 1, concurrency: int = 0, **trigger):
    route = TriggerRoute("jetstream", **{"stream": "ORDERS", "backoff": 0.05, **trigger})
    return table(versions={"1": endpoints}, triggers=[route], revision=revision, concurrency=concurrency)


def records(replica) -> list[list[dict]]:
    """The Records of every invocation the replica got."""
    return [json.loads(seen["body"])["Records"] for seen in replica.seen]


def data(replica) -> list[str]:
    """The data of every record the replica got, in the order it got them."""
    return [r["data"] for batch in records(replica) for r in batch]


@pytest.fixture
async def platform(nats_server, gateway):
    """(gateway, link, nats client, JetStream) with the ORDERS stream; tables are published to the real KV."""
    gw = await gateway(nats_url=nats_server, gateway_id="gw-test")
    link = gw.gateway
    await link.start()
    await until(link.feed.healthy)
    nc = await nats.connect(nats_server)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    yield gw, link, nc, js
    await nc.close()
    await link.close()


async def settled(js) -> bool:
    """The one consumer of ORDERS has delivered everything and holds no unacked message: nothing more can come."""
    [consumer] = await js.consumers_info("ORDERS")
    return consumer.num_ack_pending == 0 and consumer.num_pending == 0


async def publish_table(js, route_table) -> None:
    await (await js.key_value("fx_routes")).put(route_table.function, route_table.to_json())


async def test_messages_arrive_in_batches_with_lambdas_records_shape_and_are_acked(platform, replicas):
    _gw, _link, _, js = platform
    replica = await replicas()
    for n in range(25):
        await js.publish(f"orders.{n}", json.dumps({"n": n}).encode(), headers={"Shop": "eu"})
    await publish_table(js, durable([replica.endpoint], batch=10, window_ms=50))

    await until(lambda: sum(map(len, records(replica))) == 25)
    batches = records(replica)
    assert [len(b) for b in batches] == [10, 10, 5]  # from a backlog: full batches, then the rest
    first = batches[0][0]
    assert first["subject"] == "orders.0" and json.loads(first["data"]) == {"n": 0}
    assert first["messageId"] == "1" and first["sequence"] == 1 and first["deliveries"] == 1
    assert first["headers"] == {"Shop": "eu"} and first["isBase64Encoded"] is False
    event = json.loads(replica.seen[0]["body"])
    assert event["eventSource"] == "fx:jetstream" and event["trigger"] == "ORDERS/>" and event["stream"] == "ORDERS"
    await until(lambda: settled(js), 5, "the last batch acked")
    [consumer] = await js.consumers_info("ORDERS")
    assert consumer.num_redelivered == 0


async def test_reported_item_failures_are_redelivered_alone_then_dead_lettered(platform, replicas):
    _gw, _, nc, js = platform
    replica = await replicas()
    # The function fails message 2 every time, others never.
    replica.respond = lambda seen: json.dumps(
        {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]}
                for r in json.loads(seen["body"])["Records"]
                if json.loads(r["data"])["n"] == 2
            ]
        }
    ).encode()
    for n in range(4):
        await js.publish(f"orders.{n}", json.dumps({"n": n}).encode())
    await publish_table(js, durable([replica.endpoint], batch=4, window_ms=50, max_deliver=3))

    [letter] = await dead_letters(nc, 1)
    assert json.loads(letter.data) == {"n": 2}
    assert letter.headers[DEAD_ERROR] == "BatchItemFailure" and letter.headers[DEAD_ATTEMPTS] == "3"
    assert letter.headers[DEAD_STREAM] == "ORDERS" and letter.headers[DEAD_SEQUENCE] == "3"
    seen = [[json.loads(r["data"])["n"] for r in batch] for batch in records(replica)]
    assert seen == [[0, 1, 2, 3], [2], [2]]  # only the failed record came back


async def test_a_function_error_retries_the_whole_batch_and_a_function_at_zero_is_started(platform, replicas):
    gw, _, nc, js = platform
    replica = await replicas()
    replica.failures = 1

    async def controller(msg):
        await msg.respond(ActivationReply(ok=True, endpoints=[replica.endpoint]).to_json())

    await nc.subscribe(SUBJECT_ACTIVATE, cb=controller)
    await publish_table(js, durable([], batch=5, window_ms=100))
    await js.publish("orders.a", b"\xff")  # not UTF-8: base64
    await js.publish("orders.b", b"b")
    await until(lambda: len(replica.seen) == 2)
    _, second = records(replica)
    assert [r["deliveries"] for r in second] == [2, 2]  # the failed batch came back whole
    assert second[0]["isBase64Encoded"] is True and second[0]["data"] == "/w=="
    # The replica has the batch before the gateway has its answer: wait for the gateway to count it.
    counted = {("hello", "ORDERS/>", "error"): 1, ("hello", "ORDERS/>", "ok"): 1}
    await until(lambda: gw.gateway.events.event_stats.events == counted, 5, "the error and the success counted")


async def test_max_in_flight_one_keeps_the_streams_order(platform, replicas):
    _gw, _, _, js = platform
    replica, other = await replicas(), await replicas()
    for n in range(30):
        await js.publish("orders.x", str(n).encode())
    await publish_table(js, durable([replica.endpoint, other.endpoint], batch=3, max_in_flight=1, concurrency=1))
    await until(lambda: len(replica.seen) + len(other.seen) == 10)
    assert max(replica.max_in_flight, other.max_in_flight) == 1
    both = sorted(replica.seen + other.seen, key=lambda s: json.loads(s["body"])["Records"][0]["sequence"])
    assert [int(r["data"]) for s in both for r in json.loads(s["body"])["Records"]] == list(range(30))


async def test_a_trigger_on_a_missing_stream_is_skipped_and_the_rest_keep_working(platform, replicas):
    _gw, link, _, js = platform
    replica = await replicas()
    bad = TriggerRoute("jetstream", stream="NOPE")
    good = TriggerRoute("jetstream", stream="ORDERS", backoff=0.05)
    await publish_table(js, table(versions={"1": [replica.endpoint]}, triggers=[bad, good]))
    await js.publish("orders.1", b"1")
    await until(lambda: replica.seen)
    assert list(link.events.durable.running) == [("hello", "ORDERS/>")]


async def test_a_kv_trigger_sees_puts_and_deletes_made_after_it_started(platform, replicas):
    _, link, _, js = platform
    replica = await replicas()
    kv = await js.create_key_value(bucket="users")
    await kv.put("eu.old", b"before the trigger: not news")
    route = TriggerRoute("kv", "$KV.users.eu.*", "KV_users", batch=10, window_ms=50)
    await publish_table(js, table(versions={"1": [replica.endpoint]}, triggers=[route]))
    await until(lambda: link.events.durable.running)

    await kv.put("eu.ann", b'{"name": "Ann"}')
    await kv.put("us.bob", b"other keys are not watched")
    await kv.delete("eu.ann")
    await until(lambda: sum(map(len, records(replica))) == 2)
    event = json.loads(replica.seen[0]["body"])
    assert event["eventSource"] == "fx:kv" and event["bucket"] == "users" and event["trigger"] == "kv:users/eu.*"
    changes = [(r["key"], r["operation"], r["value"]) for batch in records(replica) for r in batch]
    assert changes == [("eu.ann", "PUT", '{"name": "Ann"}'), ("eu.ann", "DEL", "")]


async def test_acked_messages_stay_acked_for_a_restarted_gateway(nats_server, gateway, replicas):
    """Acks go out in bulk, not awaited one by one: none may be lost, or the next gateway would see them again."""
    replica, after = await replicas(), await replicas()
    nc = await nats.connect(nats_server)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    for n in range(300):
        await js.publish("orders.x", str(n).encode())
    first = (await gateway(async_ack_wait=1, nats_url=nats_server, gateway_id="gw-1")).gateway
    await first.start()
    await publish_table(js, durable([replica.endpoint], batch=1, max_in_flight=64))
    await until(lambda: len(replica.seen) == 300)
    await first.close()

    second = (await gateway(async_ack_wait=1, nats_url=nats_server, gateway_id="gw-2")).gateway
    await second.start()
    await publish_table(js, durable([after.endpoint], revision=2, batch=1, max_in_flight=64))
    await js.publish("orders.x", b"new")
    await until(lambda: after.seen)
    # A lost ack keeps its message pending until ack_wait brings it back to `after`: settled only after that.
    await until(lambda: settled(js), 5, "every message delivered and acked")
    assert data(after) == ["new"]
    assert sorted(map(int, data(replica))) == list(range(300))
    [consumer] = await js.consumers_info("ORDERS")
    assert consumer.num_redelivered == 0
    await second.close()
    await nc.close()


async def test_a_batch_that_runs_longer_than_the_ack_wait_is_not_delivered_again(nats_server, gateway, replicas):
    """The gateway tells JetStream the messages under way are in progress, every third of the ack wait."""
    replica = await replicas()
    replica.delay = 2.5  # the ack wait is 1 s
    nc = await nats.connect(nats_server)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="ORDERS", subjects=["orders.>"]))
    for n in range(3):
        await js.publish("orders.x", str(n).encode())
    link = (await gateway(async_ack_wait=1, nats_url=nats_server, gateway_id="gw-1")).gateway
    await link.start()
    await publish_table(js, durable([replica.endpoint], batch=2, max_in_flight=2))
    await until(lambda: link.events.durable.running)
    await until(lambda: settled(js), 10, "every message acked")
    await asyncio.sleep(0.2)  # a copy JetStream sent again would be in a batch by now, and counted
    assert sorted(data(replica)) == ["0", "1", "2"]
    assert link.events.event_stats.redeliveries == {}
    await link.close()
    await nc.close()


async def test_an_idle_trigger_keeps_pulling_after_its_pull_requests_expire(platform, replicas, monkeypatch):
    monkeypatch.setattr(pulls, "PULL_EXPIRES_S", 0.2)
    _gw, link, _, js = platform
    replica = await replicas()
    await publish_table(js, durable([replica.endpoint], batch=5, window_ms=20))
    await until(lambda: link.events.durable.running)
    await asyncio.sleep(1)  # several pull requests expire meanwhile
    for n in range(7):
        await js.publish("orders.x", str(n).encode())
    await until(lambda: sum(map(len, records(replica))) == 7)
    assert data(replica) == [str(n) for n in range(7)]


async def test_a_backlog_is_taken_in_full_batches_even_without_a_window(platform, replicas, monkeypatch):
    """JetStream sends a backlog one message per ack as room frees up; batches still fill rather than go out
    with whatever has arrived."""
    # The wait for messages on their way (5 ms) made long: on a loaded machine they may take longer to come.
    monkeypatch.setattr(durable_triggers, "FILL_WAIT_S", 0.5)
    _gw, _, _, js = platform
    replica = await replicas()
    for n in range(60):
        await js.publish("orders.x", str(n).encode())
    await publish_table(js, durable([replica.endpoint], batch=10, max_in_flight=2))
    await until(lambda: len(data(replica)) == 60)
    assert [len(batch) for batch in records(replica)] == [10] * 6
    assert sorted(map(int, data(replica))) == list(range(60))


async def test_a_record_alone_over_the_request_limit_is_dead_lettered_at_once_and_the_others_delivered(
    platform, replicas
):
    _gw, _, nc, js = platform
    replica = await replicas()
    await js.publish("orders.0", json.dumps({"n": 0}).encode())
    await js.publish("orders.1", b"x" * 4096)  # its event alone is over the function's 2 KB limit
    await js.publish("orders.2", json.dumps({"n": 2}).encode())
    route_table = durable([replica.endpoint], batch=3, window_ms=50, max_deliver=3)
    route_table.max_request_bytes = 2048
    await publish_table(js, route_table)

    [letter] = await dead_letters(nc, 1)
    assert letter.data == b"x" * 4096 and letter.headers[DEAD_SEQUENCE] == "2"
    assert letter.headers[DEAD_ERROR] == "RequestEntityTooLargeException"
    assert letter.headers[DEAD_ATTEMPTS] == "1"  # not retried: no delivery of it could fit
    await until(lambda: settled(js), 5, "every message acked")
    assert sorted(json.loads(d)["n"] for d in data(replica)) == [0, 2]  # the replica never saw it


def test_cut_encodes_the_records_that_fit_as_the_whole_event_would_be_encoded():
    envelope = {"eventSource": "fx:jetstream", "trigger": "ORDERS/>", "stream": "ORDERS"}
    records_ = [{"messageId": str(n), "data": "é" * 100} for n in range(5)]
    encoded = [durable_triggers.encode(r) for r in records_]  # as the record functions give them
    whole = durable_triggers.encode({**envelope, "Records": records_}).encode()
    assert durable_triggers.cut(envelope, encoded, len(whole)) == (whole, 5)
    body, fits = durable_triggers.cut(envelope, iter(encoded), len(whole) - 1)
    assert fits == 4 and body == durable_triggers.encode({**envelope, "Records": records_[:4]}).encode()
    body, fits = durable_triggers.cut(envelope, encoded, 50)  # not even one: the event of the first
    assert fits == 0 and body == durable_triggers.encode({**envelope, "Records": records_[:1]}).encode()


async def test_a_batch_over_the_request_limit_is_cut_where_it_stops_fitting(platform, replicas):
    _gw, _, _nc, js = platform
    replica = await replicas()
    for n in range(7):
        await js.publish(f"orders.{n}", b"%d" % n + b"x" * 999)
    route_table = durable([replica.endpoint], batch=7, window_ms=50)
    route_table.max_request_bytes = 4500  # (about 1250 bytes a record) three records' events fit, four do not
    await publish_table(js, route_table)

    await until(lambda: sum(map(len, records(replica))) == 7)
    assert [len(batch) for batch in records(replica)] == [3, 3, 1]
    assert [d[0] for d in data(replica)] == list("0123456")
    assert all(len(seen["body"]) <= 4500 for seen in replica.seen)
    await until(lambda: settled(js), 5, "every message acked")
