import pytest
from fx.models import FunctionSpec, ScaleSpec
from pydantic import ValidationError

DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize("name", ["Hello", "-a", "a-", "a_b", "a" * 64, ""])
def test_bad_names_are_refused_with_the_rule(name):
    with pytest.raises(ValidationError) as err:
        FunctionSpec(name=name, artifact=DIGEST)
    assert "function name" in str(err.value)


@pytest.mark.parametrize("handler", ["handler", "handler.", "1mod.fn", "mod.fn()"])
def test_bad_handlers_are_refused(handler):
    with pytest.raises(ValidationError) as err:
        FunctionSpec(name="ok", handler=handler, artifact=DIGEST)
    assert "module.function" in str(err.value)


def test_good_spec_has_lambda_defaults():
    spec = FunctionSpec(name="hello-world", handler="pkg/app.main", artifact=DIGEST)
    assert (spec.memory, spec.timeout, spec.http.event, spec.scale.min) == (128, 3, "v2", 0)


def test_reserved_env_and_min_over_max_are_refused():
    with pytest.raises(ValidationError, match="reserved"):
        FunctionSpec(name="a", artifact=DIGEST, env={"_HANDLER": "x"})
    with pytest.raises(ValidationError, match="greater than"):
        ScaleSpec(min=3, max=2)


@pytest.mark.parametrize("subject", ["orders.created", "orders.*", "orders.>", "*.eu.>", "a-b_c.$x"])
def test_nats_trigger_subjects_with_wildcards_are_accepted(subject):
    spec = FunctionSpec(name="a", artifact=DIGEST, triggers=[{"nats": subject}])
    assert spec.triggers[0].nats == subject


@pytest.mark.parametrize(
    ("subject", "words"),
    [
        ("", "empty"),
        ("orders..new", "token is empty"),
        ("orders new", "space"),
        ("orders.new*", "whole tokens"),
        ("orders.>.eu", "last token"),
        ("fx.activate", "reserved"),
        ("$JS.API.x", "reserved"),
        (">", "reserved"),
    ],
)
def test_bad_nats_trigger_subjects_are_refused_saying_why(subject, words):
    with pytest.raises(ValidationError) as err:
        FunctionSpec(name="a", artifact=DIGEST, triggers=[{"nats": subject}])
    assert f"NATS subject {subject!r} is invalid" in str(err.value) and words in str(err.value)


def test_a_trigger_listed_twice_or_of_an_unknown_kind_is_refused():
    with pytest.raises(ValidationError, match="listed twice"):
        FunctionSpec(name="a", artifact=DIGEST, triggers=[{"nats": "a.b"}, {"nats": "a.b"}])
    with pytest.raises(ValidationError, match="Extra inputs"):
        FunctionSpec(name="a", artifact=DIGEST, triggers=[{"kafka": "topic"}])


def test_a_jetstream_trigger_has_lambda_like_defaults_and_bounds():
    spec = FunctionSpec(name="a", artifact=DIGEST, triggers=[{"jetstream": {"stream": "ORDERS"}}])
    js = spec.triggers[0].jetstream
    assert (js.batch, js.window_ms, js.max_in_flight, js.max_deliver, js.subject) == (1, 0, 1, 3, None)
    assert spec.triggers[0].key == "ORDERS/>"
    with pytest.raises(ValidationError, match=r"stream name 'OR\.DERS' is invalid"):
        FunctionSpec(name="a", artifact=DIGEST, triggers=[{"jetstream": {"stream": "OR.DERS"}}])
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        FunctionSpec(name="a", artifact=DIGEST, triggers=[{"jetstream": {"stream": "S", "batch": 5000}}])
    with pytest.raises(ValidationError, match="exactly one of"):
        FunctionSpec(name="a", artifact=DIGEST, triggers=[{"nats": "a", "jetstream": {"stream": "S"}}])


