"""fx top's arithmetic: Prometheus's histogram_quantile over the buckets of one interval, and counters that reset."""

import math

from fx.cli.top import _delta, _increase, _quantile


def test_p99_interpolates_within_the_bucket_the_rank_falls_in():
    # 100 requests: 90 under 10 ms, 10 between 10 and 50 ms: the 99th is 9/10 of the way into that bucket.
    assert math.isclose(_quantile({0.01: 90, 0.05: 100, math.inf: 100}), 0.046)
    assert _quantile({0.01: 0, 0.05: 0, math.inf: 0}) is None  # no request in the interval
    assert _quantile({0.01: 0, 30.0: 0, math.inf: 5}) == 30.0  # beyond the last bound: that bound


def test_an_interval_is_the_difference_of_two_reads_and_a_reset_counter_counts_whole():
    assert _delta({0.01: 15, math.inf: 20}, {0.01: 10, math.inf: 12}) == {0.01: 5, math.inf: 8}
    assert _increase(30, 12) == 18
    assert _increase(4, 12) == 4  # the gateway or controller restarted between the reads
