"""The IAM policies Lambda authorizers answer with, evaluated against method ARNs as API Gateway does."""

from __future__ import annotations

import random
import re

import pytest
from fx_gateway.api.authorizers.iam_policy import Glob, Policy, PolicyError, method_arn

ARN = "arn:aws:execute-api:us-east-1:000000000000"


def policy(*statements: dict) -> Policy:
    return Policy.parse({"Version": "2012-10-17", "Statement": list(statements)})


def statement(effect: str, resource: str | list[str], action: str | list[str] = "execute-api:Invoke") -> dict:
    return {"Effect": effect, "Action": action, "Resource": resource}


def test_the_method_arn_names_the_callers_method_and_path():
    assert method_arn("shop", "prod", "GET", "/users/7") == f"{ARN}:shop/prod/GET/users/7"
    assert method_arn("shop", "$default", "POST", "/") == f"{ARN}:shop/$default/POST/"


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/bc", False),
        ("a/*", "a/b/c/d", True),  # * spans slashes, as in IAM resource ARNs
        ("a/*", "a/", True),
        ("a/*/c", "a/b/x/c", True),
        ("a/*/c", "a/b/x/d", False),
        ("a/?", "a/b", True),
        ("a/?", "a/bc", False),
        ("*", "", True),
        ("a*b*c", "aXbYbZc", True),
        ("a*b*c", "aXbYbZ", False),
        ("a.b", "aXb", False),  # only * and ? are wildcards
        ("a?c*", "abcd", True),
        ("*b?d", "abcd", True),
        ("a*?", "a", False),
        ("a*b?d*f", "abbbcdXf", True),
        ("a*b?d*f", "abbbcXf", False),
        ("a*aa", "aa", False),  # the first and last parts must not overlap
        ("a*a", "a", False),
        ("*", "anything/at/all", True),
        ("", "", True),
        ("", "x", False),
    ],
)
def test_wildcards(pattern, text, expected):
    assert Glob(pattern).match(text) is expected


def test_many_wildcards_against_a_long_path_stay_cheap():
    """The path is the caller's: a policy with several * must not take polynomial time on a crafted one (the
    regex equivalent, re.fullmatch of .*a.*a...b, does not finish within the test's timeout)."""
    assert not Glob("*a*a*a*a*a*a*a*b").match("a" * 8000)
    assert not Glob("*a?a*a?a*a?b*").match("a" * 8000)


def test_an_allow_covers_the_resources_it_names():
    allowing = policy(statement("Allow", f"{ARN}:shop/prod/GET/users/*"))
    assert allowing.allows(f"{ARN}:shop/prod/GET/users/7")
    assert not allowing.allows(f"{ARN}:shop/prod/POST/users/7")
    assert not allowing.allows(f"{ARN}:other/prod/GET/users/7")


def test_an_explicit_deny_beats_any_allow():
    mixed = policy(statement("Allow", f"{ARN}:shop/*"), statement("Deny", f"{ARN}:shop/prod/DELETE/*"))
    assert mixed.allows(f"{ARN}:shop/prod/GET/users/7")
    assert not mixed.allows(f"{ARN}:shop/prod/DELETE/users/7")


def test_nothing_allowed_is_denied():
    assert not policy(statement("Deny", f"{ARN}:shop/prod/DELETE/*")).allows(f"{ARN}:shop/prod/GET/x")


def test_resource_and_action_lists_and_a_single_statement_object():
    listed = policy(
        statement("Allow", [f"{ARN}:shop/prod/GET/a", f"{ARN}:shop/prod/GET/b"], ["s3:GetObject", "execute-api:*"])
    )
    assert listed.allows(f"{ARN}:shop/prod/GET/b")
    single = Policy.parse({"Statement": statement("Allow", "*")})
    assert single.allows(f"{ARN}:shop/prod/GET/anything")


def test_statements_for_other_actions_do_not_count():
    assert not policy(statement("Allow", "*", "s3:GetObject")).allows(f"{ARN}:shop/prod/GET/x")
    assert not policy(statement("Allow", "*", "execute-api:ManageConnections")).allows(f"{ARN}:shop/prod/GET/x")


def test_actions_compare_case_insensitively():
    assert policy(statement("Allow", "*", "Execute-API:invoke")).allows(f"{ARN}:shop/prod/GET/x")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (None, "policyDocument must be an object"),
        ({"Statement": []}, "non-empty list"),
        ({"Statement": ["Allow"]}, "Statement[0] must be an object"),
        ({"Statement": [statement("allow", "*")]}, "Statement[0].Effect must be Allow or Deny, not 'allow'"),
        ({"Statement": [statement("Allow", [])]}, "Statement[0].Resource must be a string or a non-empty list"),
        ({"Statement": [statement("Allow", "*", 3)]}, "Statement[0].Action must be a string"),
        # A condition it cannot evaluate is refused, never skipped: a skipped Deny would let callers through.
        ({"Statement": [{**statement("Deny", "*"), "Condition": {}}]}, "Condition is not supported"),
        ({"Statement": [{"Effect": "Deny", "NotAction": "x", "Resource": "*"}]}, "NotAction is not supported"),
    ],
)
def test_a_policy_api_gateway_would_refuse_is_refused_naming_what_is_wrong(document, message):
    with pytest.raises(PolicyError, match=re.escape(message)):
        Policy.parse(document)


def test_wildcards_agree_with_a_regex_on_many_short_cases():
    """The regex of .* and . is the reference (fine on short texts); the Glob must agree with it everywhere."""
    rng = random.Random(13)
    for _ in range(20000):
        pattern = "".join(rng.choice("ab*?/") for _ in range(rng.randint(0, 6)))
        text = "".join(rng.choice("ab/") for _ in range(rng.randint(0, 8)))
        reference = re.fullmatch(
            "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), text
        )
        assert Glob(pattern).match(text) is (reference is not None), (pattern, text)
