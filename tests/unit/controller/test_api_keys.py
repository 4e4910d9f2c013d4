"""API keys: created with their value shown once and only its sha256 stored, listed with their usage, removed;
the usage the gateways report added up per key and UTC day, durable across controllers, and answered with the
quotas' totals and the number of live gateways."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import httpx
import nats
import pytest
from fx.protocol import KV_API_KEYS, SUBJECT_API_KEY_USAGE, ApiKeyUsageReply, ApiKeyUsageReport
from fx.quota_periods import DAY_S, day_of
from fx_controller.api_keys.usage import ApiKeyUsage
from fx_controller.controller import Controller
from fx_controller.settings import Settings

# 2026-03-31 12:00 UTC: the last day of a month, so the day after is in the next one
NOW = 20543 * DAY_S + 12 * 3600.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, max_api_keys=2)


@pytest.fixture
async def admin(admin: httpx.AsyncClient) -> httpx.AsyncClient:
    """With an API named shop: keys are for an API that exists."""
    r = await admin.put("/system/apis/shop", json={"routes": {"GET /health": {"mock": {"status": 200}}}})
    assert r.status_code == 200, r.text
    return admin


async def test_a_key_is_shown_once_and_stored_as_its_sha256_only(admin: httpx.AsyncClient, controller: Controller):
    spec = {"name": "mobile", "api": "shop", "rate": 2.5, "quota": {"limit": 5, "period": "day"}}
    r = await admin.post("/system/apikeys", json=spec)
    assert r.status_code == 201, r.text
    issued = r.json()
    value = issued["value"]
    assert len(value) == 40 and value.isalnum()
    assert issued["burst"] == 3  # the rate rounded up when no burst is given
    assert (issued["used_today"], issued["used_month"]) == (0, 0)

    kv = await controller._nc.jetstream().key_value(KV_API_KEYS)
    stored = (await kv.get("mobile")).value
    assert value.encode() not in stored
    assert json.loads(stored)["sha256"] == hashlib.sha256(value.encode()).hexdigest()

    listed = (await admin.get("/system/apikeys")).json()
    assert [k["name"] for k in listed] == ["mobile"]
    assert "value" not in listed[0] and "sha256" not in listed[0]
    assert listed[0]["quota"] == {"limit": 5, "period": "day"}


async def test_bad_keys_are_refused_naming_what_to_fix(admin: httpx.AsyncClient):
    cases = [
        ({"name": "Bad Name", "api": "shop"}, "key name 'Bad Name' is invalid"),
        ({"name": "k", "api": "shop", "burst": 5}, "burst without a rate"),
        ({"name": "k", "api": "shop", "rate": 0}, "rate"),
        ({"name": "k", "api": "shop", "quota": {"limit": 5, "period": "week"}}, "period"),
    ]
    for body, says in cases:
        r = await admin.post("/system/apikeys", json=body)
        assert r.status_code == 400 and says in r.json()["error"]["message"], (body, r.text)
    unknown = await admin.post("/system/apikeys", json={"name": "k", "api": "billing"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "ApiNotFound"
    assert (await admin.post("/system/apikeys", json={"name": "k", "api": "shop"})).status_code == 201
    again = await admin.post("/system/apikeys", json={"name": "k", "api": "shop"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "ApiKeyExists"
    assert (await admin.post("/system/apikeys", json={"name": "k2", "api": "shop"})).status_code == 201
    full = await admin.post("/system/apikeys", json={"name": "k3", "api": "shop"})
    assert full.status_code == 409 and "--max-api-keys" in full.json()["error"]["message"]
    missing = await admin.delete("/system/apikeys/nope")
    assert missing.status_code == 404 and "fx apikey ls" in missing.json()["error"]["message"]
    assert (await admin.delete("/system/apikeys/k")).status_code == 204
    assert [k["name"] for k in (await admin.get("/system/apikeys")).json()] == ["k2"]


async def test_usage_adds_up_per_day_and_month_and_outlives_the_controller(nats_url: str):
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    usage = await ApiKeyUsage.open(js, 1, list)
    usage._clock = lambda: NOW
    today = day_of(NOW)
    await usage.add([("k1", today - 1, 3), ("k1", today, 4), ("k2", today, 1)])
    await usage.add([("k1", today, 2), ("k1", today - 40, 9)])  # a day of an earlier month: not this month's
    assert usage.used("k1") == (6, 9)
    again = await ApiKeyUsage.open(js, 1, list)  # the next controller reads them back
    again._clock = lambda: NOW
    assert again.used("k1") == (6, 9) and again.used("k2") == (1, 1)
    again._clock = lambda: NOW + DAY_S  # the first of the next month: both start again
    assert again.used("k1") == (0, 0)
    await again.forget("k1")
    assert (await ApiKeyUsage.open(js, 1, list)).used("k1", today) == (0, 0)
    await nc.close()


async def test_a_report_is_answered_with_the_quotas_totals_and_the_live_gateways(nats_url: str):
    nc = await nats.connect(nats_url)
    usage = await ApiKeyUsage.open(nc.jetstream(), 1, lambda: ["k1"])
    await usage.serve(nc)
    today = day_of(usage._clock())
    first = ApiKeyUsageReport("gw-1", 1.0, [("k1", today, 4), ("k2", today, 7)])
    reply = ApiKeyUsageReply.from_json((await nc.request(SUBJECT_API_KEY_USAGE, first.to_json(), timeout=5)).data)
    assert (reply.gateways, reply.day, reply.used) == (1, today, {"k1": (4, 4)})  # k2 has no quota
    second = ApiKeyUsageReport("gw-2", 1.0, [("k1", today, 1)])
    reply = ApiKeyUsageReply.from_json((await nc.request(SUBJECT_API_KEY_USAGE, second.to_json(), timeout=5)).data)
    assert (reply.gateways, reply.used) == (2, {"k1": (5, 5)})
    assert usage.used("k2") == (7, 7)
    await nc.close()
