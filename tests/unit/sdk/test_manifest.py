from pathlib import Path

import pytest
from fx.errors import InputError
from fx.manifest import ManifestError, load, load_project, locate, select


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fx.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ManifestError) as err:
        load(write(tmp_path, text))
    return [p.split(str(tmp_path) + "/", 1)[-1] for p in err.value.problems]


def test_a_valid_manifest_gives_specs_with_the_real_digest(tmp_path):
    (tmp_path / "src").mkdir()
    path = write(tmp_path, "functions:\n  hello:\n    path: src\n    memory: 256\n    scale: {min: 1}\n  other:\n")
    hello, other = load(path)
    assert hello.code_dir == (tmp_path / "src").resolve() and other.code_dir == tmp_path.resolve()
    spec = hello.spec("sha256:" + "a" * 64)
    assert (spec.name, spec.memory, spec.scale.min, spec.scale.max) == ("hello", 256, 1, 10)


def test_an_image_function_needs_no_code_folder_and_a_bad_image_is_reported(tmp_path):
    [own] = load(write(tmp_path, "functions:\n  own:\n    image: localhost/fx/own:1\n    path: nowhere\n"))
    assert own.image == "localhost/fx/own:1" and own.spec().code == "localhost/fx/own:1"
    [problem] = problems(tmp_path, "functions:\n  own:\n    image: Not An Image\n")
    assert problem.startswith("fx.yaml:3: functions.own.image:") and "image reference" in problem


def test_a_bad_name_is_reported_on_its_line(tmp_path):
    [problem] = problems(tmp_path, "functions:\n  ok:\n  Bad_Name:\n    handler: handler.handler\n")
    assert problem.startswith("fx.yaml:3: functions.Bad_Name: ")
    assert "DNS-1123" in problem


def test_a_bad_value_names_line_and_dotted_field(tmp_path):
    text = "functions:\n  hello:\n    handler: handler.handler\n    scale:\n      max: 3\n\n      min: -1\n"
    assert problems(tmp_path, text) == [
        "fx.yaml:7: functions.hello.scale.min: Input should be greater than or equal to 0"
    ]


def test_unknown_keys_are_refused_at_every_level(tmp_path):
    text = "functions:\n  hello:\n    memroy: 256\n    scale: {mni: 1}\nversion: 2\n"
    found = problems(tmp_path, text)
    assert found[0].startswith("fx.yaml:3: functions.hello.memroy: unknown key")
    expected = (
        "expected one of: concurrency, idle_timeout, keep_warm, max, min, panic_threshold_percentage,"
        " panic_window_percentage, scale_down_delay, stable_window, target_rps"
    )
    assert found[1] == f"fx.yaml:4: functions.hello.scale.mni: unknown key; {expected}"
    assert found[2].startswith("fx.yaml:5: version: unknown key")


def test_an_unknown_trigger_key_lists_the_valid_ones(tmp_path):
    text = "functions:\n  hello:\n    triggers:\n      - nats: a.b\n      - sqs: orders\n"
    [found] = problems(tmp_path, text)
    assert found == (
        "fx.yaml:5: functions.hello.triggers.1.sqs: unknown key; expected one of: jetstream, kv, nats, schedule,"
        " timezone"
    )


def test_an_env_value_yaml_reads_as_no_string_gets_the_hint_to_quote_it(tmp_path):
    found = problems(tmp_path, "functions:\n  hello:\n    env:\n      A: 1\n      B: yes\n      C: fine\n")
    assert found == [
        'fx.yaml:4: functions.hello.env.A: env values are strings: write A: "1"',
        'fx.yaml:5: functions.hello.env.B: env values are strings: write B: "yes"',
    ]


def test_scale_min_over_max_is_reported(tmp_path):
    [problem] = problems(tmp_path, "functions:\n  hello:\n    scale: {min: 5, max: 2}\n")
    assert problem == "fx.yaml:3: functions.hello.scale: scale.min (5) is greater than scale.max (2)"


def test_yaml_syntax_errors_give_their_line(tmp_path):
    [problem] = problems(tmp_path, "functions:\n  hello:\n    env: {A: 1\n    memory: 128\n")
    assert problem.startswith("fx.yaml:4: invalid YAML")


