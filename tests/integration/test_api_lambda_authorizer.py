"""Lambda authorizers on the real platform: functions deployed with fx.yaml decide who may call an API's routes.

How often an authorizer ran is read where an operator would read it: the gateway's
`fx_gateway_requests_total{function=...}`, which counts its calls as it counts any call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import RunningPlatform, platform_in
from tests.integration.helpers import metric
from tests.waiting import wait_for

# Allows the identity "allow" and tells the handler who it is; denies the rest; "boom" makes it raise.
SIMPLE = """
def handler(event, context):
    token = event["identitySource"][0]
    if token == "boom":
        raise RuntimeError("the authorizer broke")
    return {"isAuthorized": token == "allow", "context": {"user": "ann", "level": 3, "route": event["routeKey"]}}
"""
# REST style (payload 1.0): one policy for the identity, allowing reads of orders and nothing else.
POLICY = """
def handler(event, context):
    api = event["methodArn"].split("/", 1)[0]
    return {
        "principalId": "user-" + event["identitySource"],
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": api + "/*/GET/orders/*"},
        ]},
        "context": {"tier": "gold", "vip": True},
    }
"""
ECHO = """
def handler(event, context):
    import json
    return {"statusCode": 200, "body": json.dumps(event["requestContext"].get("authorizer"))}
"""
SOURCE = ["$request.header.X-Token"]
TTL_S = 2


@pytest.fixture
def platform(tmp_path: Path, monkeypatch) -> Iterator[RunningPlatform]:
    """A platform whose gateways give an authorizer 60 s, not 10: a cold one on a loaded CI machine must not
    turn the assertions below into 500s."""
    monkeypatch.setenv("FX_AUTHORIZER_TIMEOUT", "60")
    yield from platform_in(tmp_path)


@pytest.fixture
def shop(platform: RunningPlatform, tmp_path: Path) -> str:
    """fx.yaml: functions (authorizers, a handler that echoes what it was told) and an API using them."""
    project = tmp_path / "shop"
    project.mkdir()
    for name, source in (("simple", SIMPLE), ("policy", POLICY), ("echo", ECHO)):
        (project / f"{name}.py").write_text(source)
    manifest = {
        "functions": {
            "authz": {"handler": "simple.handler"},
            "shortlived": {"handler": "simple.handler"},
            "iam": {"handler": "policy.handler"},
            "echo": {"handler": "echo.handler"},
        },
    }
    api = {
        "stage": "prod",
        "authorizers": {
            "mine": {"lambda": {"function": "authz", "simple_responses": True, "identity_source": SOURCE}},
            "brief": {
                "lambda": {
                    "function": "shortlived",
                    "simple_responses": True,
                    "identity_source": SOURCE,
                    "ttl": TTL_S,
                }
            },
            "rest": {"lambda": {"function": "iam", "payload": "1.0", "identity_source": SOURCE}},
        },
        "routes": {
            "GET /me": {"function": "echo", "auth": "mine"},
            "GET /brief": {"function": "echo", "auth": "brief"},
            "GET /orders/{id}": {"function": "echo", "auth": "rest", "payload": "1.0"},
            "DELETE /orders/{id}": {"function": "echo", "auth": "rest", "payload": "1.0"},
            "GET /open": {"function": "echo"},
        },
    }
    (project / "fx.yaml").write_text(yaml.safe_dump({**manifest, "apis": {"shop": api}}))
    result = platform.fx("deploy", cwd=project)
    assert result.returncode == 0, result.stderr
    url = platform.gateway_url
    wait_for(lambda: httpx.get(f"{url}/open", timeout=30).status_code == 200, 30, "the API's routes to be served")
    return url


def calls(platform, function: str) -> int:
    """Times the gateway called `function`, whatever it answered."""
    text = httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text
    samples = (s for f in text_string_to_metric_families(text) for s in f.samples)
    return int(
        sum(s.value for s in samples if s.name == "fx_gateway_requests_total" and s.labels["function"] == function)
    )


def get(url: str, token: str | None = None, method: str = "GET") -> httpx.Response:
    headers = {"X-Token": token} if token is not None else {}
    return httpx.request(method, url, headers=headers, timeout=30)


def test_an_allowed_caller_reaches_the_handler_with_the_authorizers_context(platform, shop):
    answer = get(f"{shop}/me", "allow")
    assert answer.status_code == 200, answer.text
    # Payload 2.0: the context as the function returned it, types kept, under "lambda".
    assert answer.json() == {"lambda": {"user": "ann", "level": 3, "route": "GET /me"}}


def test_the_authorizer_runs_once_per_identity_within_its_ttl(platform, shop):
    async def at_once(token: str, count: int) -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            answers = await asyncio.gather(
                *(client.get(f"{shop}/me", headers={"X-Token": token}) for _ in range(count))
            )
        return [answer.status_code for answer in answers]

    # 30 callers with a new identity at once, the authorizer still cold: they wait for one call together.
    assert asyncio.run(at_once("allow", 30)) == [200] * 30
    for _ in range(10):
        assert get(f"{shop}/me", "allow").status_code == 200
    for _ in range(5):
        assert get(f"{shop}/me", "deny").status_code == 403
    assert calls(platform, "authz") == 2  # one per identity: the default TTL (300 s) has not passed
    text = httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text
    assert metric(text, "fx_gateway_api_denied_total", api="shop", route="GET /me", reason="forbidden") == 5


def test_a_cached_answer_expires_after_its_ttl(platform, shop):
    """Calls over a window are bounded by one per TTL (a loaded machine only makes fewer), and it runs again."""
    started = time.monotonic()
    assert get(f"{shop}/brief", "allow").status_code == 200
    wait_for(
        lambda: get(f"{shop}/brief", "allow").status_code == 200 and calls(platform, "shortlived") >= 2,
        60,
        "the authorizer to run again once its answer expired",
    )
    elapsed = time.monotonic() - started
    assert elapsed >= TTL_S  # the second call came only after the first answer's TTL
    assert calls(platform, "shortlived") <= elapsed / TTL_S + 1


def test_a_denied_caller_gets_403(platform, shop):
    answer = get(f"{shop}/me", "deny")
    assert (answer.status_code, answer.json()) == (403, {"message": "Forbidden"})


def test_a_caller_without_the_identity_gets_401_and_the_authorizer_is_not_called(platform, shop):
    for token in (None, ""):
        answer = get(f"{shop}/me", token)
        assert (answer.status_code, answer.json()) == (401, {"message": "Unauthorized"})
    assert calls(platform, "authz") == 0


def test_an_authorizer_that_raises_is_a_500_and_is_asked_again(platform, shop):
    for _ in range(2):
        answer = get(f"{shop}/me", "boom")
        assert (answer.status_code, answer.json()) == (500, {"message": "Internal Server Error"})
    assert calls(platform, "authz") == 2  # a failure is not cached
    text = httpx.get(f"{platform.gateway_url}/metrics", timeout=10).text
    assert metric(text, "fx_gateway_api_denied_total", api="shop", route="GET /me", reason="authorizer_error") == 2
    log = (platform.state_dir / "logs" / "platform" / "gateway.log").read_text()
    assert "Lambda authorizer mine (function authz)" in log


def test_one_cached_policy_allows_one_route_and_denies_another(platform, shop):
    read = get(f"{shop}/orders/7", "ann")
    assert read.status_code == 200, read.text
    # Payload 1.0: principalId beside the context, every value a string, as REST hands them over.
    assert read.json() == {"principalId": "user-ann", "tier": "gold", "vip": "true"}
    delete = get(f"{shop}/orders/7", "ann", method="DELETE")
    assert (delete.status_code, delete.json()) == (403, {"message": "Forbidden"})
    assert get(f"{shop}/orders/8", "ann").status_code == 200
    assert calls(platform, "iam") == 1  # the one policy decided all three


def test_a_direct_caller_cannot_forge_an_authorizers_context(platform, shop):
    """The context travels in the gateway-only X-Fx-Route header: a caller's copy is dropped on every path."""
    forged = '{"routeKey": "GET /me", "payload": "2.0", "authorizer": {"lambda": {"user": "root"}}}'
    for path in ("/function/echo", "/me"):
        answer = httpx.get(f"{shop}{path}", headers={"X-Fx-Route": forged, "X-Token": "allow"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert "root" not in answer.text
