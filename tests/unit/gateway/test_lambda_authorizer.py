"""Lambda authorizers with a fake function: API Gateway's outcomes, caching by identity, one call in flight."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any

import pytest
from fx_gateway.api import metrics
from fx_gateway.api.authorizers.lambda_function import AuthorizerError, LambdaAuthorizer, parse_response
from fx_gateway.api.decisions import Allow, Deny
from fx_gateway.api.request import ApiRequest
from fx_gateway.config import Settings
from fx_gateway.proxy.internal import Result

from tests.waiting import until

ARN = "arn:aws:execute-api:us-east-1:000000000000:shop/prod"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Function:
    """The authorizer function: answers `answer(event)`; while `gate` is set, every call waits for it (at most
    `timeout` s, then a 504 by the gateway, as ApiServices.invoke answers)."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = answer if callable(answer) else lambda event: answer
        self.events: list[dict] = []
        self.timeouts: list[float] = []
        self.gate: asyncio.Event | None = None

    async def invoke(self, function_ref: str, payload: bytes, timeout: float) -> Result:
        assert function_ref == "authz"
        self.events.append(json.loads(payload))
        self.timeouts.append(timeout)
        if self.gate is not None:
            try:
                await asyncio.wait_for(self.gate.wait(), timeout)
            except TimeoutError:
                return Result(504, b'{"message":"function timed out"}', by_gateway=True)
        answer = self.answer(self.events[-1])
        return answer if isinstance(answer, Result) else Result(200, json.dumps(answer).encode())


class Services:
    def __init__(self, function: Function, settings: Settings) -> None:
        self.settings = settings
        self.invoke = function.invoke


def authorizer(function: Function, clock: Clock | None = None, settings: Settings | None = None, **spec: Any):
    spec = {
        "function": "authz",
        "payload": "2.0",
        "simple_responses": True,
        "identity_source": ["$request.header.Authorization"],
        "ttl": 300,
        **spec,
    }
    return LambdaAuthorizer("mine", spec, Services(function, settings or Settings()), clock or Clock())


def request(token: str | None = "t1", method: str = "GET", path: str = "/users/7", **headers: str) -> ApiRequest:
    sent = {name.encode(): value.encode() for name, value in headers.items()}
    if token is not None:
        sent[b"authorization"] = token.encode()
    return ApiRequest(
        api="shop",
        route_key="GET /users/{id}",
        method=method,
        path=path,
        query="a=1&a=2&b=",
        headers={b"host": b"shop.example.com", **sent},
        source_ip="10.0.0.9",
        host="shop.example.com",
        stage="prod",
        path_parameters={"id": "7"},
        stage_variables={"env": "prod"},
    )


def simple(authorized: bool, **context: Any) -> dict:
    return {"isAuthorized": authorized, "context": context}


def policy(*statements: tuple[str, str], principal: str = "user-1", **context: Any) -> dict:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": e, "Action": "execute-api:Invoke", "Resource": r} for e, r in statements],
    }
    return {"principalId": principal, "policyDocument": document, "context": context}


@pytest.fixture
def denials():
    before = dict(metrics._denials)
    yield (
        lambda reason: (
            metrics._denials.get(("shop", "GET /users/{id}", reason), 0)
            - before.get(("shop", "GET /users/{id}", reason), 0)
        )
    )


async def test_a_simple_allow_hands_the_context_to_the_handler():
    function = Function(simple(True, user="ann", admin=True, level=3))
    decision = await authorizer(function).authorize(request(), [])
    assert decision == Allow(
        v2={"lambda": {"user": "ann", "admin": True, "level": 3}},
        v1={"user": "ann", "admin": "true", "level": "3"},  # REST hands context values over as strings
    )


async def test_a_simple_deny_is_403_and_counted(denials):
    assert await authorizer(Function(simple(False))).authorize(request(), []) == Deny(403, "Forbidden")
    assert denials("forbidden") == 1


async def test_a_missing_identity_is_401_without_calling_the_function(denials):
    function = Function(simple(True))
    assert await authorizer(function).authorize(request(token=None), []) == Deny(401, "Unauthorized")
    assert await authorizer(function).authorize(request(token=""), []) == Deny(401, "Unauthorized")
    assert function.events == []
    assert denials("unauthorized") == 2


async def test_the_v2_event_is_api_gateways():
    function = Function(simple(True))
    await authorizer(function).authorize(request(cookie="a=1; b=2", **{"user-agent": "curl/8"}), [])
    event = function.events[0]
    assert event["version"] == "2.0" and event["type"] == "REQUEST"
    assert event["routeArn"] == f"{ARN}/GET/users/7"
    assert event["identitySource"] == ["t1"]
    assert event["routeKey"] == "GET /users/{id}"
    assert (event["rawPath"], event["rawQueryString"]) == ("/users/7", "a=1&a=2&b=")
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"] and event["headers"]["authorization"] == "t1"
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["pathParameters"] == {"id": "7"} and event["stageVariables"] == {"env": "prod"}
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/users/7",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.9",
        "userAgent": "curl/8",
    }
    assert (context["apiId"], context["stage"], context["routeKey"]) == ("shop", "prod", "GET /users/{id}")
    assert (context["domainName"], context["domainPrefix"]) == ("shop.example.com", "shop")
    # As in 2.0 handler events, no pathParameters or stageVariables when there are none.
    await authorizer(function).authorize(replace(request("t2"), path_parameters={}, stage_variables={}), [])
    assert "pathParameters" not in function.events[1] and "stageVariables" not in function.events[1]


