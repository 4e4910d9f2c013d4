"""/system/dlq, /system/streams, /system/kv and /system/status against a real nats-server, dead letters
written as the gateways write them."""

from __future__ import annotations

import httpx
from fx.protocol import (
    ASYNC_CALL_ID,
    ASYNC_FUNCTION,
    DEAD_ATTEMPTS,
    DEAD_ERROR,
    DEAD_MESSAGE,
    DEAD_SEQUENCE,
    DEAD_STATUS,
    DEAD_STREAM,
    DEAD_SUBJECT,
    STREAM_ASYNC,
    async_subject,
    dead_letter_subject,
)
from fx_controller.controller import Controller

from tests.waiting import until


def failure(error: str = "ValueError", attempts: int = 3) -> dict[str, str]:
    return {DEAD_ERROR: error, DEAD_MESSAGE: "bad order", DEAD_STATUS: "502", DEAD_ATTEMPTS: str(attempts)}


async def dead_letter(controller: Controller, function: str, data: bytes, headers: dict[str, str]) -> int:
    ack = await controller._nc.jetstream().publish(dead_letter_subject(function), data, headers=headers)
    return ack.seq


async def test_letters_are_listed_oldest_first_and_shown_whole(admin: httpx.AsyncClient, controller, deployed):
    await deployed("orders")
    call = {ASYNC_CALL_ID: "c-1", ASYNC_FUNCTION: "orders", "X-Custom": "kept", **failure()}
    first = await dead_letter(controller, "orders", b'{"n": 1}', call)
    second = await dead_letter(controller, "other", b"\xff\x00", {**failure("Sandbox.Timedout", 1)})
    everything = (await admin.get("/system/dlq")).json()
    assert [(x["id"], x["function"], x["error"]) for x in everything] == [
        (first, "orders", "ValueError"),
        (second, "other", "Sandbox.Timedout"),
    ]
    assert everything[0]["call_id"] == "c-1" and everything[0]["attempts"] == 3 and everything[0]["status"] == 502
    assert [x["id"] for x in (await admin.get("/system/dlq", params={"function": "other"})).json()] == [second]
    assert [x["id"] for x in (await admin.get("/system/dlq", params={"limit": 1})).json()] == [first]
    shown = (await admin.get(f"/system/dlq/{first}")).json()
    assert shown["body"] == '{"n": 1}' and shown["headers"]["X-Custom"] == "kept" and not shown["body_base64"]
    assert (await admin.get(f"/system/dlq/{second}")).json()["body"] == "/wA="  # base64 of the binary body
    missing = await admin.get("/system/dlq/999")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "DeadLetterNotFound"
    assert (await admin.get("/system/dlq", params={"function": "Bad_Name"})).status_code == 400


async def test_a_redrive_copies_each_letter_where_it_came_from_and_keeps_what_it_cannot(admin, controller, deployed):
    await deployed("orders")
    js = controller._nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    stored_call = {ASYNC_CALL_ID: "c-1", ASYNC_FUNCTION: "orders", **failure()}
    call = await dead_letter(controller, "orders", b"call", stored_call)
    record = {DEAD_SUBJECT: "orders.new", DEAD_STREAM: "ORDERS", DEAD_SEQUENCE: "7", "X-Own": "1", **failure()}
    from_stream = await dead_letter(controller, "orders", b"record", record)
    kv = {DEAD_SUBJECT: "$KV.users.ann", DEAD_STREAM: "KV_users", DEAD_SEQUENCE: "3", **failure()}
    from_kv = await dead_letter(controller, "orders", b"Ann", kv)
    orphan = await dead_letter(controller, "gone", b"x", {ASYNC_FUNCTION: "gone", **failure()})

    unknown = await admin.post("/system/dlq/redrive", json={"ids": [call, 999]})
    assert unknown.status_code == 404 and len((await admin.get("/system/dlq")).json()) == 4  # nothing done
    assert (await admin.post("/system/dlq/redrive", json={"ids": [call], "all": True})).status_code == 400

    result = (await admin.post("/system/dlq/redrive", json={"all": True})).json()
    assert [x["id"] for x in result["redriven"]] == [call, from_stream]
    assert {f["id"] for f in result["failed"]} == {from_kv, orphan}
    assert [x["id"] for x in (await admin.get("/system/dlq")).json()] == [from_kv, orphan]

    copied = await js.get_msg(STREAM_ASYNC, subject=async_subject("orders"))
    assert copied.data == b"call" and copied.headers[ASYNC_CALL_ID] == "c-1" and DEAD_ERROR not in copied.headers
    republished = await js.get_msg("ORDERS", subject="orders.new")
    assert republished.data == b"record" and republished.headers["X-Own"] == "1"
    assert DEAD_STREAM not in republished.headers

    gone = await admin.post("/system/dlq/redrive", json={"function": "nosuch"})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "FunctionNotFound"


