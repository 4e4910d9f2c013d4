"""/system/blobs: request bodies uploaded for one function's calls, verified, bounded, kept for a TTL."""

from __future__ import annotations

import hashlib

import pytest
from fx.protocol import OBJ_BLOBS, blob_key
from fx_controller.controller import Controller
from fx_controller.settings import Settings
from fx_controller.state.blobs import STREAM


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.blob_max_bytes = 300_000
    settings.blob_store_max_bytes = 1_000_000
    settings.blob_ttl = 600.0
    return settings


def blob(size: int, fill: bytes = b"x") -> tuple[bytes, str]:
    data = fill * size
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


async def test_a_blob_is_stored_for_its_function_with_the_ttl_and_size_limits(admin, deployed, controller: Controller):
    await deployed("hello")
    data, digest = blob(200_000)  # more than one object-store chunk
    url = f"/system/blobs/hello/{digest}"
    assert (await admin.head(url)).status_code == 404
    r = await admin.put(url, content=data)
    assert r.status_code == 200 and r.json() == {"digest": digest, "size": len(data), "ttl": 600.0}
    assert (await admin.head(url)).status_code == 200
    js = controller._nc.jetstream()
    assert (await (await js.object_store(OBJ_BLOBS)).get(blob_key("hello", digest))).data == data
    config = (await js.stream_info(STREAM)).config
    assert (config.max_age, config.max_bytes) == (600.0, 1_000_000)

    objects = await js.object_store(OBJ_BLOBS)
    first = (await objects.get_info(blob_key("hello", digest))).nuid
    assert (await admin.put(url, content=data)).status_code == 200  # uploaded again soon after: not put again,
    assert (await objects.get_info(blob_key("hello", digest))).nuid == first  # so a call reading it goes on

    controller.blobs.ttl, controller.blobs.store_max_bytes = 60.0, 2_000_000  # the flags changed: so does the store
    assert (await admin.put(url, content=data)).status_code == 200
    config = (await js.stream_info(STREAM)).config
    assert (config.max_age, config.max_bytes) == (60.0, 2_000_000)


async def test_uploads_that_do_not_match_are_too_large_or_for_no_function_are_refused(admin, deployed):
    await deployed("hello")
    data, digest = blob(1000)
    r = await admin.put(f"/system/blobs/hello/{digest}", content=data + b"!")
    assert r.status_code == 400 and r.json()["error"]["code"] == "DigestMismatch"
    r = await admin.put("/system/blobs/hello/sha256:abc", content=data)
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidDigest"
    r = await admin.put(f"/system/blobs/nobody/{digest}", content=data)
    assert r.status_code == 404 and r.json()["error"]["code"] == "FunctionNotFound"
    big, big_digest = blob(300_001)
    r = await admin.put(f"/system/blobs/hello/{big_digest}", content=big)  # refused from its Content-Length
    assert r.status_code == 413


async def test_a_full_store_is_507_naming_the_flags(admin, deployed):
    await deployed("hello")
    for fill in (b"a", b"b", b"c", b"d"):
        data, digest = blob(290_000, fill)
        r = await admin.put(f"/system/blobs/hello/{digest}", content=data)
        if r.status_code != 200:
            break
    assert r.status_code == 507
    error = r.json()["error"]
    assert error["code"] == "BlobStoreFull" and "--blob-store-max-bytes" in error["message"]
    assert "--blob-ttl" in error["message"]


async def test_blobs_need_the_token(admin):
    _, digest = blob(10)
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        assert (await admin.put(f"/system/blobs/hello/{digest}", content=b"x", headers=headers)).status_code == 401
        assert (await admin.head(f"/system/blobs/hello/{digest}", headers=headers)).status_code == 401


def test_the_flags_have_defaults_and_knobs():
    from fx_controller.settings import parse

    defaults = parse([], {})
    assert (defaults.blob_max_bytes, defaults.blob_ttl, defaults.blob_store_max_bytes) == (64 << 20, 3600.0, 1 << 30)
    given = parse(["--blob-max-bytes", "10"], {"FX_BLOB_TTL": "5", "FX_BLOB_STORE_MAX_BYTES": "20"})
    assert (given.blob_max_bytes, given.blob_ttl, given.blob_store_max_bytes) == (10, 5.0, 20)
