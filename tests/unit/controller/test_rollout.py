"""Stepwise promotes and automatic rollback as pure decisions on an injected clock."""

from datetime import UTC, datetime, timedelta

import pytest
from fx.models import PromoteSpec
from fx_controller.serving.rollout import advance, begin
from fx_controller.serving.traffic import toward

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("base", "version", "weight", "expected"),
    [
        ({3: 100}, 4, 10, {3: 90, 4: 10}),
        ({1: 50, 2: 50}, 3, 25, {1: 38, 2: 37, 3: 25}),  # the odd percent goes to one side, the sum stays 100
        ({1: 70, 2: 30}, 2, 60, {1: 40, 2: 60}),
        ({1: 100}, 2, 0, {1: 100}),
        ({1: 60, 2: 40}, 2, 100, {2: 100}),
        ({2: 100}, 2, 30, {2: 100}),  # nothing else to take the rest
    ],
)
def test_toward_keeps_the_others_proportions_and_sums_to_100(base, version, weight, expected):
    split = toward(base, version, weight)
    assert split == expected
    assert sum(split.values()) == 100


def test_a_promote_without_step_is_immediate():
    outcome = begin({3: 90, 4: 10}, PromoteSpec(version=4), T0)
    assert (outcome.traffic, outcome.rollout) == ({4: 100}, None)


def test_a_stepped_promote_takes_the_first_step_at_once_then_one_per_interval_until_100():
    outcome = begin({3: 100}, PromoteSpec(version=4, step=30, interval=10), T0)
    assert outcome.traffic == {3: 70, 4: 30}
    rollout = outcome.rollout
    assert rollout is not None and rollout.next_step_at == at(10)

    assert advance(rollout, at(9.9), 100, 0) is None  # not due yet
    weights = []
    now = 10.0
    while rollout is not None:
        outcome = advance(rollout, at(now), 100, 0)
        assert outcome is not None and not outcome.aborted
        weights.append(outcome.traffic)
        rollout, now = outcome.rollout, now + 10
    assert weights == [{3: 40, 4: 60}, {3: 10, 4: 90}, {4: 100}]
    assert "promoted to 100 %" in outcome.message


def test_an_error_rate_over_the_limit_rolls_back_to_the_split_before_the_rollout():
    rollout = begin({1: 80, 2: 20}, PromoteSpec(version=3, step=10, max_error_rate=0.05, min_requests=20), T0).rollout
    assert rollout is not None
    outcome = advance(rollout, at(30), requests=40, errors=3)  # 7.5 % > 5 %
    assert outcome is not None and outcome.aborted
    assert outcome.traffic == {1: 80, 2: 20} and outcome.rollout is None
    assert "rolled back at 10 %" in outcome.message and "3 of 40" in outcome.message


def test_an_error_rate_at_the_limit_or_on_too_few_requests_goes_on():
    rollout = begin({1: 100}, PromoteSpec(version=2, step=10, max_error_rate=0.1, min_requests=20), T0).rollout
    assert rollout is not None
    at_limit = advance(rollout, at(30), requests=50, errors=5)
    assert at_limit is not None and not at_limit.aborted and at_limit.traffic == {1: 80, 2: 20}
    too_few = advance(rollout, at(30), requests=10, errors=10)
    assert too_few is not None and not too_few.aborted