def test_a_kv_trigger_names_a_bucket_and_a_key_pattern():
    spec = FunctionSpec(name="a", artifact=DIGEST, triggers=[{"kv": {"bucket": "users", "keys": "eu.*"}}])
    assert spec.triggers[0].key == "kv:users/eu.*" and spec.triggers[0].kv.batch == 1
    with pytest.raises(ValidationError, match=r"KV key pattern 'eu\.>\.x' is invalid: '>' may only be the last"):
        FunctionSpec(name="a", artifact=DIGEST, triggers=[{"kv": {"bucket": "users", "keys": "eu.>.x"}}])
    with pytest.raises(ValidationError, match="KV bucket name 'us ers' is invalid"):
        FunctionSpec(name="a", artifact=DIGEST, triggers=[{"kv": {"bucket": "us ers"}}])


def test_a_nats_grant_takes_subjects_with_wildcards_and_defaults_to_none():
    assert FunctionSpec(name="a", artifact=DIGEST).nats is None  # no grant: no NATS at all
    spec = FunctionSpec(name="a", artifact=DIGEST, nats={"publish": ["users.created"], "subscribe": ["orders.*.>"]})
    assert spec.nats.publish == ["users.created"] and spec.nats.subscribe == ["orders.*.>"]


@pytest.mark.parametrize(
    ("subject", "words"),
    [
        (">", "reserved"),
        ("fx.activate", "reserved"),
        ("fx", "reserved"),
        ("$KV.fx_routes.victim", "reserved"),
        ("$JS.API.STREAM.MSG.GET.KV_fx_functions", "reserved"),
        ("_INBOX.fx-fn.other.>", "reserved"),
        ("_INBOX", "first token"),
        ("*.activate", "first token"),
        ("*.>", "first token"),
        ("users..created", "token is empty"),
        ("users.created\n", "control character"),
        ("users.crea*", "whole tokens"),
        ("u." + "x" * 300, "longer than 256"),
    ],
)
def test_a_nats_grant_refuses_fx_and_nats_subjects_and_bad_syntax_naming_the_field(subject, words):
    for kind in ("publish", "subscribe"):
        with pytest.raises(ValidationError) as err:
            FunctionSpec(name="a", artifact=DIGEST, nats={kind: [subject]})
        assert f"nats.{kind}" in str(err.value) and words in str(err.value), str(err.value)


def test_a_nats_grant_is_bounded():
    with pytest.raises(ValidationError, match="at most 32"):
        FunctionSpec(name="a", artifact=DIGEST, nats={"publish": [f"s.{n}" for n in range(33)]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        FunctionSpec(name="a", artifact=DIGEST, nats={"request": ["x"]})


def test_a_dependency_layer_is_a_digest_beside_a_zip_and_optional_in_old_specs():
    old = FunctionSpec.model_validate({"name": "a", "artifact": DIGEST})
    assert old.dependencies is None and old == FunctionSpec(name="a", artifact=DIGEST, dependencies=None)
    assert FunctionSpec(name="a", artifact=DIGEST, dependencies=DIGEST).dependencies == DIGEST
    with pytest.raises(ValidationError, match="dependencies 'sha256:12' is not"):
        FunctionSpec(name="a", artifact=DIGEST, dependencies="sha256:12")
    with pytest.raises(ValidationError, match="'dependencies' goes with 'artifact'"):
        FunctionSpec(name="a", image="registry.example.com/a:1", dependencies=DIGEST)


def test_env_values_are_refused_with_a_nul_or_past_the_size_bound():
    from fx.models import ENV_MAX_BYTES, FunctionSpec

    digest = "sha256:" + "0" * 64
    with pytest.raises(ValueError, match="'FOO' holds a NUL"):
        FunctionSpec(name="f", artifact=digest, env={"FOO": "a\0b"})
    with pytest.raises(ValueError, match=f"at most {ENV_MAX_BYTES}"):
        FunctionSpec(name="f", artifact=digest, env={"A": "x" * ENV_MAX_BYTES})
    assert FunctionSpec(name="f", artifact=digest, env={"A": "x" * (ENV_MAX_BYTES - 1)}).env