def test_no_functions_and_missing_code_folder_are_reported(tmp_path):
    assert "functions" in problems(tmp_path, "")[0]
    [problem] = problems(tmp_path, "functions:\n  hello:\n    path: nowhere\n")
    assert problem.startswith("fx.yaml:3: functions.hello.path: ") and "not a folder" in problem


@pytest.mark.parametrize("key", ["1", "1.5", "true", "null", "2024-05-01"])
def test_a_function_name_yaml_reads_as_no_string_is_refused_not_deployed_without_its_settings(tmp_path, key):
    """Looked up by its text, `1:` found no settings: it was deployed from this folder with the defaults,
    its memory and path never checked."""
    [problem] = problems(tmp_path, f"functions:\n  ok:\n  {key}:\n    memory: 99999999\n    path: nowhere\n")
    assert problem.startswith("fx.yaml:3: functions.") and "a function name is a string: write" in problem


def test_a_quoted_number_is_a_function_name_with_its_settings(tmp_path):
    [problem] = problems(tmp_path, 'functions:\n  "1":\n    memory: 99999999\n')
    assert problem.startswith("fx.yaml:3: functions.1.memory: ")


def test_duplicate_function_names_are_refused(tmp_path):
    [problem] = problems(tmp_path, "functions:\n  hello: {}\n  hello: {memory: 256}\n")
    assert problem == "fx.yaml:3: functions.hello: duplicate key"


def test_select_keeps_manifest_order_and_refuses_unknown_names(tmp_path):
    defs = load(write(tmp_path, "functions:\n  a: {}\n  b: {}\n  c: {}\n"))
    assert [d.name for d in select(defs, ["c", "a"])] == ["a", "c"]
    with pytest.raises(InputError, match="no function named zz"):
        select(defs, ["zz"])


def test_triggers_are_read_and_a_bad_subject_is_reported_on_its_line(tmp_path):
    [fn] = load(write(tmp_path, "functions:\n  hello:\n    triggers:\n      - nats: orders.*\n"))
    assert fn.spec("sha256:" + "a" * 64).triggers[0].nats == "orders.*"
    [problem] = problems(tmp_path, "functions:\n  hello:\n    triggers:\n      - nats: orders.*\n      - nats: 'a b'\n")
    assert problem.startswith("fx.yaml:5: functions.hello.triggers.1.nats: NATS subject 'a b' is invalid")


def test_a_nats_grant_is_read_and_a_bad_subject_named_with_its_line(tmp_path):
    [fn] = load(write(tmp_path, "functions:\n  hello:\n    nats:\n      publish: [users.created]\n"))
    assert fn.spec("sha256:" + "a" * 64).nats.publish == ["users.created"]
    [problem] = problems(tmp_path, "functions:\n  hello:\n    nats:\n      subscribe: [fx.activate]\n")
    assert problem.startswith("fx.yaml:4: functions.hello.nats.subscribe") and "reserved" in problem


