"""The event verbs' admin calls (/system/publish, /system/kv, /system/streams, /system/dlq) with values a caller
should not be able to act on: each is a 400 naming the field (or 413), never a 500, and the controller's NATS
connection outlives them. Before, a subject or KV key over 4096 bytes made nats-server close the controller's
connection for good (every later event call: 500 ConnectionClosedError)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import RunningPlatform


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("event-bounds")
    platform = RunningPlatform(root / "state", root / "fx-config.json")
    headers = {"Authorization": f"Bearer {platform.token}"}
    try:
        with httpx.Client(base_url=f"{platform.gateway_url}/system", headers=headers, timeout=30) as client:
            assert client.put("/kv/users", json={}).status_code == 200
            assert client.put("/streams/ORDERS", json={"subjects": ["orders.>"]}).status_code == 200
            yield client
    finally:
        platform.stop()


def _refused(response: httpx.Response, field: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    assert len(response.text) < 2000  # the bad value is not echoed whole


def _still_connected(api: httpx.Client) -> None:
    published = api.post("/publish", json={"subject": "orders.new", "data": "after"})
    assert published.status_code == 200 and published.json()["stream"] == "ORDERS", published.text
    assert api.put("/kv/users/keys/eu.ann", json={"value": "after"}).status_code == 200


LONG = "a." * 3000 + "b"  # 6001 characters: over nats-server's 4096-byte protocol line


def test_an_over_long_subject_is_a_400_and_the_controller_keeps_its_nats_connection(api):
    _refused(api.post("/publish", json={"subject": LONG}), "subject")
    _refused(api.post("/publish", json={"subject": "a." * 128 + "b"}), "subject")  # 257 characters
    _refused(api.put("/streams/LONG", json={"subjects": [LONG]}), "subjects")
    _still_connected(api)


def test_an_over_long_kv_key_is_a_400_and_the_controller_keeps_its_nats_connection(api):
    _refused(api.put("/kv/users/keys/" + "k" * 6000, json={"value": "v"}), "key")
    _still_connected(api)


BAD_HEADERS = [
    {"A": "x\r\nNats-Msg-Id: forged"},  # before: stored, with the made-up header
    {"A\r\nB": "x"},  # before: 500 BadHeaderError
    {"A: B": "x"},
    {"": "x"},
    {"A": "x\x00"},
    {f"H{i}": "v" for i in range(65)},
]


@pytest.mark.parametrize("headers", BAD_HEADERS, ids=[repr(h)[:30] for h in BAD_HEADERS])
def test_a_bad_header_of_a_test_message_is_a_400_and_nothing_is_stored(api, headers):
    before = api.get("/streams").json()
    _refused(api.post("/publish", json={"subject": "orders.new", "headers": headers}), "headers")
    assert api.get("/streams").json() == before


def test_data_that_is_not_base64_is_a_400_not_an_empty_message(api):
    before = api.get("/streams").json()
    refused = api.post("/publish", json={"subject": "orders.new", "data": "!!!", "base64": True})
    assert refused.status_code == 400 and "base64" in refused.json()["error"]["message"], refused.text
    assert api.get("/streams").json() == before
    good = api.post("/publish", json={"subject": "orders.new", "data": "aGk=", "base64": True, "headers": {"X-A": "1"}})
    assert good.status_code == 200, good.text


@pytest.mark.parametrize(
    ("path", "spec", "field"),
    [
        ("/streams/MANY", {"subjects": [f"m{i}.x" for i in range(33)]}, "subjects"),  # before: 503 after 5 s
        ("/streams/AGE", {"subjects": ["age.x"], "max_age": 1e300}, "max_age"),  # before: 500 OverflowError
        ("/streams/BIG", {"subjects": ["big.x"], "max_bytes": 2**70}, "max_bytes"),  # before: 500 BadRequestError
        ("/kv/big", {"max_bytes": 2**70}, "max_bytes"),
    ],
)
def test_a_stream_or_bucket_past_jetstreams_limits_is_a_400_and_not_made(api, path, spec, field):
    _refused(api.put(path, json=spec), field)
    assert [s["name"] for s in api.get("/streams").json()] == ["ORDERS"]
    assert [b["name"] for b in api.get("/kv").json()] == ["users"]


@pytest.mark.parametrize("letter", [0, -1, 2**70])
def test_a_dead_letter_id_out_of_range_is_a_400(api, letter):
    _refused(api.get(f"/dlq/{letter}"), "letter_id")
    _refused(api.post("/dlq/redrive", json={"ids": [letter]}), "ids.0")


def test_a_redrive_names_at_most_as_many_ids_as_a_listing_shows(api):
    _refused(api.post("/dlq/redrive", json={"ids": list(range(1, 10_002))}), "ids")
    most = api.post("/dlq/redrive", json={"ids": list(range(1, 10_001))})  # taken: there is no letter 1
    assert most.status_code == 404 and most.json()["error"]["code"] == "DeadLetterNotFound", most.text


def test_logs_since_a_time_past_the_calendar_is_an_answer_not_a_500(api):
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return 'ok'\n")
    digest = "sha256:" + hashlib.sha256(code.getvalue()).hexdigest()
    assert api.put(f"/artifacts/{digest}", content=code.getvalue()).status_code == 200
    assert api.put("/functions/hello", json={"name": "hello", "artifact": digest}).status_code == 200
    for since in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00"):  # before: 500 OverflowError
        answered = api.get("/functions/hello/logs", params={"since": since})
        assert answered.status_code == 200, (since, answered.text)
    for bad in ("yesterday", "2026-13-01T00:00:00Z"):
        _refused(api.get("/functions/hello/logs", params={"since": bad}), "since")
    _refused(api.get("/functions/hello/logs", params={"tail": -1}), "tail")
    _refused(api.get("/functions/hello/logs", params={"tail": 10**9}), "tail")


def test_query_flags_and_the_request_timeout_are_checked(api):
    _refused(api.post("/functions/hello/rollback", params={"force": "maybe"}), "force")
    _refused(api.put("/functions/hello", params={"dry_run": "maybe"}, json={"name": "hello"}), "dry_run")
    for timeout in (0, 61, "Infinity"):
        body = f'{{"subject": "orders.new", "request": true, "timeout": {timeout}}}'
        _refused(api.post("/publish", content=body, headers={"Content-Type": "application/json"}), "timeout")
    _refused(api.get("/dlq", params={"limit": 10_001}), "limit")
