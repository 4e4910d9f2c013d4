"""Large arguments by reference on the real platform: f.remote, f.map and f.spawn with arguments over the
gateway's request limit, uploaded as blobs (PUT /system/blobs/NAME/DIGEST) and sent to the replica by the gateway;
unknown references, blobs of another function, async calls and callers without the token are refused."""

from __future__ import annotations

import hashlib
import os

import fx
import httpx
import pytest
from fx.protocol import BODY_REF


@pytest.fixture
def client(platform) -> fx.Client:
    with fx.Client(platform.gateway_url, platform.token, timeout=120) as c:
        yield c


def summary(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_a_20_mb_argument_and_a_map_over_large_items_return_the_right_values(client):
    @fx.function(name="summarise", memory=512, timeout=60, client=client)
    def summarise(data: bytes, tags: list) -> dict:
        return {**summary(data), "tags": tags[-2:]}

    big = os.urandom(20 * 2**20)  # over the gateway's 6 MB request limit: passed by reference
    tags = [f"tag-{i}" for i in range(100_000)]
    assert summarise.remote(big, tags) == {**summary(big), "tags": ["tag-99998", "tag-99999"]}
    assert summarise.spawn(big[:7_000_000], ["a", "b"]).get(timeout=120) == {
        **summary(big[:7_000_000]),
        "tags": ["a", "b"],
    }

    @fx.function(name="measure", memory=512, timeout=60, client=client)
    def measure(data: bytes) -> dict:
        return summary(data)

    items = [bytes([i]) * (7 * 2**20) for i in range(3)] + [b"small"]  # three by reference, one inline
    assert measure.map(items, concurrency=2, progress=False) == [summary(item) for item in items]


def test_a_reference_to_an_unknown_blob_or_another_functions_blob_is_refused_clearly(client, platform):
    @fx.function(name="first", client=client)
    def first(data: bytes) -> int:
        return len(data)

    @fx.function(name="second", client=client)
    def second(data: bytes) -> int:
        return len(data)

    first.deploy()
    second.deploy()
    unknown = "sha256:" + "0" * 64
    invoke = f"{platform.gateway_url}/2015-03-31/functions/first/invocations"
    r = httpx.post(invoke, headers={BODY_REF: unknown})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "BlobNotFound"
    assert f"no blob {unknown} for function 'first'" in error["message"]
    assert f"PUT /system/blobs/first/{unknown}" in error["message"]

    body = b'{"uploaded": "for first"}'
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    info = client.upload_blob("first", digest, body)
    assert (info.digest, info.size) == (digest, len(body))
    other = httpx.post(f"{platform.gateway_url}/function/second", headers={BODY_REF: digest})
    assert other.status_code == 404 and other.json()["error"]["code"] == "BlobNotFound"

    not_a_digest = httpx.post(invoke, headers={BODY_REF: "sha256:xyz"})
    assert (
        not_a_digest.status_code == 400 and "is not 'sha256:<64 hex digits>'" in not_a_digest.json()["error"]["message"]
    )
    with_a_body = httpx.post(invoke, headers={BODY_REF: digest}, content=b"{}")
    assert with_a_body.status_code == 400 and "no body of its own" in with_a_body.json()["error"]["message"]
    asynchronous = httpx.post(invoke, headers={BODY_REF: digest, "X-Amz-Invocation-Type": "Event"})
    assert asynchronous.status_code == 400 and "synchronous calls only" in asynchronous.json()["error"]["message"]

    with pytest.raises(fx.BadRequest, match="DigestMismatch"):
        client.upload_blob("first", "sha256:" + "1" * 64, body)
    with pytest.raises(fx.NotFound, match="FunctionNotFound"):
        client.upload_blob("nobody", digest, body)


def test_without_the_token_nobody_uploads_or_looks_for_a_blob(client, platform):
    @fx.function(name="guarded", client=client)
    def guarded(data: bytes) -> int:
        return len(data)

    guarded.deploy()
    body = b'{"secret": 1}'
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    url = f"{platform.gateway_url}/system/blobs/guarded/{digest}"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert httpx.put(url, content=body, headers=headers).status_code == 401
        assert httpx.head(url, headers=headers).status_code == 401
        assert httpx.get(url, headers=headers).status_code == 401
    with fx.Client(platform.gateway_url, "wrong") as stranger, pytest.raises(fx.Unauthorized):
        stranger.upload_blob("guarded", digest, body)
    assert httpx.head(url, headers={"Authorization": f"Bearer {platform.token}"}).status_code == 404  # none stored
    client.upload_blob("guarded", digest, body)
    assert httpx.head(url, headers={"Authorization": f"Bearer {platform.token}"}).status_code == 200
