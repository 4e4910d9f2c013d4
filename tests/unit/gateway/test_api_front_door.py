"""The front door on a real gateway (fake replicas, APIs applied as the feed applies KV fx_apis): what a replica
receives on a function route, how an authorizer that has to wait holds the request, refusals, metrics."""

from __future__ import annotations

import asyncio
import json

from fx_gateway.api.decisions import Allow, Deny

from tests.waiting import until

from .conftest import Raw, table
from .test_api_matching import api


class FakeAuthorizer:
    """Allows a request whose Authorization is "good", after `gate` opens; `decided` answers at once when the
    spec says the decision is cached."""

    made: list[FakeAuthorizer] = []

    def __init__(self, name: str, spec: dict, services) -> None:
        self.spec = spec
        self.gate = asyncio.Event()
        self.calls = 0
        self.closed = False
        FakeAuthorizer.made.append(self)

    def _judge(self, request) -> Allow | Deny:
        if request.headers.get(b"authorization") == b"good":
            return Allow({"lambda": {"user": "ann"}}, {"principalId": "ann"})
        return Deny(401, "Unauthorized", ((b"WWW-Authenticate", b"Bearer"),))

    def decided(self, request, scopes):
        return self._judge(request) if self.spec.get("cached") else None

    async def authorize(self, request, scopes):
        self.calls += 1
        if self.spec.get("broken"):
            raise RuntimeError("authorizer down")
        await self.gate.wait()
        return self._judge(request)

    def close(self) -> None:
        self.closed = True


async def serving_api(gateway, replicas, routes: dict, **fields):
    replica = await replicas()
    running = await gateway()
    gw = running.gateway
    gw.book.apply(table(function="users", versions={"1": [replica.endpoint]}))
    gw.apis.kinds["fake"] = FakeAuthorizer
    FakeAuthorizer.made = []
    gw.apis.apply("shop", api("shop", routes, **fields))
    return running, replica


