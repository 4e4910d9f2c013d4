"""Validation matches whole values: no pattern ends in `$`, which would also accept a trailing newline."""

import re

import pytest
from fx import models, schedule
from fx.cli import common
from fx.models import FunctionSpec, check_alias, check_name, check_sticky
from fx.schedule import check_timezone
from pydantic import ValidationError

DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize("module", [models, schedule, common])
def test_no_validation_pattern_ends_in_a_dollar(module):
    patterns = {name: v.pattern for name, v in vars(module).items() if isinstance(v, re.Pattern)}
    assert patterns
    assert not [name for name, p in patterns.items() if p.endswith("$")], "end patterns in \\Z, not $"


@pytest.mark.parametrize("check", [check_name, check_alias, check_sticky])
def test_a_trailing_newline_is_refused(check):
    good = {check_sticky: "header:x-user"}.get(check, "beta")
    assert check(good)
    with pytest.raises(ValueError):
        check(good + "\n")


@pytest.mark.parametrize(
    "change",
    [
        {"handler": "handler.handler\n"},
        {"env": {"FOO\n": "x"}},
        {"artifact": DIGEST + "\n"},
        {"triggers": [{"nats": "a.b\n"}]},
        {"triggers": [{"jetstream": {"stream": "S\n"}}]},
        {"triggers": [{"kv": {"bucket": "b", "keys": "k\n"}}]},
    ],
)
def test_a_spec_field_with_a_trailing_newline_is_refused(change):
    with pytest.raises(ValidationError):
        FunctionSpec.model_validate({"name": "f", "artifact": DIGEST, **change})


@pytest.mark.parametrize(
    "zone",
    ["America", "Etc", "x" * 300, "A/" * 100 + "B", "../../etc/passwd", "/etc/localtime", "UTC\n", "zone.tab", ""],
)
def test_every_way_zoneinfo_fails_is_a_value_error(zone):
    with pytest.raises(ValueError, match="is not an IANA time zone name"):
        check_timezone(zone)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"])
def test_real_zones_pass(zone):
    assert check_timezone(zone) == zone


def test_a_schedule_is_stored_without_surrounding_white_space():
    assert schedule.parse(" rate(5 minutes)\n").expression == "rate(5 minutes)"