def test_a_server_refusal_is_located_at_the_line_of_its_field_or_else_of_its_function(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "functions:\n  a:\n  b:\n    triggers:\n      - nats: x\n      - jetstream:\n          stream: S\n"
    path = write(tmp_path, text)
    assert locate(path, "b", "triggers.1.jetstream.stream") == "fx.yaml:7: functions.b.triggers.1.jetstream.stream"
    assert locate(path, "b", "triggers.1.kv.bucket") == "fx.yaml:6: functions.b.triggers.1.kv.bucket"
    assert locate(path, "b", "artifact") == "fx.yaml:3: functions.b.artifact"  # not in fx.yaml: the function
    assert locate(path, "b", None) == "fx.yaml:3: functions.b"
    assert locate(path, "gone", "name") == "fx.yaml: functions.gone.name"


def test_autoscaling_knobs_out_of_range_name_the_field_and_the_bound(tmp_path):
    text = "functions:\n  hello:\n    scale:\n      target_rps: 0\n      panic_threshold_percentage: 100\n"
    assert problems(tmp_path, text) == [
        "fx.yaml:4: functions.hello.scale.target_rps: Input should be greater than 0",
        "fx.yaml:5: functions.hello.scale.panic_threshold_percentage: Input should be greater than or equal to 110",
    ]


SHOP = """\
functions:
  users:
apis:
  shop:
    hosts: [shop.example.com]
    authorizers:
      keycloak: {jwt: {issuer: "http://127.0.0.1:8180/realms/fx", audience: [fx-api]}}
    routes:
      get /users/{id}: {function: users}
      "POST /users": {function: users, auth: keycloak, scopes: ["users:write"]}
      GET /health: {mock: {status: 200, body: {ok: true}}}
      ANY /{proxy+}: {upstream: "http://127.0.0.1:8000"}
"""


def test_apis_are_read_beside_the_functions_normalized(tmp_path):
    project = load_project(write(tmp_path, SHOP))
    [users] = project.functions
    [shop] = project.apis
    assert users.name == "users" and shop.name == "shop" and shop.hosts == ["shop.example.com"]
    assert list(shop.routes) == ["GET /users/{id}", "POST /users", "GET /health", "ANY /{proxy+}"]
    assert shop.routes["ANY /{proxy+}"].upstream.url == "http://127.0.0.1:8000"


def test_an_api_alone_needs_no_functions(tmp_path):
    project = load_project(write(tmp_path, "apis:\n  legacy:\n    routes:\n      $default: {upstream: 'http://a:1'}\n"))
    assert project.functions == [] and list(project.apis[0].routes) == ["$default"]


def api_problems(tmp_path, routes: str, extra: str = "") -> list[str]:
    return problems(tmp_path, f"functions:\n  users:\napis:\n  shop:\n{extra}    routes:\n{routes}")


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (
            "      GET /a: {function: Users}\n",
            "fx.yaml:6: apis.shop.routes.\"GET /a\".function: function name 'Users' is not a DNS-1123 label",
        ),
        (
            "      GET /a: {function: users}\n      get /b: {function: users, cache: 1}\n",
            'fx.yaml:7: apis.shop.routes."GET /b".cache: unknown key; expected one of: api_key, auth, function, mock,'
            " payload, scopes, throttle, upstream",
        ),
        (
            "      GET /a: {function: users}\n      get /a//b: {function: users}\n",
            "fx.yaml:7: apis.shop.routes.\"get /a//b\": path '/a//b' holds an empty segment ('//')",
        ),
        (
            "      GET /u/{id}: {function: users}\n      get /u/{uid}: {function: users}\n",
            "fx.yaml:7: apis.shop.routes.\"GET /u/{uid}\": routes 'GET /u/{id}' and 'GET /u/{uid}' are the same route",
        ),
        (
            "      GET /a:\n        function: users\n        auth: nope\n",
            "fx.yaml:8: apis.shop.routes.\"GET /a\".auth: 'nope' is not an authorizer of this API",
        ),
        (
            "      GET /a: {mock: {status: 99}}\n",
            'fx.yaml:6: apis.shop.routes."GET /a".mock.status: Input should be greater than or equal to 100',
        ),
    ],
)
def test_a_bad_route_is_reported_on_its_line_with_its_quoted_key(tmp_path, routes, expected):
    [problem] = api_problems(tmp_path, routes)
    assert problem.startswith(expected), problem


def test_bad_api_fields_are_reported_on_their_lines(tmp_path):
    found = api_problems(
        tmp_path,
        "      GET /a: {function: users}\n",
        "    hosts: [https://x]\n    authorizers:\n      jwt: {lambda: {function: a, ttl: 0, cash: 1}}\n",
    )
    assert found == [
        "fx.yaml:5: apis.shop.hosts: host 'https://x' is not a host name or '*.' and a host name (e.g."
        " 'shop.example.com', '*.example.com'); no scheme, port or path",
        "fx.yaml:7: apis.shop.authorizers.jwt.lambda.cash: unknown key; expected one of: function, identity_source,"
        " payload, simple_responses, ttl",
    ]
    [bad_name] = problems(tmp_path, "apis:\n  Shop:\n    routes: {GET /: {mock: {}}}\n")
    assert bad_name.startswith("fx.yaml:2: apis.Shop: API name 'Shop' is not a DNS-1123 label")