async def test_a_function_route_sends_the_route_context_and_the_callers_path(gateway, replicas) -> None:
    running, replica = await serving_api(gateway, replicas, {"GET /users/{id}": {"function": "users"}})
    r = await running.client.get("/users/7?x=1", headers={"X-Fx-Route": "forged"})
    assert r.status_code == 200, r.text
    seen = replica.seen[-1]
    assert seen["path"] == "/_fx/http/users/7?x=1"
    assert json.loads(seen["headers"]["x-fx-route"]) == {
        "routeKey": "GET /users/{id}",
        "resource": "/users/{id}",
        "stage": "$default",
        "stageVariables": None,
        "apiId": "shop",
        "payload": "2.0",
        "pathParameters": {"id": "7"},
    }
    assert seen["header_names"].count("x-fx-route") == 1  # the caller's own was dropped
    raw = await Raw.open(running.url)  # as written: httpx would remove the dot segment itself
    await raw.send(b"GET /users/7/../8 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await raw.response()).status == 400 and replica.requests == 1
    raw.close()
    assert (await running.client.get("/nope")).json() == {"message": "Not Found"}
    metrics = (await running.client.get("/metrics")).text
    assert 'fx_gateway_api_requests_total{api="shop",code="200",route="GET /users/{id}"} 1.0' in metrics
    assert 'fx_gateway_api_requests_total{api="",code="404",route=""} 1.0' in metrics


async def test_a_waiting_authorizer_holds_the_request_and_its_body(gateway, replicas) -> None:
    routes = {"POST /users": {"function": "users", "auth": "mine"}}
    authorizers = {"mine": {"fake": {}}}
    running, replica = await serving_api(gateway, replicas, routes, authorizers=authorizers)
    authorizer = FakeAuthorizer.made[-1]
    body = b"x" * 300_000
    call = asyncio.create_task(running.client.post("/users", content=body, headers={"Authorization": "good"}))
    await until(lambda: authorizer.calls == 1, what="the authorizer asked")
    await asyncio.sleep(0.05)  # (a state that must not change: the replica has nothing while the gate is shut)
    assert replica.requests == 0
    authorizer.gate.set()
    r = await call
    assert r.status_code == 200, r.text
    seen = replica.seen[-1]
    assert len(seen["body"]) == len(body)
    assert json.loads(seen["headers"]["x-fx-route"])["authorizer"] == {"lambda": {"user": "ann"}}
    denied = await running.client.post("/users", content=body, headers={"Authorization": "bad"})
    assert (denied.status_code, denied.json()) == (401, {"message": "Unauthorized"})
    assert denied.headers["www-authenticate"] == "Bearer"
    assert replica.requests == 1


async def test_a_held_body_over_the_functions_limit_is_refused_after_the_decision(gateway, replicas) -> None:
    routes = {"POST /users": {"function": "users", "auth": "mine"}}
    running, replica = await serving_api(gateway, replicas, routes, authorizers={"mine": {"fake": {}}})
    running.gateway.book.apply(
        table(function="users", revision=2, versions={"1": [replica.endpoint]}, max_request_bytes=1000)
    )
    FakeAuthorizer.made[-1].gate.set()
    raw = await Raw.open(running.url)  # chunked: no Content-Length to refuse it by at once
    body = b"x" * 5000
    await raw.send(b"POST /users HTTP/1.1\r\nHost: x\r\nAuthorization: good\r\nTransfer-Encoding: chunked\r\n\r\n")
    await raw.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert (await raw.response()).status == 413
    assert await raw.closed()
    assert replica.requests == 0


async def test_a_cached_decision_needs_no_authorize_call(gateway, replicas) -> None:
    routes = {"GET /users/{id}": {"function": "users", "auth": "mine", "payload": "1.0"}}
    running, replica = await serving_api(gateway, replicas, routes, authorizers={"mine": {"fake": {"cached": True}}})
    r = await running.client.get("/users/1", headers={"Authorization": "good"})
    assert r.status_code == 200
    assert json.loads(replica.seen[-1]["headers"]["x-fx-route"])["authorizer"] == {"principalId": "ann"}
    assert FakeAuthorizer.made[-1].calls == 0


async def test_a_failing_or_unusable_authorizer_is_a_500(gateway, replicas) -> None:
    routes = {
        "GET /broken": {"function": "users", "auth": "broken"},
        "GET /unusable": {"function": "users", "auth": "other"},
    }
    authorizers = {"broken": {"fake": {"broken": True}}, "other": {"jwt": {}}}  # a jwt spec without an issuer
    running, replica = await serving_api(gateway, replicas, routes, authorizers=authorizers)
    for path in ("/broken", "/unusable"):
        r = await running.client.get(path)
        assert (r.status_code, r.json()) == (500, {"message": "Internal Server Error"}), path
    assert replica.requests == 0
    metrics = (await running.client.get("/metrics")).text
    assert 'fx_gateway_api_denied_total{api="shop",reason="authorizer_error",route="GET /broken"} 1.0' in metrics


async def test_a_step_that_raises_is_a_500_and_the_connection_serves_on(gateway, replicas, caplog) -> None:
    class BrokenLimits:
        def admit(self, request, route, key_id):
            raise RuntimeError("a bug in the limits")

    routes = {"GET /a": {"function": "users", "throttle": {"rate": 1, "burst": 1}}, "GET /b": {"function": "users"}}
    routes["GET /c"] = {"function": "users", "auth": "mine", "throttle": {"rate": 1, "burst": 1}}
    running, replica = await serving_api(gateway, replicas, routes, authorizers={"mine": {"fake": {}}})
    running.gateway.api_services.limits = BrokenLimits()
    FakeAuthorizer.made[-1].gate.set()
    for path in ("/a", "/c"):  # decided at once, and after an authorizer's task
        r = await running.client.get(path, headers={"Authorization": "good"})
        assert (r.status_code, r.json()) == (500, {"message": "Internal Server Error"}), path
    assert (await running.client.get("/b")).status_code == 200
    assert replica.requests == 1
    assert "a bug in the limits" in caplog.text


async def test_a_head_request_gets_the_head_of_the_gateways_own_answers(gateway, replicas) -> None:
    routes = {"GET /mock": {"mock": {"status": 200, "body": {"ok": True}}}, "HEAD /mock": {"mock": {"body": "x"}}}
    running, _ = await serving_api(gateway, replicas, routes)
    for path in ("/mock", "/missing", "/mock"):  # one keep-alive connection: a stray body would break the next
        r = await running.client.head(path)
        assert r.content == b"" and int(r.headers["content-length"]) > 0, path
    assert (await running.client.get("/mock")).json() == {"ok": True}


async def test_a_changed_api_closes_its_old_authorizers(gateway, replicas) -> None:
    routes = {"GET /a": {"function": "users", "auth": "mine"}}
    running, _ = await serving_api(gateway, replicas, routes, authorizers={"mine": {"fake": {}}})
    first = FakeAuthorizer.made[-1]
    running.gateway.apis.apply("shop", api("shop", {"GET /b": {"function": "users"}}))
    assert first.closed
    assert (await running.client.get("/a")).status_code == 404
    assert (await running.client.get("/b")).status_code == 200
    running.gateway.apis.remove("shop")
    assert (await running.client.get("/b")).json()["error"]["code"] == "NotFound"  # no API: the gateway's own 404
