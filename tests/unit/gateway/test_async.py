"""Async calls against a real nats-server: stored before the 202, run through the dispatcher, retried,
dead-lettered, called back."""

import asyncio
import json
import uuid

import httptools
import nats
import pytest
from fx.protocol import (
    ASYNC_CALL_ID,
    ASYNC_CALLBACK_SUBJECT,
    ASYNC_CALLBACK_URL,
    ASYNC_FUNCTION,
    ASYNC_METHOD,
    ASYNC_TARGET,
    DEAD_ATTEMPTS,
    DEAD_ERROR,
    DEAD_MESSAGE,
    DEAD_STATUS,
    REPLICA_INVOKE_PATH,
    STREAM_ASYNC,
    SUBJECT_ACTIVATE,
    ActivationReply,
    async_subject,
)
from fx_gateway.events import callback_delivery, jetstream
from fx_gateway.events.async_accept import stored_headers

from tests.unit.gateway.conftest import Message, dead_letters, table
from tests.waiting import until


class CallbackServer:
    """Collects the POSTs a gateway makes to an X-Callback-Url: (headers, body)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/done"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = Message()
        parser = httptools.HttpRequestParser(request)
        while not request.complete:
            data = await reader.read(65536)
            if not data:
                break
            parser.feed_data(data)
        self.received.append((request.headers, request.body))
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def platform(nats_server, gateway):
    """(gateway, nats client) with fast retries; the gateway follows the real NATS. Results may be published
    to results.* (no subject is allowed by default)."""
    gw = await gateway(
        async_backoff=0.05,
        async_retries=2,
        hold_timeout=2.0,
        callback_subjects=("results.>",),
        nats_url=nats_server,
        gateway_id="gw-test",
    )
    link = gw.gateway
    await link.start()
    await until(link.feed.healthy)
    nc = await nats.connect(nats_server)
    yield gw, nc
    await nc.close()
    await link.close()


async def test_an_async_http_call_is_answered_202_then_reaches_the_function_with_its_request(platform, replicas):
    gw, _ = platform
    replica = await replicas()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    callback = CallbackServer()
    url = await callback.start()

    r = await gw.client.post(
        "/async-function/hello/orders/7?x=1",
        content=b'{"n": 1}',
        headers={"X-Tenant": "acme", "X-Callback-Url": url},
    )
    assert r.status_code == 202
    call_id = r.headers["X-Fx-Call-Id"]
    assert r.json() == {"call_id": call_id}

    await until(lambda: callback.received)
    seen = replica.seen[0]
    assert seen["method"] == "POST" and seen["path"] == "/_fx/http/orders/7?x=1"
    assert seen["body"] == '{"n": 1}'
    assert seen["headers"]["x-tenant"] == "acme" and seen["headers"]["x-fx-call-id"] == call_id
    assert "x-callback-url" not in seen["headers"]  # it steers the gateway, not the function
    headers, body = callback.received[0]
    assert headers["x-fx-call-id"] == call_id and headers["x-fx-outcome"] == "success"
    assert headers["x-fx-function-status"] == "200"
    assert json.loads(body)["path"] == "/_fx/http/orders/7?x=1"  # the function's answer


async def test_an_invoke_event_is_202_with_an_empty_body_and_activates_a_function_at_zero(platform, replicas):
    gw, nc = platform
    replica = await replicas()
    asked = []

    async def controller(msg):
        asked.append(msg.data)
        await msg.respond(ActivationReply(ok=True, endpoints=[replica.endpoint]).to_json())

    await nc.subscribe(SUBJECT_ACTIVATE, cb=controller)
    gw.gateway.book.apply(table(versions={"1": []}))
    results = await nc.subscribe("results.hello")

    r = await gw.client.post(
        "/2015-03-31/functions/hello/invocations",
        content=b'{"order": 7}',
        headers={"X-Amz-Invocation-Type": "Event", "X-Fx-Callback-Subject": "results.hello"},
    )
    assert r.status_code == 202 and r.content == b""
    assert r.headers["X-Amzn-RequestId"] == r.headers["X-Fx-Call-Id"]

    reply = await results.next_msg(timeout=5)
    assert reply.headers["X-Fx-Call-Id"] == r.headers["X-Fx-Call-Id"]
    assert reply.headers["X-Fx-Outcome"] == "success"
    assert json.loads(reply.data)["body"] == '{"order": 7}'
    assert replica.seen[0]["path"] == "/_fx/invoke"
    assert len(asked) == 1  # the scale-from-zero path of HTTP callers


async def test_a_failing_call_is_retried_with_backoff_then_succeeds(platform, replicas):
    gw, nc = platform
    replica = await replicas()
    replica.failures = 2
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))

    r = await gw.client.post(
        "/2015-03-31/functions/hello/invocations", content=b"{}", headers={"X-Amz-Invocation-Type": "Event"}
    )
    assert r.status_code == 202
    await until(lambda: gw.gateway.events.async_stats.attempts.get(("hello", "ok")) == 1)
    assert gw.gateway.events.async_stats.attempts[("hello", "error")] == 2
    assert len(replica.seen) == 3

    async def acked() -> bool:  # the attempt is counted before its ack: gone from the work queue only then
        return (await nc.jetstream().stream_info(STREAM_ASYNC)).state.messages == 0

    await until(acked, 5, "the call acked, so gone from the work queue")


async def test_waiting_invoke_calls_share_a_request_each_run_with_its_call_id_and_fails_alone(platform, replicas):
    gw, nc = platform
    replica = await replicas()
    replica.failures = 1  # the first call the replica runs fails: that call alone, retried
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    stored = {ASYNC_FUNCTION: "hello", ASYNC_METHOD: "POST", ASYNC_TARGET: REPLICA_INVOKE_PATH}
    ids = [str(uuid.uuid4()) for _ in range(60)]
    for n in range(60):  # stored at once (as 202'd calls are): most wait for the replica, and go together
        await nc.publish(async_subject("hello"), b'{"n": %d}' % n, headers={**stored, ASYNC_CALL_ID: ids[n]})
    await nc.flush()

    stats = gw.gateway.events.async_stats
    await until(lambda: stats.attempts.get(("hello", "ok")) == 60)
    assert stats.attempts[("hello", "error")] == 1
    assert any(seen["path"] == "/_fx/batch" for seen in replica.seen)
    assert replica.requests < 60
    ran = [(json.loads(seen["body"])["n"], seen["headers"]["x-fx-request-id"]) for seen in replica.seen]
    assert sorted(ran) == sorted([(n, ids[n]) for n in range(60)] + [ran[0]])  # the first twice: it failed
    assert all(request_id == ids[n] for n, request_id in ran)  # the call id is the invocation's request id

    async def acked() -> bool:
        return (await nc.jetstream().stream_info(STREAM_ASYNC)).state.messages == 0

    await until(acked, 5, "every call acked, so gone from the work queue")


async def test_a_call_failing_every_attempt_is_dead_lettered_with_the_request_and_the_error(platform, replicas):
    gw, nc = platform
    replica = await replicas()
    replica.failures = 100
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    callback = CallbackServer()
    url = await callback.start()

    r = await gw.client.post(
        "/2015-03-31/functions/hello/invocations",
        content=b'{"order": 9}',
        headers={"X-Amz-Invocation-Type": "Event", "X-Callback-Url": url},
    )
    [letter] = await dead_letters(nc, 1)
    assert letter.subject == "fx.dlq.hello"
    assert letter.data == b'{"order": 9}'
    assert letter.headers[ASYNC_CALL_ID] == r.headers["X-Fx-Call-Id"]
    assert letter.headers[DEAD_ERROR] == "Boom" and letter.headers[DEAD_STATUS] == "502"
    assert letter.headers[DEAD_ATTEMPTS] == "3"  # the first attempt and 2 retries, as Lambda
    assert len(replica.seen) == 3
    await until(lambda: callback.received)
    headers, body = callback.received[0]
    assert headers["x-fx-outcome"] == "failure" and headers["x-fx-error"] == "Boom"
    assert json.loads(body)["errorType"] == "Boom"
    metrics = (await gw.client.get("/metrics")).text
    assert 'fx_gateway_async_dead_letters_total{function="hello",reason="retries_exhausted"} 1.0' in metrics


async def test_a_call_for_a_function_deleted_before_it_ran_is_dead_lettered_at_once(platform):
    gw, nc = platform
    gw.gateway.book.apply(table(versions={"1": []}))  # at zero, and the activation never answers: the call is held
    r = await gw.client.post("/async-function/hello", content=b"x")
    assert r.status_code == 202
    gw.gateway.book.remove("hello")
    [letter] = await dead_letters(nc, 1)
    assert letter.headers[DEAD_ERROR] == "FunctionNotFound"
    assert letter.headers[DEAD_ATTEMPTS] in ("0", "1")  # removed before or while it was held: never retried


async def test_a_stored_call_without_a_gateway_s_call_id_is_dead_lettered_unrun(platform, replicas):
    """The call id goes into the replica's request head and a batch's id list: only a gateway's UUID may."""
    gw, nc = platform
    replica = await replicas()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    stored = {ASYNC_FUNCTION: "hello", ASYNC_METHOD: "POST", ASYNC_TARGET: REPLICA_INVOKE_PATH}
    await nc.publish(async_subject("hello"), b"{}", headers={**stored, ASYNC_CALL_ID: "a,b"})
    await nc.publish(async_subject("hello"), b"{}", headers=stored)
    letters = await dead_letters(nc, 2)
    assert [letter.headers[DEAD_ERROR] for letter in letters] == ["InvalidCallId", "InvalidCallId"]
    assert "'a,b' is not the UUID a gateway stores a call with" in letters[0].headers[DEAD_MESSAGE]
    assert replica.seen == []
    metrics = (await gw.client.get("/metrics")).text
    assert 'fx_gateway_async_dead_letters_total{function="hello",reason="invalid_call_id"} 2.0' in metrics


