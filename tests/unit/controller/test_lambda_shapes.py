"""The Lambda API's names and pages: FunctionName forms, markers, MaxItems, weights onto whole percents."""

import pytest
from fx_controller.lambda_api.aliases import split_of
from fx_controller.lambda_api.errors import LambdaError
from fx_controller.lambda_api.fields import AliasIn
from fx_controller.lambda_api.shapes import page, split_name, version_key


def test_a_function_name_is_taken_in_every_form_lambda_takes():
    assert split_name("hi") == ("hi", None)
    assert split_name("hi:live") == ("hi", "live")
    assert split_name("arn:aws:lambda:us-east-1:000000000000:function:hi") == ("hi", None)
    assert split_name("arn:aws:lambda:us-east-1:000000000000:function:hi:2") == ("hi", "2")
    assert split_name("000000000000:function:hi:$LATEST") == ("hi", "$LATEST")
    for bad in ("", "a:b:c", "arn:aws:s3:::bucket"):
        with pytest.raises(LambdaError, match="FunctionName"):
            split_name(bad)


def test_pages_follow_the_marker_and_an_item_gone_between_pages_shifts_nothing():
    items = ["a", "b", "c", "d", "e"]
    first, marker = page(items, str, None, 2)
    assert first == ["a", "b"] and marker == "b"
    second, marker = page([i for i in items if i != "b"], str, marker, 2)  # b deleted meanwhile
    assert second == ["c", "d"]
    assert page(items, str, marker, 2) == (["e"], None)
    assert page(items, str, None, None)[0] == items  # default 50
    for bad in (0, 10_001):
        with pytest.raises(LambdaError, match="MaxItems"):
            page(items, str, None, bad)
    versions = sorted(["$LATEST", "10", "2", "1"], key=version_key)
    assert versions == ["$LATEST", "1", "2", "10"]


def test_additional_version_weights_become_the_alias_split_in_whole_percents():
    def routing(weights):
        return AliasIn(RoutingConfig={"AdditionalVersionWeights": weights})

    assert split_of(1, routing({"2": 0.1})) == {1: 90, 2: 10}
    assert split_of(1, routing({})) == {1: 100}
    assert split_of(1, AliasIn()) == {1: 100}
    for weights, message in (
        ({"2": 0.015}, "whole percents"),
        ({"2": 1.0}, "whole percents"),
        ({"1": 0.5}, "own version"),
        ({"2": 0.1, "3": 0.1}, "at most 1"),
        ({"$LATEST": 0.1}, r"\$LATEST"),
    ):
        with pytest.raises(LambdaError, match=message):
            split_of(1, routing(weights))
