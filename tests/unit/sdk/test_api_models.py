import pytest
from fx.api_models import ApiSpec, RouteProblem, check_route_key, hosts_overlap, route_shape
from pydantic import ValidationError

JWT = {"jwt": {"issuer": "http://127.0.0.1:8180/realms/fx", "audience": ["fx-api"]}}
LAMBDA = {"lambda": {"function": "authz", "identity_source": ["$request.header.Authorization"]}}


def api(routes: dict, **rest) -> ApiSpec:
    return ApiSpec.model_validate({"name": "shop", "routes": routes, **rest})


def refusal(routes: dict, **rest) -> str:
    with pytest.raises(ValidationError) as err:
        api(routes, **rest)
    return str(err.value)


def test_the_contract_example_is_stored_normalized_with_every_field():
    spec = api(
        {
            "get /users/{id}": {"function": "users"},
            "POST /users": {"function": "users", "auth": "keycloak", "scopes": ["users:write"]},
            "ANY /orders/{proxy+}": {"function": "orders@live"},
            "GET /health": {"mock": {"status": 200, "body": {"ok": True}, "headers": {"x-served-by": "fx"}}},
            "ANY /{proxy+}": {"upstream": "http://127.0.0.1:8000"},
            "$default": {"function": "fallback@3"},
        },
        hosts=["Shop.Example.com"],
        authorizers={"keycloak": JWT, "mine": LAMBDA},
    )
    wire = spec.model_dump(mode="json")
    assert wire["hosts"] == ["shop.example.com"] and wire["stage"] == "$default" and wire["payload"] == "2.0"
    assert list(wire["routes"]) == [
        "GET /users/{id}",
        "POST /users",
        "ANY /orders/{proxy+}",
        "GET /health",
        "ANY /{proxy+}",
        "$default",
    ]
    assert wire["routes"]["GET /users/{id}"] == {
        "function": "users",
        "auth": None,
        "scopes": [],
        "api_key": False,
        "throttle": None,
        "payload": None,
    }
    assert wire["routes"]["ANY /{proxy+}"]["upstream"] == {"url": "http://127.0.0.1:8000", "timeout": 29.0}
    assert wire["routes"]["GET /health"]["mock"] == {
        "status": 200,
        "headers": {"x-served-by": "fx"},
        "body": {"ok": True},
    }
    assert wire["authorizers"]["keycloak"] == {
        "jwt": {**JWT["jwt"], "identity_source": "$request.header.Authorization", "jwks_uri": None}
    }
    assert set(wire["authorizers"]["mine"]) == {"lambda"} and wire["authorizers"]["mine"]["lambda"]["ttl"] == 300
    assert ApiSpec.model_validate(wire) == spec  # what GET answers can be PUT back


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("FETCH /x", "is not 'METHOD /path'"),
        ("GET", "is not 'METHOD /path'"),
        ("GET x", "must start with '/'"),
        ("GET /x?a=1", "query"),
        ("GET /a//b", "empty segment"),
        ("GET /a/", "ends with '/'"),
        ("GET /{proxy+}/x", "greedy parameter {proxy+} may only be the last segment"),
        ("GET /files/{name}.txt", "not a whole parameter"),
        ("GET /{1st}", "not a whole parameter"),
        ("GET /{id}/{id}", "names the parameter 'id' twice"),
        ("GET /a b", "a URL path cannot"),
        ("GET /a/../b", "a segment '.' or '..' is no path of its own"),
        ("GET /function/{proxy+}", "under /function, which the gateway serves itself"),
        ("ANY /system", "under /system"),
        ("POST /2015-03-31/functions/x/invocations", "under /2015-03-31"),
        ("GET /healthz", "under /healthz"),
    ],
)
def test_bad_route_keys_are_refused_saying_why(key, words):
    assert words in refusal({key: {"function": "users"}})


