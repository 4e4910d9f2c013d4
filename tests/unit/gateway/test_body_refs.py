"""Calls whose body is passed by reference (X-Fx-Body-Ref): the gateway reads the blob from fx_blobs on a real
nats-server and sends it as the body; unknown, malformed or foreign references and NATS away are refused clearly."""

from __future__ import annotations

import hashlib
import json

import nats
import pytest
from fx.protocol import BODY_REF, OBJ_BLOBS, blob_key

from tests.unit.gateway.conftest import table
from tests.waiting import until

INVOKE = "/2015-03-31/functions/hello/invocations"


@pytest.fixture
async def served(nats_server, gateway, replicas):
    """(gateway, replica, the fx_blobs store) with a 1000-byte request limit, following a real NATS."""
    gw = await gateway(nats_url=nats_server, gateway_id="gw-test", max_request_bytes=1000)
    await gw.gateway.start()
    await until(gw.gateway.feed.healthy)
    replica = await replicas()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    nc = await nats.connect(nats_server)
    store = await nc.jetstream().create_object_store(OBJ_BLOBS)
    yield gw, replica, store
    await nc.close()
    await gw.gateway.close()


async def put(store, function: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    await store.put(blob_key(function, digest), data)
    return digest


async def test_the_blob_is_sent_as_the_body_whatever_the_request_limit(served):
    gw, _, store = served
    event = json.dumps({"data": "x" * 400_000}).encode()  # four object-store chunks, far over the 1000-byte limit
    digest = await put(store, "hello", event)
    r = await gw.client.post(INVOKE, headers={BODY_REF: digest})
    assert r.status_code == 200
    seen = r.json()
    assert seen["body"] == event.decode() and seen["path"] == "/_fx/invoke"
    assert seen["headers"]["x-fx-body-ref"] == digest  # kept: the runtime takes such a body over its own limit
    http = await gw.client.put("/function/hello/upload", headers={BODY_REF: digest})  # HTTP calls too
    assert http.json()["body"] == event.decode() and http.json()["method"] == "PUT"
    empty = await put(store, "hello", b"")
    assert (await gw.client.post(INVOKE, headers={BODY_REF: empty})).json()["body"] == ""


async def test_unknown_foreign_and_malformed_references_are_refused_before_a_replica_sees_them(served):
    gw, replica, store = served
    unknown = "sha256:" + "0" * 64
    r = await gw.client.post(INVOKE, headers={BODY_REF: unknown})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "BlobNotFound" and error["function"] == "hello"
    assert f"PUT /system/blobs/hello/{unknown}" in error["message"] and "--blob-ttl" in error["message"]
    theirs = await put(store, "other", b'{"for": "other"}')  # uploaded for another function
    assert (await gw.client.post(INVOKE, headers={BODY_REF: theirs})).json()["error"]["code"] == "BlobNotFound"
    bad = await gw.client.post(INVOKE, headers={BODY_REF: "md5:abc"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidBodyRef"
    ours = await put(store, "hello", b"{}")
    with_body = await gw.client.post(INVOKE, headers={BODY_REF: ours}, content=b"{}")
    assert with_body.status_code == 400 and "no body of its own" in with_body.json()["error"]["message"]
    queued = await gw.client.post(INVOKE, headers={BODY_REF: ours, "X-Amz-Invocation-Type": "Event"})
    assert queued.status_code == 400 and "synchronous calls only" in queued.json()["error"]["message"]
    assert replica.requests == 0


async def test_without_nats_a_reference_is_503_and_a_plain_call_still_goes_through(gateway, replicas):
    gw = await gateway()  # never connected to NATS
    replica = await replicas()
    gw.gateway.book.apply(table(versions={"1": [replica.endpoint]}))
    r = await gw.client.post(INVOKE, headers={BODY_REF: "sha256:" + "1" * 64})
    assert r.status_code == 503 and r.json()["error"]["code"] == "BlobUnavailable"
    assert (await gw.client.post(INVOKE, content=b"{}")).status_code == 200


async def test_a_gateway_holds_at_most_its_bound_of_blobs_and_frees_them_with_their_calls(served):
    gw, _, store = served
    reader = gw.gateway.router.blobs
    event = json.dumps({"data": "y" * 50_000}).encode()
    digest = await put(store, "hello", event)
    reader.limit = len(event) - 1  # --blobs-max-bytes below this blob
    r = await gw.client.post(INVOKE, headers={BODY_REF: digest})
    assert r.status_code == 503 and "--blobs-max-bytes" in r.json()["error"]["message"]
    reader.limit = len(event)
    for _ in range(3):  # each call's blob is released with it, so the next fits again
        assert (await gw.client.post(INVOKE, headers={BODY_REF: digest})).status_code == 200
    await until(lambda: reader.held == 0)
