"""Trigger events that wait for a replica go to it several per request (fx_gateway/events/batches.py), each with
its own result: checked through core NATS requests, whose replies show each event's outcome."""

import asyncio
import json

from fx_gateway.events.batches import answers, bill
from fx_gateway.proxy.internal import Result

from tests.unit.gateway.test_triggers import link_factory, one_trigger  # noqa: F401


async def burst(nc, count: int) -> list:
    """`count` requests at once, more than the replica's share of requests in flight: most wait, and batch."""
    return await asyncio.gather(*(nc.request("quote.get", b"%d" % n, timeout=5) for n in range(count)))


async def test_waiting_events_share_a_request_and_each_gets_its_own_result(link_factory, replicas):  # noqa: F811
    gw, _, nc, replica = await one_trigger(link_factory, replicas, "quote.get")

    replica.failures = 1  # one event's handler fails: that event alone
    replies = await burst(nc, 40)
    assert any(seen["path"] == "/_fx/batch" for seen in replica.seen)
    assert replica.requests < 40
    failed = [r for r in replies if r.headers.get("Fx-Function-Error")]
    assert len(failed) == 1 and json.loads(failed[0].data)["errorType"] == "Boom"
    for n, reply in enumerate(replies):
        if reply not in failed:
            assert reply.headers["Fx-Status"] == "200"
            assert json.loads(json.loads(reply.data)["body"])["data"] == str(n)
    # Each invocation of a batch is billed as an invoke is (the fake replica reports 0.5 ms for each; its plain
    # invokes report nothing).
    batched = sum(seen["path"] == "/_fx/batch" for seen in replica.seen)
    metrics = (await gw.client.get("/metrics")).text
    assert f'fx_gateway_invocations_total{{function="hello",version="1"}} {float(batched)}' in metrics


async def test_events_that_come_together_share_a_request_even_with_the_replica_idle(link_factory, replicas):  # noqa: F811
    """A lone event is a plain invoke; events that reach the gateway together go together, not one request each."""
    _, _, nc, replica = await one_trigger(link_factory, replicas, "quote.get")

    reply = await nc.request("quote.get", b"0", timeout=5)
    assert reply.headers["Fx-Status"] == "200" and [seen["path"] for seen in replica.seen] == ["/_fx/invoke"]
    replies = await burst(nc, 10)  # published together: the replica is idle when they come
    assert replica.requests <= 1 + 2  # one request for the ten (two if they came in two reads), not one each
    for n, reply in enumerate(replies):
        assert json.loads(json.loads(reply.data)["body"])["data"] == str(n)


async def test_a_timeout_in_a_batch_fails_that_event_alone_and_the_events_after_it_run_alone(
    link_factory,  # noqa: F811
    replicas,
):
    _, _, nc, replica = await one_trigger(link_factory, replicas, "quote.get")

    replica.cut_after = 2  # the first batch's second event times out: the replica ends it there
    replies = await burst(nc, 40)
    failed = [n for n, r in enumerate(replies) if r.headers.get("Fx-Function-Error")]
    assert len(failed) == 1 and json.loads(replies[failed[0]].data)["errorType"] == "Sandbox.Timedout"
    for n, reply in enumerate(replies):  # every other event ran, once, and has its own result
        if n not in failed:
            assert reply.headers["Fx-Status"] == "200"
            assert json.loads(json.loads(reply.data)["body"])["data"] == str(n)
    ran = sorted(json.loads(seen["body"])["data"] for seen in replica.seen)
    assert ran == sorted(str(n) for n in range(40))  # none twice: the one that timed out is not run again


async def test_a_replica_without_batches_gets_the_events_one_by_one(link_factory, replicas):  # noqa: F811
    _, _, nc, replica = await one_trigger(link_factory, replicas, "quote.get")
    replica.relays = True

    for _ in range(2):  # the first burst finds out, the second goes one by one from the start
        replies = await burst(nc, 40)
        assert [r.headers["Fx-Status"] for r in replies] == ["200"] * 40
    assert {seen["path"] for seen in replica.seen} == {"/_fx/invoke"}
    assert len(replica.seen) == 80
    assert replica.requests > 80  # a batch was tried, refused, and its events sent again one by one


def test_events_a_batch_did_not_answer_get_the_gateways_error():
    framed = b"id-0 - 0.250 2\n{}id-1 Unhandled 1.5 4\nnull"
    whole = Result(200, framed, {b"x-fx-batch": b"2 128"}, "3")
    (ok, failed, missing), durations, began = answers(whole, 3)
    assert began == 2  # the replica says it began two: the third never started
    assert (ok.status, ok.body, ok.function_error, ok.headers[b"x-amzn-requestid"]) == (200, b"{}", None, b"id-0")
    assert (failed.body, failed.function_error) == (b"null", b"Unhandled")
    assert durations == [0.25, 1.5]  # each invocation billed as an invoke's X-Fx-Report is
    assert (missing.status, missing.by_gateway) == (502, True)
    assert json.loads(missing.body)["error"]["code"] == "BatchNotFinished"
    cut, _, began = answers(Result(200, framed[:-2], {b"x-fx-batch": b"2 128"}), 2)  # the 2nd payload cut short
    assert [r.status for r in cut] == [200, 502] and began == 2  # it may have run
    # A count the function's code made up stays within the batch: each event is answered, or sent again, once.
    began = [answers(Result(200, framed, {b"x-fx-batch": lie}), 3)[2] for lie in (b"-5 128", b"9 128", b"x 128")]
    assert began == [0, 3, 3]
    lost = Result(502, b"replica lost", by_gateway=True)  # e.g. the replica died mid-batch
    results, durations, began = answers(lost, 2)
    assert [r.status for r in results] == [502, 502] and b"replica lost" in results[0].body and began == 2
    bill(None, lost, durations)  # type: ignore[arg-type]  # nothing to bill, and no error
