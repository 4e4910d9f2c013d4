"""`fx event generate` makes each trigger kind's event as the gateway's own builders make it from a message, and
the HTTP kinds with the runtime's code: the fields compared whole, only the moment-dependent ones pinned. The
gateway's builders write JSON text (no dict per event on its hot path), parsed here to compare."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from fx.sample_events import Options, generate
from fx_gateway.events import durable_triggers, nats_triggers, schedules
from nats.aio.msg import Msg

STORED = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)


def jetstream_msg(subject: str, data: bytes, sequence: int, headers: dict | None = None) -> Msg:
    """A message as a pull consumer delivers it: the ack subject carries the sequence, deliveries and time."""
    reply = f"$JS.ACK.ORDERS.fx-c.1.{sequence}.{sequence}.{int(STORED.timestamp() * 1e9)}.0"
    return Msg(None, subject=subject, reply=reply, data=data, headers=headers)


def test_nats_event_is_the_gateways() -> None:
    msg = Msg(None, subject="orders.eu", reply="", data=b'{"id": 7}', headers=None)
    sample = generate("nats", Options(subject="orders.eu", trigger="orders.*", data='{"id": 7}'))
    assert sample == json.loads(nats_triggers.event("orders.*", msg))


def test_jetstream_event_is_the_gateways() -> None:
    msg = jetstream_msg("orders.eu", b'{"id": 7}', 42)
    record = json.loads(durable_triggers.record(msg))
    sample = generate("jetstream", Options(subject="orders.eu", data='{"id": 7}', sequence=42, time=STORED))
    assert sample == {"eventSource": "fx:jetstream", "trigger": "ORDERS/>", "stream": "ORDERS", "Records": [record]}


@pytest.mark.parametrize("operation", ["PUT", "DEL"])
def test_kv_event_is_the_gateways(operation: str) -> None:
    data = b'{"name": "Ann"}' if operation == "PUT" else b""
    msg = jetstream_msg("$KV.users.eu.ann", data, 7, {"KV-Operation": operation} if operation != "PUT" else None)
    opts = Options(bucket="users", key="eu.ann", operation=operation, data=data.decode(), sequence=7, time=STORED)
    sample = generate("kv", opts)
    assert sample["Records"] == [json.loads(durable_triggers.kv_record(msg))]
    assert sample["eventSource"] == durable_triggers.KV_SOURCE and sample["bucket"] == "users"


def test_schedule_event_is_the_gateways() -> None:
    tick = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
    opts = Options(function="report", schedule="cron(0 9 ? * MON-FRI *)", timezone="Europe/Berlin", time=tick)
    sample = generate("schedule", opts)
    key = "schedule:cron(0 9 ? * MON-FRI *) Europe/Berlin"
    assert sample == schedules.event(key, tick, sample["id"])
    assert sample["id"] == str(uuid.uuid5(uuid.NAMESPACE_URL, schedules.message_id("report", key, tick)))


def test_http_events_carry_the_options() -> None:
    opts = Options(method="post", path="orders", query="n=1", body='{"id": 7}', headers=[("x-user", "ann")])
    v2 = generate("apigw-v2", opts)
    assert v2["requestContext"]["http"]["method"] == "POST" and v2["rawPath"] == "/orders"
    assert v2["queryStringParameters"] == {"n": "1"} and v2["body"] == '{"id": 7}'
    assert v2["headers"]["x-user"] == "ann" and v2["headers"]["x-forwarded-proto"] == "http"
    v1 = generate("apigw-v1", opts)
    assert v1["httpMethod"] == "POST" and v1["resource"] == "/{proxy+}" and v1["pathParameters"] == {"proxy": "orders"}
    alb = generate("alb", Options(function="shop"))
    assert alb["requestContext"]["elb"]["targetGroupArn"].endswith(":targetgroup/shop/0")
