"""Requests through the gateway to a replica, and the errors callers get."""

import asyncio

from tests.unit.gateway.conftest import Raw, table


async def test_http_trigger_reaches_the_replica_with_path_query_headers_and_body(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))

    r = await gw.client.post("/function/hello/any/path?x=1&y=2", content=b"payload", headers={"X-Custom": "yes"})
    assert r.status_code == 200
    seen = r.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/_fx/http/any/path?x=1&y=2"
    assert seen["body"] == "payload"
    assert seen["headers"]["x-custom"] == "yes"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-host"] == gw.url.removeprefix("http://")

    bare = await gw.client.get("/function/hello")
    assert bare.json()["path"] == "/_fx/http/"


async def test_connections_to_a_replica_are_kept_alive(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    for _ in range(20):
        assert (await gw.client.get("/function/hello")).status_code == 200
    assert replica.connections == 1


async def test_each_request_on_a_keep_alive_connection_carries_its_own_headers(gateway, replicas):
    """The gateway remembers a connection's last headers (callers mostly repeat them): a request that repeats
    them, one that changes them and one that adds a header the gateway must drop all reach the replica right."""
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    raw = await Raw.open(gw.url)
    heads = [
        b"X-Custom: a\r\n",
        b"X-Custom: a\r\n",
        b"X-Custom: b\r\nX-Forwarded-For: 10.0.0.9\r\n",
        b"X-Custom: b\r\nX-Fx-Replica-Token: forged\r\n",
        b"X-Custom: a\r\n",
    ]
    for head in heads:
        await raw.send(b"GET /function/hello HTTP/1.1\r\nHost: gw\r\n%s\r\n" % head)
        assert (await raw.response()).status == 200
    raw.close()
    seen = [request["headers"] for request in replica.seen]
    assert [h["x-custom"] for h in seen] == ["a", "a", "b", "b", "a"]
    assert [h["x-forwarded-for"] for h in seen] == ["127.0.0.1", "127.0.0.1", "10.0.0.9, 127.0.0.1"] + ["127.0.0.1"] * 2
    assert all(h.get("x-fx-replica-token") != "forged" for h in seen)
    assert replica.connections == 1


async def test_lambda_invoke_api_posts_the_event_and_names_the_version(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [], "2": [replica.endpoint]}, traffic={"2": 100}))

    r = await gw.client.post("/2015-03-31/functions/hello/invocations", content=b'{"a": 1}')
    assert r.status_code == 200
    assert r.headers["X-Amz-Executed-Version"] == "$LATEST"  # unqualified, and 2 is the newest: Lambda's $LATEST
    pinned = await gw.client.post("/2015-03-31/functions/hello/invocations?Qualifier=2", content=b"{}")
    assert pinned.headers["X-Amz-Executed-Version"] == "2"
    assert r.json()["path"] == "/_fx/invoke"
    assert r.json()["body"] == '{"a": 1}'

    odd = await gw.client.post(
        "/2015-03-31/functions/hello/invocations", content=b"{}", headers={"X-Amz-Invocation-Type": "Later"}
    )
    assert odd.status_code == 400
    assert odd.json()["error"]["code"] == "InvalidInvocationType"
    assert "RequestResponse, Event, DryRun" in odd.json()["error"]["message"]

    # Without NATS an async call cannot be stored, so it is refused rather than accepted and lost.
    event = await gw.client.post(
        "/2015-03-31/functions/hello/invocations", content=b"{}", headers={"X-Amz-Invocation-Type": "Event"}
    )
    assert event.status_code == 503
    assert event.json()["error"]["code"] == "AsyncUnavailable"


async def test_unknown_function_is_404_naming_it_and_counted_without_its_name(gateway):
    gw = await gateway()
    r = await gw.client.post("/function/nope", content=b"{}")
    assert r.status_code == 404
    error = r.json()["error"]
    assert error == {"code": "FunctionNotFound", "message": error["message"], "function": "nope"}
    assert "fx ls" in error["message"]
    invoke = await gw.client.post("/2015-03-31/functions/nope/invocations", content=b"{}")
    assert invoke.status_code == 404 and invoke.json()["error"]["function"] == "nope"

    metrics = (await gw.client.get("/metrics")).text
    assert 'fx_gateway_requests_total{code="404",function="",version=""} 2.0' in metrics
    assert "nope" not in metrics


async def test_unknown_version_and_paths_are_404_json(gateway):
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": []}, aliases={"live": "1"}))
    r = await gw.client.get("/function/hello@7")
    assert r.status_code == 404 and r.json()["error"]["code"] == "VersionNotFound"
    header = await gw.client.get("/function/hello", headers={"X-Fx-Version": "prod"})
    assert header.status_code == 404 and "prod" in header.json()["error"]["message"]
    other = await gw.client.get("/elsewhere")
    assert other.status_code == 404 and other.json()["error"]["code"] == "NotFound"