async def test_streams_and_buckets_are_created_once_listed_and_removed_unless_read(admin, controller, deployed):
    created = await admin.put("/system/streams/ORDERS", json={"subjects": ["orders.>"], "max_age": 60})
    assert created.status_code == 200 and created.json()["created"] is True and created.json()["max_age"] == 60
    assert (await admin.put("/system/streams/ORDERS", json={"subjects": ["orders.>"]})).json()["created"] is False
    overlap = await admin.put("/system/streams/MORE", json={"subjects": ["orders.eu"]})
    assert overlap.status_code == 409 and overlap.json()["error"]["code"] == "SubjectsOverlap"
    for name, subjects in (("FX_MINE", ["a"]), ("KV_users", ["a"]), ("MINE", ["fx.x"]), ("MINE", ["$JS.>"])):
        r = await admin.put(f"/system/streams/{name}", json={"subjects": subjects})
        assert r.status_code == 400, (name, subjects)
    assert (await admin.put("/system/kv/users", json={})).json() == {
        "name": "users",
        "values": 0,
        "bytes": 0,
        "history": 1,
        "consumers": 0,
        "created": True,
    }
    assert (await admin.put("/system/kv/fx_routes", json={})).status_code == 400
    assert [s["name"] for s in (await admin.get("/system/streams")).json()] == ["ORDERS"]  # not FX_*, KV_*
    assert [b["name"] for b in (await admin.get("/system/kv")).json()] == ["users"]

    await deployed("reader", triggers=[{"kv": {"bucket": "users"}}])
    in_use = await admin.delete("/system/kv/users")
    assert in_use.status_code == 409 and "reader" in in_use.json()["error"]["message"]
    assert (await admin.delete("/system/streams/ORDERS")).status_code == 204
    assert (await admin.delete("/system/streams/ORDERS")).status_code == 404


async def test_status_names_the_version_backend_and_nats(admin, controller, deployed):
    await deployed("hello")
    status = (await admin.get("/system/status")).json()
    assert status["functions"] == 1 and status["backend"] == "local"
    assert status["nats_url"] == controller.settings.nats_url and status["nats_creds"] is None  # no auth dir
    assert status["version"]
    assert (await admin.get("/system/status", headers={"Authorization": ""})).status_code == 401


async def test_a_test_message_is_stored_by_the_stream_taking_its_subject_or_else_published(admin, controller):
    js = controller._nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    stored = await admin.post("/system/publish", json={"subject": "orders.new", "data": "7", "headers": {"A": "1"}})
    assert stored.json() | {"reply_headers": {}} == {
        "subject": "orders.new",
        "stream": "ORDERS",
        "seq": 1,
        "reply": None,
        "reply_base64": False,
        "reply_headers": {},
    }
    kept = await js.get_msg("ORDERS", seq=1)
    assert kept.data == b"7" and kept.headers["A"] == "1"

    heard = []

    async def quote(msg) -> None:
        heard.append(msg.data)
        if msg.reply:
            await msg.respond(b"42")

    await controller._nc.subscribe("quotes.*", cb=quote)
    told = (await admin.post("/system/publish", json={"subject": "quotes.x", "data": "/w==", "base64": True})).json()
    assert told["stream"] is None
    asked = (await admin.post("/system/publish", json={"subject": "quotes.y", "request": True})).json()
    assert asked["reply"] == "42" and heard == [b"\xff", b""]
    nobody = await admin.post("/system/publish", json={"subject": "nobody.home", "request": True, "timeout": 1})
    assert nobody.status_code == 404 and nobody.json()["error"]["code"] == "NoResponders"
    for subject in ("fx.activate", "$JS.API.STREAM.DELETE.ORDERS", "_INBOX.x", "orders.*", "orders.>"):
        assert (await admin.post("/system/publish", json={"subject": subject})).status_code == 400, subject