async def test_the_v1_event_is_api_gateways():
    function = Function(policy(("Allow", "*")))
    await authorizer(function, payload="1.0", simple_responses=False).authorize(request(), [])
    event = function.events[0]
    assert (event["version"], event["type"], event["methodArn"]) == ("1.0", "REQUEST", f"{ARN}/GET/users/7")
    assert (event["identitySource"], event["authorizationToken"]) == ("t1", "t1")
    assert (event["resource"], event["path"], event["httpMethod"]) == ("/users/{id}", "/users/7", "GET")
    assert event["headers"]["authorization"] == "t1"
    assert event["multiValueHeaders"]["authorization"] == ["t1"]
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    assert event["requestContext"]["resourcePath"] == "/users/{id}"
    assert event["requestContext"]["identity"]["sourceIp"] == "10.0.0.9"


async def test_one_cached_policy_allows_one_route_and_denies_another():
    """REST's model: the policy is cached by identity and evaluated against each request's method ARN."""
    function = Function(policy(("Allow", f"{ARN}/GET/users/*"), ("Deny", f"{ARN}/*/users/admin"), role="reader"))
    auth = authorizer(function, payload="1.0", simple_responses=False)
    allowed = await auth.authorize(request(path="/users/7"), [])
    assert allowed == Allow(v2={"lambda": {"role": "reader"}}, v1={"role": "reader", "principalId": "user-1"})
    assert await auth.authorize(request(method="POST", path="/users/7"), []) == Deny(403, "Forbidden")
    assert await auth.authorize(request(path="/users/admin"), []) == Deny(403, "Forbidden")
    assert len(function.events) == 1


async def test_a_simple_answer_holds_for_every_route_until_its_ttl():
    clock = Clock()
    function = Function(simple(True))
    auth = authorizer(function, clock, ttl=60)
    for path in ("/users/1", "/users/2", "/users/3"):
        assert isinstance(await auth.authorize(request(path=path), []), Allow)
    assert len(function.events) == 1
    clock.now += 59.9
    await auth.authorize(request(), [])
    assert len(function.events) == 1
    clock.now += 0.1  # expired
    await auth.authorize(request(), [])
    assert len(function.events) == 2


async def test_each_identity_has_its_own_answer():
    function = Function(lambda event: simple(event["identitySource"] == ["allow"]))
    auth = authorizer(function)
    assert isinstance(await auth.authorize(request("allow"), []), Allow)
    assert await auth.authorize(request("deny"), []) == Deny(403, "Forbidden")
    assert await auth.authorize(request("deny"), []) == Deny(403, "Forbidden")  # denials are cached too
    assert isinstance(await auth.authorize(request("allow"), []), Allow)
    assert [e["identitySource"] for e in function.events] == [["allow"], ["deny"]]


async def test_several_identity_sources_all_count():
    function = Function(simple(True))
    auth = authorizer(function, identity_source=["$request.header.Authorization", "$request.querystring.b"])
    assert await auth.authorize(request(), []) == Deny(401, "Unauthorized")  # b is there but empty
    assert function.events == []
    assert isinstance(await auth.authorize(replace(request(), query="b=x"), []), Allow)
    assert [e["identitySource"] for e in function.events] == [["t1", "x"]]


@pytest.mark.parametrize("spec", [{"ttl": 0}, {"identity_source": []}])
async def test_without_a_ttl_or_identity_sources_every_request_asks(spec):
    function = Function(simple(True))
    auth = authorizer(function, **spec)
    for _ in range(3):
        assert isinstance(await auth.authorize(request(token=None if "identity_source" in spec else "t"), []), Allow)
    assert len(function.events) == 3


async def test_concurrent_requests_of_one_identity_share_one_call():
    function = Function(simple(True, n=1))
    function.gate = asyncio.Event()
    auth = authorizer(function)
    waiting = [asyncio.ensure_future(auth.authorize(request(), [])) for _ in range(50)]
    other = asyncio.ensure_future(auth.authorize(request("t2"), []))
    await until(lambda: len(function.events) == 2, what="one call per identity")
    function.gate.set()
    decisions = await asyncio.gather(*waiting, other)
    assert all(isinstance(d, Allow) for d in decisions)
    assert len(function.events) == 2


async def test_a_caller_that_hangs_up_does_not_cancel_the_call_others_wait_for():
    function = Function(simple(True))
    function.gate = asyncio.Event()
    auth = authorizer(function)
    first = asyncio.ensure_future(auth.authorize(request(), []))
    second = asyncio.ensure_future(auth.authorize(request(), []))
    await until(lambda: len(function.events) == 1, what="the call")
    first.cancel()
    function.gate.set()
    assert isinstance(await second, Allow)
    assert isinstance(await auth.authorize(request(), []), Allow)
    assert len(function.events) == 1  # the answer was cached