async def test_body_over_the_route_tables_limit_is_413_and_the_connection_stays_usable(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}, max_request_bytes=1000))

    too_big = await gw.client.post("/function/hello", content=b"x" * 1001)
    assert too_big.status_code == 413
    assert too_big.json()["error"] == {
        "code": "RequestTooLarge",
        "message": too_big.json()["error"]["message"],
        "function": "hello",
    }

    async def chunks():
        for _ in range(3):
            yield b"x" * 400

    chunked = await gw.client.post("/function/hello", content=chunks())  # no Content-Length: counted as it arrives
    assert chunked.status_code == 413
    fits = await gw.client.post("/function/hello", content=b"x" * 1000)
    assert fits.status_code == 200 and len(fits.json()["body"]) == 1000
    assert replica.requests == 1


async def test_a_replica_slower_than_timeout_plus_grace_is_a_504(gateway, replicas, monkeypatch):
    monkeypatch.setattr("fx_gateway.proxy.backstop.GRACE_S", 0.1)
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}, timeout_ms=200))
    backstop = asyncio.get_running_loop().create_task(gw.gateway.book.backstop.run())
    try:
        r = await gw.client.get("/function/hello/sleep/3")
    finally:
        backstop.cancel()
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "FunctionTimeout"
    assert (await gw.client.get("/function/hello")).status_code == 200  # the replica is usable again


async def test_a_refused_connection_is_retried_on_another_replica(gateway, replicas):
    alive = await replicas("alive")
    dead = await replicas("dead")
    await dead.stop()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [dead.endpoint, alive.endpoint]}))
    answers = [await gw.client.get("/function/hello") for _ in range(5)]
    assert [r.status_code for r in answers] == [200] * 5
    assert {r.json()["name"] for r in answers} == {"alive"}


async def test_metrics_count_requests_by_function_version_and_code(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    for _ in range(3):
        await gw.client.get("/function/hello")
    metrics = (await gw.client.get("/metrics")).text
    assert 'fx_gateway_requests_total{code="200",function="hello",version="1"} 3.0' in metrics
    assert 'fx_gateway_request_duration_seconds_count{function="hello",version="1"} 3.0' in metrics
    assert 'fx_gateway_in_flight{function="hello",version="1"} 0.0' in metrics


async def test_a_replica_on_a_unix_socket_is_reached_through_it(gateway, replicas, tmp_path):
    replica = await replicas(unix=tmp_path / "http.sock")
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    for _ in range(3):
        r = await gw.client.post("/function/hello/p?q=1", content=b"over unix")
        assert r.status_code == 200 and r.json()["body"] == "over unix" and r.json()["path"] == "/_fx/http/p?q=1"
    assert replica.connections == 1  # kept alive like a TCP one


async def test_a_vanished_unix_socket_is_a_refused_replica(gateway, replicas, tmp_path):
    replica = await replicas(unix=tmp_path / "http.sock")
    await replica.stop()
    (tmp_path / "http.sock").unlink()
    gw = await gateway(hold_timeout=0.3)
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    r = await gw.client.get("/function/hello")
    assert r.status_code == 504  # held, then timed out: never a crash on the missing path


async def test_the_replicas_report_is_counted_as_billed_usage_and_kept_from_the_caller(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))

    r = await gw.client.get("/function/hello/report")
    assert r.status_code == 200 and r.text == "ok"
    assert "x-fx-report" not in r.headers and r.headers["content-type"] == "text/plain"

    metrics = (await gw.client.get("/metrics")).text
    labels = '{function="hello",version="1"}'
    assert f"fx_gateway_invocations_total{labels} 1.0" in metrics
    assert f"fx_gateway_billed_gigabyte_seconds_total{labels} 0.0015" in metrics  # 3 ms (rounded up) x 0.5 GB
    assert f"fx_gateway_function_duration_seconds_sum{labels} 0.00225" in metrics
    plain = await gw.client.get("/function/hello")  # no report: not a billed invocation
    assert plain.status_code == 200
    assert f"fx_gateway_invocations_total{labels} 1.0" in (await gw.client.get("/metrics")).text


async def test_a_report_no_handler_could_make_is_not_billed(gateway, replicas):
    replica = await replicas()
    gw = await gateway()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    for forged in ("nan_512", "inf_512", "-5_512", "2.5_99999999", "2.5_0", "2.5_x"):
        r = await gw.client.get(f"/function/hello/forged-report/{forged}")
        assert r.status_code == 200 and r.text == "ok" and "x-fx-report" not in r.headers
    metrics = (await gw.client.get("/metrics")).text
    assert 'fx_gateway_invocations_total{function="hello",version="1"} 0.0' in metrics
    assert 'fx_gateway_billed_gigabyte_seconds_total{function="hello",version="1"} 0.0' in metrics