async def test_a_message_nats_did_not_confirm_in_time_is_a_504_saying_it_may_have_gone(admin, controller):
    """Not 503 "retry": past its timeout the message may still be delivered or stored, as both are here."""
    js = controller._nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    heard = []

    async def hear(msg) -> None:
        heard.append(msg.data)

    await controller._nc.subscribe("quotes.*", cb=hear)
    for subject in ("orders.new", "quotes.x"):  # a stream's ack, a core publish's flush: no answer in 1 µs
        late = await admin.post("/system/publish", json={"subject": subject, "data": "7", "timeout": 0.000001})
        assert late.status_code == 504 and late.json()["error"]["code"] == "PublishUnconfirmed", late.text
        assert "may have been published" in late.json()["error"]["message"]
    await until(lambda: heard == [b"7"], 5, "the core message at its subscriber")
    assert (await js.get_msg("ORDERS", seq=1)).data == b"7"


async def test_a_key_is_put_in_an_existing_bucket_only(admin):
    missing = await admin.put("/system/kv/users/keys/eu.ann", json={"value": "Ann"})
    assert missing.status_code == 404 and "fx kv create users" in missing.json()["error"]["message"]
    await admin.put("/system/kv/users", json={})
    put = await admin.put("/system/kv/users/keys/eu.ann", json={"value": "Ann"})
    assert put.json() == {"bucket": "users", "key": "eu.ann", "revision": 1}
    for key in ("eu.*", ".x", "a..b", "_kv.x"):
        assert (await admin.put(f"/system/kv/users/keys/{key}", json={"value": "x"})).status_code == 400, key
    assert (await admin.put("/system/kv/fx_secrets/keys/a", json={"value": "x"})).status_code == 400


async def test_a_message_over_natss_max_payload_is_a_413_and_the_connection_stays(admin, controller, monkeypatch):
    # nats-server closes a connection sending more than max_payload (headers included); the body limit of
    # the admin API is an operator's setting, so the controller checks the message itself.
    monkeypatch.setattr(controller.messages.nc, "_max_payload", 1000)
    big = await admin.post("/system/publish", json={"subject": "a.b", "data": "x" * 900, "headers": {"H": "v" * 200}})
    assert big.status_code == 413 and big.json()["error"]["code"] == "PayloadTooLarge", big.text
    assert (await admin.put("/system/kv/users", json={})).status_code == 200
    assert (await admin.put("/system/kv/users/keys/k", json={"value": "v" * 1001})).status_code == 413
    assert (await admin.post("/system/publish", json={"subject": "a.b", "data": "x" * 900})).status_code == 200


async def test_a_redrive_of_all_takes_a_batch_a_call_and_next_names_the_rest(admin, controller, deployed, monkeypatch):
    # Bounded work a call: a DLQ of a million letters is not redriven (and answered) in one request.
    monkeypatch.setattr("fx_controller.events.dead_letters.REDRIVE_BATCH", 2)
    await deployed("orders")
    call = {ASYNC_FUNCTION: "orders", **failure()}
    ids = [await dead_letter(controller, "orders", b"%d" % n, call) for n in range(5)]
    first = (await admin.post("/system/dlq/redrive", json={"all": True})).json()
    assert [x["id"] for x in first["redriven"]] == ids[:2]
    assert first["next"] == {"ids": None, "function": None, "all": True, "start": ids[2], "end": ids[4]}
    later = await dead_letter(controller, "orders", b"later", {ASYNC_FUNCTION: "orders", **failure()})
    second = (await admin.post("/system/dlq/redrive", json=first["next"])).json()
    third = (await admin.post("/system/dlq/redrive", json=second["next"])).json()
    assert [x["id"] for x in second["redriven"] + third["redriven"]] == ids[2:]
    assert third["next"] is None  # the letter that came after the first call is not taken
    assert [x["id"] for x in (await admin.get("/system/dlq")).json()] == [later]
