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
