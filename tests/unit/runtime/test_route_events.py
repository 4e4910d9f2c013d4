"""Events of requests that came through an API route: built from the gateway's X-Fx-Route, whose payload decides
the event format and the response rules, whatever the function's own FX_HTTP_EVENT."""

import json

import httpx

ECHO = {"handler.py": "def handler(event, context):\n    return event\n"}
WRAPPED = {  # the event as the body of a structured answer, which both formats accept
    "handler.py": "import json\ndef handler(event, context):\n    return {'statusCode': 200, 'body': json.dumps(event)}"
}


def route(**fields) -> dict[str, str]:
    context = {
        "routeKey": "GET /users/{id}/{rest+}",
        "resource": "/users/{id}/{rest+}",
        "pathParameters": {"id": "7", "rest": "a/b"},
        "stage": "prod",
        "stageVariables": {"env": "prod"},
        "apiId": "shop",
        "payload": "2.0",
        "authorizer": {"jwt": {"claims": {"sub": "ann"}, "scopes": ["read"]}},
    }
    return {"X-Fx-Route": json.dumps(context | fields)}


def test_a_v2_event_carries_the_route(start):
    replica = start(ECHO)
    event = httpx.get(f"{replica.base}/_fx/http/users/7/a/b", headers=route()).json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "GET /users/{id}/{rest+}"
    assert event["rawPath"] == "/users/7/a/b"
    assert event["pathParameters"] == {"id": "7", "rest": "a/b"}
    assert event["stageVariables"] == {"env": "prod"}
    assert event["requestContext"]["stage"] == "prod" and event["requestContext"]["apiId"] == "shop"
    assert event["requestContext"]["authorizer"] == {"jwt": {"claims": {"sub": "ann"}, "scopes": ["read"]}}
    assert "x-fx-route" not in event["headers"]


def test_a_v1_event_carries_the_route_and_its_version(start):
    replica = start(ECHO, FX_HTTP_EVENT="v2")  # the route's payload wins over the function's format
    headers = route(payload="1.0", authorizer={"principalId": "ann"}, stageVariables=None, pathParameters=None)
    r = httpx.get(f"{replica.base}/_fx/http/users", headers=headers)
    assert r.status_code == 502  # a 1.0 answer needs a statusCode: this echo has none, so the 1.0 rules applied
    replica2 = start(
        {"handler.py": "import json\ndef handler(e, c):\n    return {'statusCode': 200, 'body': json.dumps(e)}\n"}
    )
    event = httpx.get(f"{replica2.base}/_fx/http/users/7/a/b", headers=route(payload="1.0")).json()
    assert event["version"] == "1.0"
    assert event["resource"] == event["requestContext"]["resourcePath"] == "/users/{id}/{rest+}"
    assert event["pathParameters"] == {"id": "7", "rest": "a/b"}
    assert event["stageVariables"] == {"env": "prod"}
    assert event["requestContext"]["stage"] == "prod"
    assert event["requestContext"]["authorizer"] == {"jwt": {"claims": {"sub": "ann"}, "scopes": ["read"]}}
    bare = httpx.get(f"{replica2.base}/_fx/http/users", headers=headers).json()
    assert bare["stageVariables"] is None and bare["pathParameters"] is None  # null when none, as AWS


def test_without_a_route_events_stay_as_before(start):
    replica = start(WRAPPED, FX_HTTP_EVENT="v1")
    event = httpx.get(f"{replica.base}/_fx/http/users/7").json()
    assert "version" not in event
    assert event["resource"] == "/{proxy+}" and event["pathParameters"] == {"proxy": "users/7"}
    assert event["requestContext"]["stage"] == "$default"
    assert httpx.get(f"{start(ECHO).base}/_fx/http/x").json()["routeKey"] == "$default"
