"""HTTP trigger events built from real requests, and Lambda's rules for the answers."""

import base64
import json

import httpx
import pytest
from fx_runtime import http_events
from fx_runtime.http_events import MalformedResponse, response

ECHO = {"handler.py": "def handler(event, context):\n    return event\n"}
RESPOND = {
    "handler.py": """
        import json
        def handler(event, context):
            return json.loads(event["body"])
    """
}


def test_v2_event_from_a_real_request(start):
    replica = start(ECHO)
    r = httpx.post(
        f"{replica.base}/_fx/http/items/42?q=a%20b&q=c&flag",
        content=b'{"k": 1}',
        headers={
            "Content-Type": "application/json",
            "X-Forwarded-For": "203.0.113.9, 10.0.0.1",
            "X-Forwarded-Host": "api.example.com",
            "Cookie": "a=1; b=2",
            "X-Multi": "one",
            "User-Agent": "tester/1",
        },
    )
    assert r.status_code == 200
    event = r.json()
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/items/42"
    assert event["rawQueryString"] == "q=a%20b&q=c&flag"
    assert event["queryStringParameters"] == {"q": "a b,c", "flag": ""}
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "one" and event["headers"]["content-type"] == "application/json"
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "POST",
        "path": "/items/42",
        "protocol": "HTTP/1.1",
        "sourceIp": "203.0.113.9",
        "userAgent": "tester/1",
    }
    assert ctx["domainName"] == "api.example.com" and ctx["domainPrefix"] == "api"
    assert ctx["stage"] == "$default" and ctx["requestId"] and isinstance(ctx["timeEpoch"], int)


def test_binary_body_is_base64_and_root_path(start):
    replica = start(ECHO)
    event = httpx.put(
        f"{replica.base}/_fx/http", content=b"\xff\x00", headers={"Content-Type": "application/octet-stream"}
    ).json()
    assert event["rawPath"] == "/" and event["rawQueryString"] == ""
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\x00"
    assert "queryStringParameters" not in event


def test_structured_response(start):
    replica = start(RESPOND)
    answer = {
        "statusCode": 201,
        "headers": {"X-One": "1", "Content-Type": "text/plain"},
        "cookies": ["s=1; Path=/", "t=2"],
        "body": "created",
    }
    r = httpx.post(f"{replica.base}/_fx/http/", content=json.dumps(answer))
    assert r.status_code == 201 and r.text == "created"
    assert r.headers["x-one"] == "1" and r.headers["content-type"] == "text/plain"
    assert r.headers.get_list("set-cookie") == ["s=1; Path=/", "t=2"]


def test_base64_response_body(start):
    replica = start(RESPOND)
    answer = {"statusCode": 200, "body": base64.b64encode(b"\x89PNG").decode(), "isBase64Encoded": True}
    assert httpx.post(f"{replica.base}/_fx/http/", content=json.dumps(answer)).content == b"\x89PNG"


@pytest.mark.parametrize(
    ("result", "body"),
    [({"hello": "world"}, {"hello": "world"}), ([1, 2], [1, 2]), (7, 7), (None, None)],
)
def test_results_without_status_code_are_200_json(start, result, body):
    replica = start(RESPOND)
    r = httpx.post(f"{replica.base}/_fx/http/", content=json.dumps(result))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == body


def test_string_result_is_the_body():
    assert response("v2", "plain words", b'"plain words"')[::2] == (200, b"plain words")


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "abc"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    ],
)
def test_malformed_responses(result):
    with pytest.raises(MalformedResponse):
        response("v2", result, b"")


def test_malformed_response_and_function_error_are_502(start):
    replica = start(
        {
            "handler.py": """
                def handler(event, context):
                    if event["rawPath"] == "/bad":
                        return {"statusCode": 200, "body": {"x": 1}}
                    raise ValueError("nope")
            """
        }
    )
    for path in ("bad", "raise"):
        r = httpx.get(f"{replica.base}/_fx/http/{path}")
        assert r.status_code == 502 and r.json() == {"message": "Internal Server Error"}
    log = replica.log_text("[ERROR] ValueError: nope")
    assert "Malformed Lambda proxy response" in log and "[ERROR] ValueError: nope" in log
    # The gateway's async worker asks for the error itself, for the dead letter.
    detail = {"X-Fx-Error-Detail": "1"}
    raised = httpx.get(f"{replica.base}/_fx/http/raise", headers=detail)
    assert raised.status_code == 502 and raised.headers["X-Amz-Function-Error"] == "Unhandled"
    assert raised.json()["errorType"] == "ValueError" and raised.json()["errorMessage"] == "nope"
    malformed = httpx.get(f"{replica.base}/_fx/http/bad", headers=detail)
    assert malformed.status_code == 502 and malformed.json()["errorType"] == "MalformedResponse"