async def test_bad_async_calls_are_refused_before_anything_is_stored(platform):
    gw, nc = platform
    gw.gateway.book.apply(table(versions={"1": []}))
    assert (await gw.client.post("/async-function/nope", content=b"x")).status_code == 404
    assert (await gw.client.post("/async-function/hello@7", content=b"x")).status_code == 404
    big = await gw.client.post("/async-function/hello", content=b"x" * (256 * 1024 + 1))
    assert big.status_code == 413 and "async call" in big.json()["error"]["message"]
    info = await nc.jetstream().stream_info(STREAM_ASYNC)
    assert info.state.messages == 0


async def test_a_stored_call_is_called_back_only_where_the_policy_allows_at_delivery_too(platform, replicas):
    """A call stored without passing this gateway's accept check (an older gateway, another writer) is run,
    but its result goes nowhere the policy refuses."""
    gw, nc = platform
    replica = await replicas()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    routes = await nc.subscribe("$KV.fx_routes.>")
    _, headers = stored_headers("hello", "", b"POST", b"/_fx/invoke", {}, b"", b"127.0.0.1")
    headers[ASYNC_CALLBACK_SUBJECT] = "$KV.fx_routes.hello"
    headers[ASYNC_CALLBACK_URL] = "http://169.254.169.254/latest/meta-data/"
    await nc.jetstream().publish(async_subject("hello"), b"{}", headers=headers)
    await until(lambda: gw.gateway.events.async_stats.callbacks.get("failed") == 2)
    assert len(replica.seen) == 1  # the call itself ran
    with pytest.raises(nats.errors.TimeoutError):
        await routes.next_msg(timeout=0.5)  # nothing was published to the route table


