"""API routes: the wire JSON compiled (api.table) and API Gateway's matching rules (api.matching)."""

from __future__ import annotations

import pytest
from fx_gateway.api.matching import RouteIndex, ambiguous
from fx_gateway.api.metrics import ApiMetrics
from fx_gateway.api.table import parse

from tests.api_wire import api_wire


def api(name: str, routes: dict, hosts: list[str] | None = None, **fields) -> bytes:
    return api_wire(name, routes, hosts=hosts or [], **fields)


def index(*apis: tuple[str, bytes]) -> RouteIndex:
    metrics = ApiMetrics()
    return RouteIndex([parse(name, text, metrics) for name, text in apis])


def land(idx: RouteIndex, method: str, path: str, host: str = "") -> tuple[str, dict] | None:
    found = idx.match(idx.groups(host), method, path)
    return (found.route.key, found.path_parameters) if found else None


# API Gateway's documented example (HTTP APIs, "Routing API requests") and the cases around it.
DOCS = {
    "GET /pets/dog/1": {"function": "f"},
    "GET /pets/dog/{id}": {"function": "f"},
    "GET /pets/{proxy+}": {"function": "f"},
    "ANY /{proxy+}": {"function": "f"},
    "$default": {"function": "f"},
}


@pytest.mark.parametrize(
    ("method", "path", "route", "params"),
    [
        ("GET", "/pets/dog/1", "GET /pets/dog/1", {}),  # the full match of a static route
        ("GET", "/pets/dog/2", "GET /pets/dog/{id}", {"id": "2"}),  # a full match with a variable
        ("GET", "/pets/cat/1", "GET /pets/{proxy+}", {"proxy": "cat/1"}),  # no full match: the GET greedy route
        ("POST", "/test/5", "ANY /{proxy+}", {"proxy": "test/5"}),  # ANY takes the methods no route names
        ("POST", "/pets/dog/1", "ANY /{proxy+}", {"proxy": "pets/dog/1"}),  # GET routes do not take a POST
        ("GET", "/", "$default", {}),  # a greedy variable takes one segment or more: "/" is $default's
        ("GET", "/pets", "ANY /{proxy+}", {"proxy": "pets"}),  # /pets/{proxy+} needs a segment after /pets
    ],
)
def test_the_documented_precedence(method: str, path: str, route: str, params: dict) -> None:
    assert land(index(("pets", api("pets", DOCS))), method, path) == (route, params)


def test_literal_segments_win_left_to_right_and_variables_are_named_per_route() -> None:
    idx = index(
        (
            "a",
            api(
                "a",
                {
                    "GET /users/{id}": {"function": "f"},
                    "GET /users/me": {"function": "f"},
                    "GET /users/{uid}/posts/{post}": {"function": "f"},
                    "GET /users/me/{thing}": {"function": "f"},
                },
            ),
        )
    )
    assert land(idx, "GET", "/users/me") == ("GET /users/me", {})
    assert land(idx, "GET", "/users/7") == ("GET /users/{id}", {"id": "7"})
    assert land(idx, "GET", "/users/me/posts") == ("GET /users/me/{thing}", {"thing": "posts"})
    # the literal branch "me" ends without a route: matching goes back to the variable one
    assert land(idx, "GET", "/users/me/posts/3") == ("GET /users/{uid}/posts/{post}", {"uid": "me", "post": "3"})
    assert land(idx, "GET", "/users/a%20b") == ("GET /users/{id}", {"id": "a b"})  # decoded, as API Gateway
    assert land(idx, "GET", "/users/") is None  # a variable takes no empty segment
    assert land(idx, "DELETE", "/users/7") is None


def test_method_before_any_and_full_before_greedy() -> None:
    idx = index(
        (
            "a",
            api(
                "a",
                {
                    "ANY /items/{id}": {"function": "f"},
                    "PUT /items/{id}": {"function": "f"},
                    "GET /items/{proxy+}": {"function": "f"},
                    "GET /items/{id}/x/{proxy+}": {"function": "f"},
                },
            ),
        )
    )
    assert land(idx, "PUT", "/items/1")[0] == "PUT /items/{id}"
    assert land(idx, "GET", "/items/1")[0] == "ANY /items/{id}"  # a full match beats the GET greedy route
    assert land(idx, "GET", "/items/1/2")[0] == "GET /items/{proxy+}"
    assert land(idx, "GET", "/items/1/x/y/z") == ("GET /items/{id}/x/{proxy+}", {"id": "1", "proxy": "y/z"})