def test_route_keys_are_upper_cased_and_the_root_and_lookalikes_of_reserved_paths_are_fine():
    assert check_route_key("patch /") == "PATCH /"
    assert check_route_key("GET /functions/{id}") == "GET /functions/{id}"  # not /function
    assert check_route_key("$default") == "$default"


def test_the_same_route_with_other_parameter_names_is_refused_naming_both():
    message = refusal({"GET /users/{id}": {"function": "a"}, "get /users/{uid}": {"function": "b"}})
    assert "routes 'GET /users/{id}' and 'GET /users/{uid}' are the same route" in message
    assert "listed twice" in refusal({"GET /a": {"function": "a"}, "get /a": {"function": "b"}})
    # Another method, or a greedy parameter rather than a plain one, is another route.
    assert len(api({"GET /u/{id}": {"function": "a"}, "ANY /u/{id}": {"function": "a"}}).routes) == 2
    assert route_shape("GET /u/{id}") != route_shape("GET /u/{id+}")


def test_a_route_has_exactly_one_integration():
    assert "exactly one of 'function: NAME'" in refusal({"GET /a": {"function": "a", "mock": {}}})
    assert "exactly one of 'function: NAME'" in refusal({"GET /a": {"auth": "x"}})


@pytest.mark.parametrize(
    ("route", "words"),
    [
        ({"function": "Users"}, "function name 'Users' is not a DNS-1123 label"),
        ({"function": "users@0"}, "neither a version number"),
        ({"function": "users@Live"}, "neither a version number"),
        ({"upstream": "ftp://legacy:21"}, "is not 'http[s]://host[:port][/prefix]'"),
        ({"upstream": "http:///x"}, "is not 'http[s]://host[:port][/prefix]'"),
        ({"upstream": "http://legacy:8000/?a=1"}, "holds a query"),
        ({"upstream": {"url": "http://legacy", "timeout": 901}}, "less than or equal to 900"),
        ({"upstream": {"url": "http://legacy", "timeout": 0}}, "greater than 0"),
        ({"mock": {"status": 700}}, "less than or equal to 599"),
        ({"mock": {"headers": {"bad header": "x"}}}, "not a header name"),
        ({"mock": {}, "payload": "1.0"}, "payload (the event format) goes with a function route only"),
        ({"function": "a", "scopes": ["x"]}, "scopes need an authorizer"),
        ({"function": "a", "auth": "k", "scopes": ['a"b']}, "a quote, a backslash or a non-ASCII character"),
        ({"function": "a", "auth": "k", "scopes": ["lecture:écrire"]}, "RFC 6750 scope tokens"),
        ({"function": "a", "throttle": {"rate": 0, "burst": 1}}, "greater than 0"),
        ({"function": "a", "throttle": {"rate": 1, "burst": 0}}, "greater than or equal to 1"),
        ({"function": "a", "throttle": {"rate": 2e6, "burst": 1}}, "less than or equal to 1000000"),
        ({"function": "a", "throttle": {"rate": 1}}, "burst\n  Field required"),
        ({"function": "a", "payload": "3.0"}, "'2.0' or '1.0'"),
        ({"function": "a", "cache": True}, "Extra inputs are not permitted"),
    ],
)
def test_bad_routes_are_refused_saying_why(route, words):
    assert words in refusal({"GET /a": route})


def test_auth_must_name_an_authorizer_of_the_api_and_scopes_need_a_jwt_one():
    with pytest.raises(ValidationError) as err:
        api({"GET /a": {"function": "a", "auth": "nope"}}, authorizers={"kc": JWT})
    [error] = err.value.errors()
    problem = error["ctx"]["error"]
    assert isinstance(problem, RouteProblem) and problem.loc == ("routes", "GET /a", "auth")
    assert str(problem) == "'nope' is not an authorizer of this API (its authorizers: kc)"
    message = refusal({"GET /a": {"function": "a", "auth": "mine", "scopes": ["s"]}}, authorizers={"mine": LAMBDA})
    assert "scopes go with a jwt authorizer; 'mine' is a lambda authorizer" in message