async def test_the_cache_is_bounded_and_drops_the_oldest():
    function = Function(simple(True))
    auth = authorizer(function, settings=Settings(authorizer_cache_entries=2))
    for token in ("a", "b", "c"):
        await auth.authorize(request(token), [])
    await auth.authorize(request("c"), [])
    await auth.authorize(request("b"), [])
    assert len(function.events) == 3
    await auth.authorize(request("a"), [])  # dropped when c came
    assert len(function.events) == 4


async def test_a_known_decision_needs_no_await():
    """The front door's hot path: decided() answers without a task when no call is needed."""
    function = Function(simple(True))
    auth = authorizer(function)
    assert auth.decided(request(token=None), []) == Deny(401, "Unauthorized")
    assert auth.decided(request(), []) is None  # not known yet: authorize() calls the function
    allowed = await auth.authorize(request(), [])
    assert auth.decided(request(), []) == allowed
    assert len(function.events) == 1


async def test_an_answer_asked_again_after_expiry_is_kept_in_expiry_order():
    clock = Clock()
    function = Function(simple(True))
    auth = authorizer(function, clock, ttl=10, settings=Settings(authorizer_cache_entries=2))
    await auth.authorize(request("a"), [])
    clock.now += 5
    await auth.authorize(request("b"), [])
    clock.now += 6  # a expired, b has 4 s left
    await auth.authorize(request("a"), [])  # a again: now the newest
    await auth.authorize(request("c"), [])  # full: b, the oldest, goes
    assert [e["identitySource"][0] for e in function.events] == ["a", "b", "a", "c"]
    await auth.authorize(request("a"), [])
    assert len(function.events) == 4


async def test_close_forgets_the_cache():
    function = Function(simple(True))
    auth = authorizer(function)
    await auth.authorize(request(), [])
    auth.close()
    await auth.authorize(request(), [])
    assert len(function.events) == 2


def failing(status: int, body: bytes, error: bytes | None = None) -> Result:
    return Result(status, body, {b"x-amz-function-error": error} if error else {})


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        (failing(200, b'{"errorType": "ValueError"}', b"Unhandled"), "the function failed: b'{\"errorType"),
        (Result(404, b"function not found", by_gateway=True), "the gateway could not call it (404)"),
        (failing(502, b"Runtime.ExitError"), "its call failed (502)"),
        (failing(200, b"not json"), "the answer is not JSON"),
        ([True], "must be a JSON object, not list"),
        ({"isAuthorized": "yes"}, "isAuthorized must be true or false, not 'yes'"),
        ({"isAuthorized": True, "context": [1]}, "context must be an object"),
    ],
)
async def test_a_failing_or_garbled_authorizer_is_500_logged_and_not_cached(answer, logged, caplog, denials):
    function = Function(answer)
    auth = authorizer(function)
    with caplog.at_level(logging.WARNING, "fx_gateway"):
        assert await auth.authorize(request(), []) == Deny(500, "Internal Server Error")
    assert logged in caplog.text and "Lambda authorizer mine (function authz)" in caplog.text
    assert denials("authorizer_error") == 1
    await auth.authorize(request(), [])
    assert len(function.events) == 2


async def test_a_slow_authorizer_is_500_after_the_timeout(caplog):
    function = Function(simple(True))
    function.gate = asyncio.Event()  # never set
    auth = authorizer(function, settings=Settings(authorizer_timeout=0.05))
    assert await auth.authorize(request(), []) == Deny(500, "Internal Server Error")
    assert function.timeouts == [0.05]
    assert 'no answer in time (b\'{"message":"function timed out"}\'; --authorizer-timeout 0.05)' in caplog.text


async def test_an_oversized_answer_is_500(caplog):
    function = Function(simple(True, blob="x" * 100))
    auth = authorizer(function, settings=Settings(authorizer_max_bytes=64))
    assert await auth.authorize(request(), []) == Deny(500, "Internal Server Error")
    assert "more than --authorizer-max-bytes 64" in caplog.text


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"policyDocument": {"Statement": []}}, "principalId must be a non-empty string"),
        ({"principalId": "u"}, "policyDocument must be an object"),
        (policy(("Allow", "*"), nested={"a": 1}), "context values must be strings, numbers or booleans"),
        ({"principalId": "u", "policyDocument": {"Statement": [{"Effect": "Allow"}]}}, "Action must be a string"),
    ],
)
def test_policy_answers_api_gateway_would_refuse(answer, message):
    with pytest.raises(AuthorizerError, match=message):
        parse_response(json.dumps(answer).encode(), simple=False, payload="1.0")


def test_payload_2_keeps_nested_context_values():
    verdict = parse_response(json.dumps(simple(True, groups=["a"])).encode(), simple=True, payload="2.0")
    assert verdict.allow == Allow(v2={"lambda": {"groups": ["a"]}}, v1={"groups": '["a"]'})