def test_v1_and_alb_events_need_a_status_code(start):
    replica = start(ECHO, FX_HTTP_EVENT="v1")
    assert httpx.get(f"{replica.base}/_fx/http/x").status_code == 502
    assert response("v1", {"statusCode": 204}, b"")[0] == 204


def test_v1_event_shape(start):
    replica = start(
        {"handler.py": "import json\ndef handler(e, c):\n    return {'statusCode': 200, 'body': json.dumps(e)}\n"},
        FX_HTTP_EVENT="v1",
    )
    event = httpx.get(f"{replica.base}/_fx/http/a/b?x=1&x=2").json()
    assert event["httpMethod"] == "GET" and event["path"] == "/a/b" and event["resource"] == "/{proxy+}"
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["pathParameters"] == {"proxy": "a/b"}


def test_alb_event_shape(start):
    replica = start(
        {"handler.py": "import json\ndef handler(e, c):\n    return {'statusCode': 200, 'body': json.dumps(e)}\n"},
        FX_HTTP_EVENT="alb",
    )
    event = httpx.get(f"{replica.base}/_fx/http/p?a=%20b").json()
    assert event["requestContext"]["elb"]["targetGroupArn"].endswith(":targetgroup/fn/0")
    assert (event["httpMethod"], event["path"], event["queryStringParameters"]) == ("GET", "/p", {"a": "%20b"})


JSON_EVENT = {"handler.py": "import json\ndef handler(e, c):\n    return {'statusCode': 200, 'body': json.dumps(e)}\n"}


def test_v1_keeps_header_case_and_every_value_and_sends_nulls(start):
    replica = start(JSON_EVENT, FX_HTTP_EVENT="v1")
    headers = [("X-Trace", "one"), ("X-Trace", "two"), ("Accept", "text/plain")]
    event = httpx.get(f"{replica.base}/_fx/http/", headers=headers).json()
    assert event["headers"]["X-Trace"] == "two" and event["multiValueHeaders"]["X-Trace"] == ["one", "two"]
    # The root is API Gateway's "/" resource, not {proxy+}; REST sends these keys as null, not omitted.
    assert event["resource"] == "/" and event["pathParameters"] is None
    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None
    assert event["body"] is None and event["stageVariables"] is None
    identity = event["requestContext"]["identity"]
    assert identity["sourceIp"] == "127.0.0.1" and identity["cognitoIdentityId"] is None and "userArn" in identity


def test_alb_multi_value_mode_sends_only_the_multi_value_maps(start):
    replica = start(JSON_EVENT, FX_HTTP_EVENT="alb", FX_ALB_MULTI_VALUE_HEADERS="true")
    event = httpx.get(f"{replica.base}/_fx/http/p?t=a&t=b%20c", headers=[("X-A", "1"), ("X-A", "2")]).json()
    assert event["multiValueQueryStringParameters"] == {"t": ["a", "b%20c"]}
    assert event["multiValueHeaders"]["x-a"] == ["1", "2"]
    assert "headers" not in event and "queryStringParameters" not in event

    single = start(JSON_EVENT, FX_HTTP_EVENT="alb")
    event = httpx.get(f"{single.base}/_fx/http/p?t=a&t=b", headers=[("X-A", "1"), ("X-A", "2")]).json()
    assert event["queryStringParameters"] == {"t": "b"} and event["headers"]["x-a"] == "2"  # the last value
    assert "multiValueHeaders" not in event


def test_response_header_rules_per_format():
    result = {
        "statusCode": 200,
        "headers": {"X-One": "a", "X-Both": "same"},
        "multiValueHeaders": {"X-Both": ["same", "other"], "Set-Cookie": ["c=1", "d=2"]},
        "cookies": ["v2=only"],
    }
    # REST and ALB merge both maps, a pair present in both once; payload 2.0 has no multiValueHeaders.
    for kind in ("v1", "alb"):
        headers = response(kind, result, b"")[1]
        assert sorted(headers) == sorted(
            [("X-One", "a"), ("X-Both", "same"), ("X-Both", "other"), ("Set-Cookie", "c=1"), ("Set-Cookie", "d=2")]
        )
    assert response("v2", result, b"")[1] == [("X-One", "a"), ("X-Both", "same"), ("Set-Cookie", "v2=only")]


def test_header_names_are_lower_cased_past_the_names_the_replica_remembers():
    names = [f"X-Made-Up-{i}".encode() for i in range(2 * http_events.NAMES_REMEMBERED)]
    req = http_events.Request("GET", "/", "", [(name, b"v") for name in names], b"", "127.0.0.1", "id")
    for _ in range(2):  # the second time, the first names are remembered
        assert list(http_events.event_v2(req)["headers"]) == [name.decode().lower() for name in names]
    assert len(http_events._KEYS) <= http_events.NAMES_REMEMBERED
