"""Billed usage kept per hour in NATS: reports added up and stored, windows widened to whole hours, old hours
dropped, bad keys refused, and everything read back by the next controller."""

from __future__ import annotations

import json
from types import SimpleNamespace

import nats
import pytest
from fx.protocol import KV_USAGE, UsageReport
from fx_controller.usage import HOUR_S, UsageBook

from tests.unit.sdk.test_kv_watch import EarlyMarkerBucket

NOW = 1_000 * HOUR_S + 1800.0  # half past an hour


@pytest.fixture
async def js(nats_url: str):
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


async def test_reports_add_up_per_hour_and_a_window_takes_whole_hours(js):
    book = await UsageBook.open(js, retention=3 * HOUR_S, replicas=1)
    book._clock = lambda: NOW - HOUR_S  # the hour before
    await book.add(UsageReport("gw-1", {"shop/1": (10, 1280)}))
    book._clock = lambda: NOW
    await book.add(UsageReport("gw-1", {"shop/1": (5, 640), "shop/2": (1, 128)}))
    await book.add(UsageReport("gw-2", {"shop/1": (5, 640)}))

    last = book.window(600)  # the last 10 minutes: this hour, whole
    assert [(r.function, r.version, r.invocations) for r in last.rows] == [("shop", 1, 10), ("shop", 2, 1)]
    assert last.rows[0].gb_seconds == pytest.approx(1280 / 1024 / 1000)
    assert last.since.timestamp() == 1_000 * HOUR_S
    assert book.window(HOUR_S).rows[0].invocations == 20  # reaches into the hour before

    again = await UsageBook.open(js, retention=3 * HOUR_S, replicas=1)  # a new controller reads it back
    again._clock = lambda: NOW
    assert again.window(HOUR_S) == book.window(HOUR_S)
    kv = await js.key_value(KV_USAGE)
    assert set(await kv.keys()) == {"999.shop.1", "1000.shop.1", "1000.shop.2"}


async def test_hours_past_the_retention_are_dropped_and_bad_keys_ignored(js):
    book = await UsageBook.open(js, retention=2 * HOUR_S, replicas=1)
    book._clock = lambda: NOW - 5 * HOUR_S
    await book.add(UsageReport("gw", {"old/1": (1, 128)}))
    book._clock = lambda: NOW
    await book.add(UsageReport("gw", {"new/3": (2, 256), "Bad Name/1": (1, 1), "x/y": (1, 1), "neg/1": (-1, 0)}))
    assert [(r.function, r.version) for r in book.window(10 * HOUR_S).rows] == [("new", 3)]


async def test_a_new_controller_reads_every_hour_back_even_when_nats_py_marks_the_end_too_early():
    """nats-io/nats.py#842: the watch behind kv.keys() may say "no more" before the stored keys arrive; the hours
    billed must not be lost by a controller restarting on a busy host."""
    stored = {"999.shop.1": (10, 1280), "1000.shop.1": (5, 640)}
    entries = [
        SimpleNamespace(key=k, value=json.dumps({"invocations": n, "mb_ms": m}).encode(), operation=None, delta=i)
        for i, (k, (n, m)) in reversed(list(enumerate(stored.items())))
    ]
    bucket = EarlyMarkerBucket(entries)

    async def key_value(name: str):
        assert name == KV_USAGE
        return bucket

    book = await UsageBook.open(SimpleNamespace(key_value=key_value), retention=3 * HOUR_S, replicas=1)
    book._clock = lambda: NOW
    assert [(r.function, r.version, r.invocations) for r in book.window(HOUR_S).rows] == [("shop", 1, 15)]