@pytest.mark.parametrize(
    ("authorizer", "words"),
    [
        ({}, "exactly one of 'jwt: {issuer, audience}'"),
        ({**JWT, **LAMBDA}, "exactly one of"),
        ({"jwt": {"issuer": "keycloak", "audience": ["a"]}}, "is not an http(s) URL"),
        ({"jwt": {"issuer": "http://kc", "audience": []}}, "at least 1 item"),
        ({"jwt": {"issuer": "http://kc", "audience": ["a"], "identity_source": "Authorization"}}, "identity source"),
        (
            {"lambda": {"function": "authz", "ttl": 0, "payload": "1.0", "simple_responses": True}},
            "needs payload '2.0'",
        ),
        ({"lambda": {"function": "authz"}}, "a cached authorizer (ttl > 0) needs identity_source"),
        ({"lambda": {"function": "authz", "ttl": 3601, "identity_source": ["$context.routeKey"]}}, "3600"),
    ],
)
def test_bad_authorizers_are_refused_saying_why(authorizer, words):
    assert words in refusal({"GET /a": {"function": "a"}}, authorizers={"a": authorizer})


def test_at_most_ten_authorizers():
    many = {f"a{i}": JWT for i in range(11)}
    assert "at most 10 items" in refusal({"GET /a": {"function": "a"}}, authorizers=many)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"name": "Shop"}, "API name 'Shop' is not a DNS-1123 label"),
        ({"hosts": ["https://shop.example.com"]}, "is not a host name"),
        ({"hosts": ["shop.example.com:8080"]}, "is not a host name"),
        ({"hosts": ["*.*.example.com"]}, "is not a host name"),
        ({"hosts": ["a.example.com", "A.example.com"]}, "listed twice"),
        ({"stage": "prod/1"}, "is not '$default' or 1-128 letters"),
        ({"stage_variables": {"a-b": "x"}}, "stage variable 'a-b'"),
        ({"payload": 2.0}, "Input should be '2.0' or '1.0'"),
        ({"cors": {"origins": ["app.example.com"]}}, "CORS origin 'app.example.com'"),
        ({"cors": {"origins": ["*"], "credentials": True}}, "browsers refuse credentials with origin '*'"),
        ({"cors": {"methods": ["FETCH"]}}, "CORS method 'FETCH'"),
        ({"cors": {"max_age": 86401}}, "less than or equal to 86400"),
        ({"routes": {}}, "at least 1 item"),
    ],
)
def test_bad_api_fields_are_refused_saying_why(fields, words):
    assert words in refusal(**{"routes": {"GET /a": {"function": "a"}}, **fields})


def test_cors_is_normalized():
    cors = api({"GET /a": {"function": "a"}}, cors={"methods": ["get"], "headers": ["Authorization"]}).cors
    assert (cors.methods, cors.headers, cors.max_age, cors.credentials) == (["GET"], ["authorization"], 0, False)


def test_functions_lists_what_invokes_each_function():
    spec = api({"GET /a": {"function": "a"}, "GET /b": {"function": "a", "auth": "m"}}, authorizers={"m": LAMBDA})
    assert spec.functions() == {"a": ["route 'GET /a'", "route 'GET /b'"], "authz": ["authorizer 'm'"]}


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ([], ["x.example.com"], True),
        (["x.example.com"], ["x.example.com"], True),
        (["*.example.com"], ["x.example.com"], True),
        (["*.example.com"], ["a.b.example.com"], False),  # one label only, as API Gateway's wildcards
        (["*.example.com"], ["example.com"], False),
        (["*.example.com"], ["*.example.com"], True),
        (["a.example.com"], ["b.example.com"], False),
    ],
)
def test_hosts_overlap_when_some_host_header_reaches_both(a, b, overlap):
    assert hosts_overlap(a, b) is overlap and hosts_overlap(b, a) is overlap
