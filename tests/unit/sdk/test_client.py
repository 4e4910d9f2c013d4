import json

import fx
import httpx
import pytest
from fx.client import Client
from fx.errors import FunctionError, FxError
from fx.models import FunctionSpec

DIGEST = "sha256:" + "a" * 64


def client_for(handler) -> Client:
    return Client("http://fx.test", "tok", transport=httpx.MockTransport(handler))


def error(status: int, **detail) -> httpx.Response:
    return httpx.Response(status, json={"error": detail})


def test_error_bodies_become_fx_errors_with_code_field_and_function():
    c = client_for(lambda r: error(400, code="InvalidSpec", message="too small", field="scale.max", function="hi"))
    with pytest.raises(FxError) as err:
        c.deploy(FunctionSpec(name="hi", artifact=DIGEST))
    e = err.value
    assert (e.status, e.code, e.message, e.field, e.function) == (400, "InvalidSpec", "too small", "scale.max", "hi")


def test_a_non_json_error_keeps_status_and_text():
    c = client_for(lambda r: httpx.Response(502, text="bad gateway from a proxy"))
    with pytest.raises(FxError) as err:
        c.list_functions()
    assert err.value.status == 502 and "bad gateway from a proxy" in err.value.message


def test_lambdas_error_shape_from_the_gateway_keeps_its_type_and_message():
    body = {"errorType": "Runtime.ReplicaLost", "errorMessage": "the function may have run"}
    c = client_for(lambda r: httpx.Response(502, json=body))
    with pytest.raises(FxError) as err:
        c.invoke("hi", {})
    assert (err.value.status, err.value.code, err.value.message) == (502, *body.values())


def test_unauthorized_mentions_the_token():
    c = client_for(lambda r: error(401, code="Unauthorized", message="missing bearer"))
    with pytest.raises(FxError, match="token"):
        c.describe("hi")


def test_requests_carry_the_token_and_parse_models():
    seen = []

    def handler(r: httpx.Request) -> httpx.Response:
        seen.append((r.method, r.url.path, r.headers.get("authorization")))
        if r.method == "HEAD":
            return httpx.Response(404)
        body = {"function": "hi", "version": 2, "created": True, "digest": DIGEST, "message": "ok"}
        return httpx.Response(200, json=body)

    c = client_for(handler)
    assert c.has_artifact(DIGEST) is False
    result = c.deploy(FunctionSpec(name="hi", artifact=DIGEST))
    assert (result.version, result.created) == (2, True)
    assert seen == [
        ("HEAD", f"/system/artifacts/{DIGEST}", "Bearer tok"),
        ("PUT", "/system/functions/hi", "Bearer tok"),
    ]


def test_invoke_returns_the_result_and_raises_function_errors():
    def handler(r: httpx.Request) -> httpx.Response:
        assert r.url.path == "/2015-03-31/functions/hi/invocations"
        event = json.loads(r.content)
        if event.get("fail"):
            shape = {"errorType": "ValueError", "errorMessage": "boom"}
            return httpx.Response(200, json=shape, headers={"X-Amz-Function-Error": "Unhandled"})
        return httpx.Response(200, json={"got": event, "qualifier": r.url.params.get("Qualifier")})

    c = client_for(handler)
    assert c.invoke("hi", {"a": 1}, qualifier="3") == {"got": {"a": 1}, "qualifier": "3"}
    with pytest.raises(FunctionError) as err:
        c.invoke("hi", {"fail": True})
    assert err.value.payload["errorType"] == "ValueError" and "boom" in str(err.value)


def test_an_unreachable_gateway_says_how_to_fix_it():
    def refuse(r: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    with pytest.raises(FxError) as err:
        client_for(refuse).list_functions()
    assert err.value.status == 0
    assert "http://fx.test is not reachable" in err.value.message and "fx up" in err.value.message


def test_logs_yield_lines():
    c = client_for(lambda r: httpx.Response(200, text="START RequestId: 1\nhello\nEND RequestId: 1\n"))
    assert list(c.logs("hi", tail=3)) == ["START RequestId: 1", "hello", "END RequestId: 1"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, fx.BadRequest),
        (413, fx.BadRequest),
        (401, fx.Unauthorized),
        (403, fx.Unauthorized),
        (404, fx.NotFound),
        (409, fx.Conflict),
        (429, fx.Unavailable),
        (503, fx.Unavailable),
        (418, fx.FxError),
    ],
)
def test_each_refusal_is_the_error_its_status_names(status, kind):
    with pytest.raises(kind) as err:
        client_for(lambda r: error(status, code="X", message="no")).list_functions()
    assert type(err.value) is kind and err.value.status == status


def test_a_function_error_carries_lambdas_type_message_and_trace():
    shape = {"errorType": "KeyError", "errorMessage": "'JPY'", "stackTrace": ['  File "h.py", line 3']}
    answer = httpx.Response(200, json=shape, headers={"X-Amz-Function-Error": "Unhandled"})
    with pytest.raises(fx.FunctionError) as err:
        client_for(lambda r: answer).invoke("hi", {})
    assert (err.value.error_type, err.value.error_message, err.value.stack_trace) == tuple(shape.values())
    assert str(err.value) == "KeyError: 'JPY'"


def test_an_async_invoke_returns_the_call_id_the_gateway_stored_it_under():
    def accept(r: httpx.Request) -> httpx.Response:
        assert r.headers["X-Amz-Invocation-Type"] == "Event"
        return httpx.Response(202, headers={"X-Fx-Call-Id": "c-1"})

    assert client_for(accept).invoke("hi", {}, async_=True) == "c-1"


def test_a_client_without_a_gateway_uses_the_clis_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("FX_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setenv("FX_GATEWAY", "127.0.0.1:9999")
    monkeypatch.setenv("FX_TOKEN", "from-env")
    monkeypatch.chdir(tmp_path)
    with fx.Client() as c:
        assert c.gateway == "http://127.0.0.1:9999" and c._http.headers["Authorization"] == "Bearer from-env"
    with fx.Client("http://other:1") as c:  # a gateway given without a token sends none
        assert "Authorization" not in c._http.headers
