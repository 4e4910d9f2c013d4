"""API keys and limits of API routes, with injected clocks: x-api-key looked up by sha256, token buckets (rate,
burst, Retry-After), the route, API and key throttles together, the per-gateway share, quotas per UTC day and
month with their rollover, and the counts reported to the controller."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from fx.protocol import ApiKeyUsageReply
from fx.quota_periods import DAY_S, day_of, period_end
from fx_gateway.api.api_keys import ApiKeys, parse
from fx_gateway.api.decisions import Deny
from fx_gateway.api.limits import Bucket, Limits
from fx_gateway.api.metrics import ApiMetrics
from fx_gateway.api.request import ApiRequest
from fx_gateway.api.table import Route
from fx_gateway.api.table import parse as parse_api
from fx_gateway.config import Settings
from fx_gateway.nats_link import NatsLink

from tests.unit.gateway.test_api_matching import api

MARCH_31_NOON = 20543 * DAY_S + 12 * 3600.0  # 2026-03-31 12:00 UTC: the last day of a month


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(name: str, value: str, api_name: str = "shop", **limits) -> bytes:
    quota = limits.pop("quota", None)
    wire = {
        "id": f"id-{name}",
        "name": name,
        "api": api_name,
        "sha256": hashlib.sha256(value.encode()).hexdigest(),
        "rate": None,
        "burst": None,
        "quota": quota,
        "created_at": "2026-03-01T00:00:00Z",
    }
    return json.dumps(wire | limits).encode()


def request(key: str | None = None, api_name: str = "shop") -> ApiRequest:
    headers = {b"x-api-key": key.encode()} if key is not None else {}
    return ApiRequest(api_name, "GET /items", "GET", "/items", "", headers, "127.0.0.1", "shop.example.com")


def route(route_throttle: dict | None = None, api_throttle: dict | None = None) -> Route:
    spec = {"function": "items", "api_key": True, "throttle": route_throttle}
    return parse_api("shop", api("shop", {"GET /items": spec}, throttle=api_throttle), ApiMetrics()).routes[0]


@pytest.fixture
def keys() -> ApiKeys:
    settings = Settings()
    return ApiKeys(settings, NatsLink(settings))


def limits_for(keys: ApiKeys, monotonic: Clock, wall: Clock) -> Limits:
    return Limits(Settings(), keys.link, keys, clock=monotonic, wall=wall)


def retry_after(deny: Deny | None) -> int:
    assert deny is not None and deny.status == 429
    return int(dict(deny.headers)[b"Retry-After"])


# --- API keys ---------------------------------------------------------------------------------------------


def test_a_key_is_found_by_its_sha256_for_its_own_api_only(keys: ApiKeys) -> None:
    keys.apply("mobile", record("mobile", "s3cret-value"))
    keys.apply("partner", record("partner", "other-value", api_name="billing"))
    assert keys.check(request("s3cret-value")) == "id-mobile"
    for refused in (request(), request("wrong"), request("other-value")):  # none, unknown, another API's
        deny = keys.check(refused)
        assert isinstance(deny, Deny) and (deny.status, deny.message) == (403, "Forbidden")
    keys.remove("mobile")
    assert isinstance(keys.check(request("s3cret-value")), Deny)
    assert keys.get("id-mobile") is None and keys.get("id-partner") is not None


def test_a_changed_key_replaces_the_old_one_and_a_bad_record_is_ignored(keys: ApiKeys) -> None:
    keys.apply("mobile", record("mobile", "first"))
    keys.apply("mobile", record("mobile", "second"))
    assert isinstance(keys.check(request("first")), Deny) and keys.check(request("second")) == "id-mobile"
    keys.apply("mobile", b'{"id": "x"}')  # unreadable: the key held keeps working
    assert keys.check(request("second")) == "id-mobile"
    with pytest.raises(ValueError, match="sha256"):
        parse(json.dumps(json.loads(record("k", "v")) | {"sha256": "abcd"}))


# --- token buckets ------------------------------------------------------------------------------------------


def test_a_bucket_admits_its_burst_then_its_rate_and_says_when_the_next_token_comes() -> None:
    bucket = Bucket(rate=2.0, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.wait(0.0) == 0.0
        bucket.take()
    assert bucket.wait(0.0) == pytest.approx(0.5)  # one token at 2 per second
    assert bucket.wait(0.25) == pytest.approx(0.25)
    assert bucket.wait(0.5) == 0.0
    bucket.take()
    assert bucket.wait(100.0) == 0.0 and bucket.tokens == 3  # never more than the burst


def test_the_first_empty_bucket_refuses_and_a_refusal_costs_no_other_bucket_a_token(keys: ApiKeys) -> None:
    clock = Clock(0.0)
    limits = limits_for(keys, clock, Clock(MARCH_31_NOON))
    keys.apply("mobile", record("mobile", "v", rate=1, burst=2))
    limited = route(route_throttle={"rate": 0.1, "burst": 3}, api_throttle={"rate": 1, "burst": 10})
    assert [limits.admit(request("v"), limited, "id-mobile") for _ in range(2)] == [None, None]
    assert retry_after(limits.admit(request("v"), limited, "id-mobile")) == 1  # the key's bucket: 1 per second
    # that refusal took none of the route's tokens: its last one admits a request on a route without a key
    assert limits.admit(request(), limited, None) is None
    assert retry_after(limits.admit(request(), limited, None)) == 10  # the route's: 1 token at 0.1 per second
    requests, gateways, _ = limits.collect()
    assert [(s.labels, s.value) for s in requests.samples] == [({"api": "shop", "key": "mobile"}, 2.0)]
    assert [s.value for s in gateways.samples] == [1]


def test_each_gateway_enforces_its_share_of_a_throttle(keys: ApiKeys) -> None:
    clock = Clock(0.0)
    limits = limits_for(keys, clock, Clock(MARCH_31_NOON))
    limits.acknowledged(ApiKeyUsageReply(gateways=4, day=day_of(MARCH_31_NOON), used={}))
    limited = route(route_throttle={"rate": 8, "burst": 8})
    admitted = sum(limits.admit(request(), limited, None) is None for _ in range(10))
    assert admitted == 2  # burst 8 over 4 gateways
    clock.now = 1.0
    assert sum(limits.admit(request(), limited, None) is None for _ in range(10)) == 2  # rate 8 / 4 per second


# --- quotas -------------------------------------------------------------------------------------------------


def test_a_daily_quota_refuses_until_midnight_utc_then_starts_again(keys: ApiKeys) -> None:
    wall = Clock(MARCH_31_NOON)
    limits = limits_for(keys, Clock(0.0), wall)
    keys.apply("mobile", record("mobile", "v", quota={"limit": 5, "period": "day"}))
    plain = route()
    assert all(limits.admit(request("v"), plain, "id-mobile") is None for _ in range(5))
    refusal = limits.admit(request("v"), plain, "id-mobile")
    assert refusal is not None and refusal.message == "Limit Exceeded"
    assert retry_after(refusal) == 12 * 3600  # to midnight UTC
    wall.now = MARCH_31_NOON + 12 * 3600  # midnight
    assert limits.admit(request("v"), plain, "id-mobile") is None


def test_a_monthly_quota_counts_across_days_until_the_month_ends(keys: ApiKeys) -> None:
    wall = Clock(MARCH_31_NOON - DAY_S)  # March 30
    limits = limits_for(keys, Clock(0.0), wall)
    keys.apply("mobile", record("mobile", "v", quota={"limit": 3, "period": "month"}))
    plain = route()
    assert all(limits.admit(request("v"), plain, "id-mobile") is None for _ in range(2))
    wall.now = MARCH_31_NOON  # the next day, not yet reported: still this month's
    assert limits.admit(request("v"), plain, "id-mobile") is None
    assert retry_after(limits.admit(request("v"), plain, "id-mobile")) == 12 * 3600  # to April 1st
    wall.now = MARCH_31_NOON + DAY_S  # April
    assert limits.admit(request("v"), plain, "id-mobile") is None


def test_the_counts_go_to_the_controller_until_acknowledged_and_others_usage_counts(keys: ApiKeys) -> None:
    wall = Clock(MARCH_31_NOON)
    limits = limits_for(keys, Clock(0.0), wall)
    keys.apply("mobile", record("mobile", "v", quota={"limit": 10, "period": "day"}))
    plain = route()
    today = day_of(MARCH_31_NOON)
    for _ in range(3):
        limits.admit(request("v"), plain, "id-mobile")
    count = limits._counts["id-mobile"]
    sent = count.take_report()
    assert sent == [("id-mobile", today, 3)]
    count.not_acknowledged(sent)  # lost: they go again
    assert count.take_report() == [("id-mobile", today, 3)]
    # the controller stored them, and another gateway's 6: 9 of 10 used
    limits.acknowledged(ApiKeyUsageReply(gateways=2, day=today, used={"id-mobile": (9, 9)}))
    assert limits.admit(request("v"), plain, "id-mobile") is None
    assert retry_after(limits.admit(request("v"), plain, "id-mobile")) > 0
    keys.remove("mobile")
    limits.acknowledged(ApiKeyUsageReply(gateways=2, day=today, used={}))
    assert "id-mobile" not in limits._counts  # a removed key's counts went with the last report


def test_quota_periods_end_at_midnight_and_on_the_first_of_the_month_utc() -> None:
    december_31 = datetime(2026, 12, 31, 18, tzinfo=UTC).timestamp()
    assert period_end(december_31, "day") == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert period_end(december_31, "month") == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    february = datetime(2028, 2, 10, tzinfo=UTC).timestamp()  # a leap year
    assert period_end(february, "month") == datetime(2028, 3, 1, tzinfo=UTC).timestamp()
    assert period_end(february, "day") == datetime(2028, 2, 11, tzinfo=UTC).timestamp()


def test_a_key_first_used_here_starts_from_the_totals_the_controller_last_sent(keys: ApiKeys) -> None:
    limits = limits_for(keys, Clock(0.0), Clock(MARCH_31_NOON))  # a gateway just (re)started
    keys.apply("mobile", record("mobile", "v", quota={"limit": 5, "period": "day"}))
    limits.acknowledged(ApiKeyUsageReply(gateways=1, day=day_of(MARCH_31_NOON), used={"id-mobile": (5, 5)}))
    assert retry_after(limits.admit(request("v"), route(), "id-mobile")) == 12 * 3600