async def test_a_callback_that_fails_unexpectedly_leaves_the_call_done_not_run_again(platform, replicas, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("a bug in delivering callbacks")

    monkeypatch.setattr(callback_delivery, "post", broken)
    gw, nc = platform
    replica = await replicas()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    _, headers = stored_headers("hello", "", b"POST", b"/_fx/invoke", {}, b"", b"127.0.0.1")
    headers[ASYNC_CALLBACK_URL] = "http://127.0.0.1:9/done"
    await nc.jetstream().publish(async_subject("hello"), b"{}", headers=headers)
    await until(lambda: gw.gateway.events.async_stats.callbacks.get("failed") == 1)
    await until(lambda: _acked(nc), 5, "the call to be acked")
    assert len(replica.seen) == 1


async def _acked(nc) -> bool:
    return (await nc.jetstream().stream_info(STREAM_ASYNC)).state.messages == 0


async def test_a_call_jetstream_does_not_store_is_refused_503_not_accepted(platform):
    gw, nc = platform
    gw.gateway.book.apply(table(versions={"1": []}))
    js = nc.jetstream()
    config = (await js.stream_info(STREAM_ASYNC)).config
    await js.update_stream(config.evolve(max_msg_size=1))  # JetStream refuses every call
    refused = await gw.client.post("/async-function/hello", content=b"x")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "AsyncUnavailable"
    assert "maximum" in refused.json()["error"]["message"]  # JetStream's reason
    await js.delete_stream(STREAM_ASYNC)  # no stream takes the subject at all
    gone = await gw.client.post("/async-function/hello", content=b"x")
    assert gone.status_code == 503 and "nothing was queued" in gone.json()["error"]["message"]


async def test_a_call_stored_but_not_acknowledged_in_time_is_answered_504_unconfirmed(
    nats_server, gateway, monkeypatch
):
    """JetStream's acknowledgement lost (as with a NATS server killed while it was under way): the call may be
    stored all the same, so the caller is told its outcome is unknown (504 AsyncUnconfirmed), never that nothing
    was queued. Here the gateway drops every acknowledgement; the call is in the stream."""
    monkeypatch.setattr(jetstream, "STORE_TIMEOUT_S", 0.3)

    async def lost(self, msg) -> None:
        return None

    monkeypatch.setattr(jetstream.Storer, "_acknowledged", lost)
    # the stored call runs as soon as it is stored, held for a replica that never comes: not for long
    gw = await gateway(nats_url=nats_server, gateway_id="gw", hold_timeout=0.2, async_retries=0)
    await gw.gateway.start()
    await until(gw.gateway.feed.healthy)
    nc = await nats.connect(nats_server)
    try:
        gw.gateway.book.apply(table(versions={"1": []}))
        r = await gw.client.post(
            "/2015-03-31/functions/hello/invocations", content=b"{}", headers={"X-Amz-Invocation-Type": "Event"}
        )
        body = r.json()
        assert (r.status_code, r.headers["X-Amzn-ErrorType"], body["error"]["code"]) == (
            504,
            "ServiceException",
            "AsyncUnconfirmed",
        )
        assert "may have been queued" in body["Message"] and "may run twice" in body["Message"]
        assert (await nc.jetstream().stream_info(STREAM_ASYNC)).state.last_seq == 1  # stored (and run, since)
    finally:
        await nc.close()
        await gw.gateway.close()


async def test_a_failing_call_whose_retry_would_pass_its_maximum_age_is_dead_lettered(nats_server, gateway, replicas):
    gw = await gateway(async_backoff=0.2, async_retries=5, async_max_age=0.3, nats_url=nats_server, gateway_id="gw")
    await gw.gateway.start()
    await until(gw.gateway.feed.healthy)
    nc = await nats.connect(nats_server)
    try:
        replica = await replicas()
        replica.failures = 100
        gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
        r = await gw.client.post(
            "/2015-03-31/functions/hello/invocations", content=b"{}", headers={"X-Amz-Invocation-Type": "Event"}
        )
        [letter] = await dead_letters(nc, 1)
        assert letter.headers[ASYNC_CALL_ID] == r.headers["X-Fx-Call-Id"]
        assert letter.headers[DEAD_ERROR] == "Boom"  # the last attempt's error
        assert int(letter.headers[DEAD_ATTEMPTS]) < 6  # not its retries: its age ran out first
        metrics = (await gw.client.get("/metrics")).text
        assert 'fx_gateway_async_dead_letters_total{function="hello",reason="max_age"} 1.0' in metrics
    finally:
        await nc.close()
        await gw.gateway.close()
