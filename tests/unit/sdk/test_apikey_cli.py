"""`fx apikey create`'s flags checked before any call: a bad name, quota, rate or burst is exit 2 naming it."""

from __future__ import annotations

import pytest
from fx.api_key_models import QuotaSpec
from fx.cli import main


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["Bad_Name", "--api", "shop"], "fx: name: key name 'Bad_Name' is invalid"),
        (["k", "--api", "Shop"], "fx: api: API name 'Shop' is invalid"),
        (["k", "--api", "shop", "--quota", "5/week"], "fx: quota '5/week' is not N/day or N/month (e.g. 1000/day)"),
        (["k", "--api", "shop", "--quota", "0/day"], "fx: quota '0/day': N is 1 to 1,000,000,000,000 requests"),
        (["k", "--api", "shop", "--burst", "5"], "fx: burst without a rate: give the key a rate too"),
        (["k", "--api", "shop", "--rate", "0"], "fx: rate: Input should be greater than 0"),
    ],
)
def test_bad_flags_are_exit_2_naming_what_to_fix(flags: list[str], message: str, capsys) -> None:
    assert main(["--gateway", "http://127.0.0.1:9", "apikey", "create", *flags]) == 2  # nothing is called
    assert message in capsys.readouterr().err


def test_a_quota_is_read_as_n_per_day_or_month() -> None:
    assert QuotaSpec.parse(" 1000/Day ") == QuotaSpec(limit=1000, period="day")
    assert str(QuotaSpec.parse("7/month")) == "7/month"