def test_hosts_exact_then_wildcard_then_any_and_no_api_for_an_unknown_host() -> None:
    idx = index(
        ("shop", api("shop", {"GET /a": {"function": "f"}}, hosts=["shop.example.com"])),
        ("wild", api("wild", {"GET /a": {"function": "f"}, "GET /b": {"function": "f"}}, hosts=["*.example.com"])),
        ("any", api("any", {"GET /c": {"function": "f"}})),
        ("named", api("named", {"GET /d": {"function": "f"}}, hosts=["named.test"])),
    )
    first = idx.match(idx.groups("SHOP.example.com:8080"), "GET", "/a")
    assert first.route.api.name == "shop"
    assert idx.match(idx.groups("shop.example.com"), "GET", "/b").route.api.name == "wild"
    assert idx.match(idx.groups("x.example.com"), "GET", "/a").route.api.name == "wild"
    assert idx.match(idx.groups("x.y.example.com"), "GET", "/a") is None  # "*." covers one label
    assert idx.match(idx.groups("other.test"), "GET", "/c").route.api.name == "any"
    assert idx.match(idx.groups(""), "GET", "/d") is None
    assert idx.match(idx.groups("named.test"), "GET", "/d").route.api.name == "named"


def test_no_api_on_any_host_leaves_unknown_hosts_to_the_gateway() -> None:
    idx = index(("shop", api("shop", {"GET /a": {"function": "f"}}, hosts=["shop.example.com"])))
    assert idx.groups("other.example.org") == []
    assert idx.groups("shop.example.com")


def test_the_wire_json_compiled() -> None:
    metrics = ApiMetrics()
    compiled = parse(
        "shop",
        api(
            "shop",
            {
                "GET /users/{id}": {"function": "users@live", "payload": "1.0"},
                "GET /health": {"mock": {"status": 201, "headers": {"x-served-by": "fx"}, "body": {"ok": True}}},
            },
            stage="prod",
            stage_variables={"env": "prod"},
        ),
        metrics,
    )
    users, health = compiled.routes
    assert (users.function, users.qualifier, users.payload) == ("users", "live", "1.0")
    assert users.context == {
        "routeKey": "GET /users/{id}",
        "resource": "/users/{id}",
        "stage": "prod",
        "stageVariables": {"env": "prod"},
        "apiId": "shop",
        "payload": "1.0",
    }
    assert health.mock == (
        b"HTTP/1.1 201 Created\r\nx-served-by: fx\r\ncontent-type: application/json\r\n"
        b'Content-Length: 11\r\n\r\n{"ok":true}'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{", "not JSON"),
        (api("other", {}), "stored under 'shop' but named 'other'"),
        (api("shop", {"GET /a": {"function": "f", "mock": {"status": 200}}}), "not exactly one"),
        (api("shop", {"GET /a": {"function": "f", "auth": "nope"}}), "no authorizer 'nope'"),
        (api("shop", {"get /a": {"function": "f"}}), "is not 'METHOD /path'"),
        (api("shop", {"GET /a": {"mock": {"status": 200, "headers": {"x": "a\r\nb"}}}}), "line break"),
    ],
)
def test_an_unreadable_api_is_refused_naming_the_problem(text: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse("shop", text, ApiMetrics())


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("/users/1", False),
        ("/users/", False),  # a trailing slash is a path of its own, as on API Gateway
        ("/", False),
        ("/files/a%20b.txt", False),
        ("/v1.2/items", False),
        ("/public/../admin/1", True),
        ("/public/./admin", True),
        ("/public/%2e%2E/admin", True),
        ("/public%2F..%2Fadmin", True),
        ("//admin/1", True),
        ("/public/%2F/admin", True),
        ("/public\\..\\admin", True),
    ],
)
def test_a_path_a_backend_could_read_otherwise_is_refused(path: str, refused: bool) -> None:
    assert ambiguous(path) is refused
