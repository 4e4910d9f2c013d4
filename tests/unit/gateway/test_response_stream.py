"""InvokeWithResponseStream's route: an Invoke whose replica is asked for the event-stream framing."""

from tests.unit.gateway.conftest import table

STREAM = "/2021-11-15/functions/{}/response-streaming-invocations"


async def test_the_streaming_action_asks_the_replica_for_the_event_stream(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    endpoints = [replica.endpoint]
    gw.gateway.book.apply(table(versions={"1": endpoints, "2": endpoints}, traffic={"2": 100}, aliases={"live": "1"}))

    r = await gw.client.post(STREAM.format("hello"), content=b'{"a": 1}')
    assert r.status_code == 200
    seen = r.json()
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/_fx/invoke", '{"a": 1}')
    assert seen["headers"]["x-fx-response-stream"] == "eventstream"

    # Qualifiers and ARNs as Invoke takes them.
    arn = "arn:aws:lambda:us-east-1:000000000000:function:hello"
    for path in (STREAM.format("hello") + "?Qualifier=live", STREAM.format(f"{arn}:live")):
        assert (await gw.client.post(path, content=b"{}")).headers["X-Amz-Executed-Version"] == "1"
    dry = await gw.client.post(STREAM.format("hello") + "?Qualifier=2", headers={"X-Amz-Invocation-Type": "DryRun"})
    assert dry.status_code == 204 and dry.headers["X-Amz-Executed-Version"] == "2"
    assert replica.requests == 3  # a DryRun reaches no replica


async def test_no_event_type_and_callers_cannot_ask_for_the_framing_themselves(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))

    event = await gw.client.post(STREAM.format("hello"), content=b"{}", headers={"X-Amz-Invocation-Type": "Event"})
    assert event.status_code == 400 and event.json()["error"]["code"] == "InvalidInvocationType"
    assert event.headers["X-Amzn-ErrorType"] == "InvalidParameterValueException"  # botocore's modeled type
    assert "RequestResponse, DryRun" in event.json()["error"]["message"]
    assert replica.requests == 0

    # The header is the gateway's to send: a caller's is dropped on Invoke and on the HTTP route.
    ask = {"X-Fx-Response-Stream": "eventstream"}
    invoke = await gw.client.post("/2015-03-31/functions/hello/invocations", content=b"{}", headers=ask)
    assert "x-fx-response-stream" not in invoke.json()["headers"]
    http = await gw.client.post("/function/hello", content=b"{}", headers=ask)
    assert "x-fx-response-stream" not in http.json()["headers"]

    missing = await gw.client.post(STREAM.format("nope"), content=b"{}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "FunctionNotFound"
