"""/system/apis on a real nats-server with a scripted backend: what is stored in fx_apis (the gateways' wire
JSON), and every refusal with nothing of it stored."""

from __future__ import annotations

import json

import pytest
from fx import kv_watch
from fx.protocol import KV_APIS
from fx_controller.controller import Controller
from fx_controller.settings import Settings

SHOP = {
    "hosts": ["shop.example.com"],
    "authorizers": {"mine": {"lambda": {"function": "authz", "ttl": 0}}},
    "routes": {
        "get /users/{id}": {"function": "users", "auth": "mine"},
        "GET /health": {"mock": {"body": {"ok": True}}},
    },
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small limits, to reach them (--max-apis, --max-routes-per-api)."""
    settings.max_apis, settings.max_routes_per_api = 2, 3
    return settings


@pytest.fixture
async def functions(deployed):
    for name in ("users", "authz"):
        await deployed(name)


async def stored(controller: Controller) -> dict[str, dict]:
    kv = await controller._nc.jetstream().key_value(KV_APIS)
    return {key: json.loads(value) for key, value in (await kv_watch.load(kv)).items()}


async def test_an_api_is_stored_as_the_gateways_read_it_listed_and_removed(admin, functions, controller):
    r = await admin.put("/system/apis/shop", json=SHOP)
    assert r.status_code == 200, r.text
    wire = (await stored(controller))["shop"]
    assert r.json() == wire and wire["name"] == "shop" and list(wire["routes"]) == ["GET /users/{id}", "GET /health"]
    assert wire["routes"]["GET /health"]["mock"] == {"status": 200, "headers": {}, "body": {"ok": True}}
    assert wire["authorizers"]["mine"] == {
        "lambda": {"function": "authz", "payload": "2.0", "simple_responses": False, "identity_source": [], "ttl": 0}
    }
    assert (await admin.get("/system/apis")).json() == [wire]
    assert (await admin.get("/system/apis/shop")).json() == wire
    assert (await admin.put("/system/apis/shop", json=wire)).status_code == 200  # what GET says can be PUT back
    assert (await admin.delete("/system/apis/shop")).status_code == 204
    assert await stored(controller) == {}
    r = await admin.get("/system/apis/shop")
    assert r.status_code == 404 and r.json()["error"]["code"] == "ApiNotFound"
    assert (await admin.delete("/system/apis/shop")).status_code == 404


async def test_a_dry_run_checks_everything_and_stores_nothing(admin, functions, controller):
    r = await admin.put("/system/apis/shop?dry_run=true", json=SHOP)
    assert r.status_code == 200 and r.json()["routes"]["GET /users/{id}"]["function"] == "users"
    r = await admin.put("/system/apis/shop?dry_run=true", json={"routes": {"GET /a": {"function": "nope"}}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "FunctionNotFound"
    assert await stored(controller) == {} and (await admin.get("/system/apis")).json() == []
    # A deploy's first dry run: the functions it is about to create are no refusal, the others still are.
    body = {"routes": {"GET /a": {"function": "coming"}, "GET /b": {"function": "nope"}}}
    r = await admin.put("/system/apis/shop?dry_run=true&deploying=coming", json=body)
    assert r.status_code == 400 and "invokes 'nope'" in r.json()["error"]["message"]
    r = await admin.put("/system/apis/shop?dry_run=true&deploying=coming&deploying=nope", json=body)
    assert r.status_code == 200, r.text
    r = await admin.put("/system/apis/shop?deploying=coming&deploying=nope", json=body)
    assert r.status_code == 400 and r.json()["error"]["field"] == "deploying"
    assert await stored(controller) == {}


@pytest.mark.parametrize(
    ("body", "status", "code", "field", "words"),
    [
        ({"routes": {"GET /a": {"function": "nope"}}}, 400, "FunctionNotFound", "routes.GET /a.function", "deploy it"),
        (
            {"routes": {"GET /a": {"function": "users@live"}}},
            400,
            "FunctionNotFound",
            "routes.GET /a.function",
            "no version or alias 'live' (versions: 1; aliases: none)",
        ),
        ({"routes": {"GET /a": {"function": "users@2"}}}, 400, "FunctionNotFound", "routes.GET /a.function", "'2'"),
        (
            {
                "authorizers": {"m": {"lambda": {"function": "gone", "ttl": 0}}},
                "routes": {"GET /a": {"function": "users"}},
            },
            400,
            "FunctionNotFound",
            "authorizers.m.lambda.function",
            "authorizer 'm' invokes 'gone'",
        ),
        (
            {"routes": {"GET /a": {"function": "users", "auth": "x"}}},
            400,
            "InvalidSpec",
            "routes.GET /a.auth",
            "'x' is not an authorizer of this API (its authorizers: none)",
        ),
        ({"routes": {"GET /a//b": {"function": "users"}}}, 400, "InvalidSpec", "routes.GET /a//b", "empty segment"),
        (
            {"routes": {"GET /a": {"function": "users", "mock": {}}}},
            400,
            "InvalidSpec",
            "routes.GET /a",
            "exactly one of",
        ),
        ({"name": "other", "routes": {"GET /a": {"function": "users"}}}, 400, "InvalidSpec", "name", "'other'"),
        ({"routes": {"GET /a": {"function": "users"}}, "extra": 1}, 400, "InvalidSpec", "extra", "Extra inputs"),
    ],
)
async def test_a_bad_api_is_refused_naming_the_field_and_nothing_is_stored(
    admin, functions, controller, body, status, code, field, words
):
    r = await admin.put("/system/apis/shop", json=body)
    error = r.json()["error"]
    assert (r.status_code, error["code"], error.get("field")) == (status, code, field), r.text
    assert words in error["message"]
    assert await stored(controller) == {}


@pytest.mark.parametrize(
    ("hosts", "other_hosts", "conflict"),
    [
        ([], [], True),
        ([], ["shop.example.com"], True),  # any host covers every host
        (["*.example.com"], ["shop.example.com"], True),
        (["shop.example.com"], ["admin.example.com"], False),
    ],
)
async def test_the_same_route_in_two_apis_on_overlapping_hosts_is_refused_naming_both(
    admin, functions, controller, hosts, other_hosts, conflict
):
    first = {"hosts": hosts, "routes": {"GET /users/{id}": {"function": "users"}, "GET /a": {"function": "users"}}}
    assert (await admin.put("/system/apis/shop", json=first)).status_code == 200
    second = {"hosts": other_hosts, "routes": {"GET /b": {"function": "users"}, "get /users/{uid}": {"mock": {}}}}
    r = await admin.put("/system/apis/admin", json=second)
    if not conflict:
        assert r.status_code == 200, r.text
        return
    error = r.json()["error"]
    assert r.status_code == 409 and error["code"] == "RouteConflict", r.text
    for words in ("'GET /users/{uid}' of API 'admin'", "'GET /users/{id}' of API 'shop'"):
        assert words in error["message"]
    assert list(await stored(controller)) == ["shop"]
    # An API may replace its own routes: no conflict with itself.
    assert (
        await admin.put("/system/apis/shop", json={**first, "routes": {"GET /users/{x}": {"function": "users"}}})
    ).status_code == 200


async def test_a_function_a_route_or_authorizer_invokes_cannot_be_deleted(admin, functions, controller):
    assert (await admin.put("/system/apis/shop", json=SHOP)).status_code == 200
    for function, user in (("users", "route 'GET /users/{id}'"), ("authz", "authorizer 'mine'")):
        r = await admin.delete(f"/system/functions/{function}")
        error = r.json()["error"]
        assert r.status_code == 409 and error["code"] == "FunctionInUse", r.text
        assert f"invoked by {user} of API 'shop'" in error["message"] and "fx apis rm shop" in error["message"]
        assert (await admin.get(f"/system/functions/{function}")).status_code == 200
    await admin.delete("/system/apis/shop")
    assert (await admin.delete("/system/functions/users")).status_code == 204


async def test_the_limits_hold_and_name_their_flag(admin, functions, controller):
    many = {"routes": {f"GET /r{i}": {"mock": {}} for i in range(4)}}
    r = await admin.put("/system/apis/a", json=many)
    assert r.status_code == 400 and "--max-routes-per-api" in r.json()["error"]["message"]
    for name in ("a", "b"):
        assert (
            await admin.put(f"/system/apis/{name}", json={"hosts": [f"{name}.x"], "routes": {"GET /": {"mock": {}}}})
        ).status_code == 200
    r = await admin.put("/system/apis/c", json={"hosts": ["c.x"], "routes": {"GET /": {"mock": {}}}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "TooManyApis" and "--max-apis" in r.text
    assert (
        await admin.put("/system/apis/a", json={"hosts": ["a.x"], "routes": {"GET /x": {"mock": {}}}})
    ).status_code == 200
    assert sorted(await stored(controller)) == ["a", "b"]
