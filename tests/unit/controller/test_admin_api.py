"""The admin API as the CLI sees it: auth, validation, artifacts, deploys, describe, delete, logs."""

from __future__ import annotations

import hashlib

import httpx
from fx.protocol import artifact_key
from fx_controller.api.app import ZIP_OVERHEAD, create_app
from fx_controller.controller import Controller
from nats.js.errors import NoKeysError

from tests.waiting import until

from .conftest import make_zip, route_table


async def test_calls_without_the_right_token_get_401_telling_how_to_fix_it(admin: httpx.AsyncClient):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        r = await admin.get("/system/functions", headers=headers)
        assert r.status_code == 401
        error = r.json()["error"]
        assert error["code"] == "Unauthorized"
        assert "fx login" in error["message"] and "FX_TOKEN" in error["message"]
    assert (await admin.get("/system/functions")).status_code == 200


async def test_only_health_needs_no_token_by_default(admin: httpx.AsyncClient):
    anonymous = {"Authorization": ""}
    assert (await admin.get("/system/health", headers=anonymous)).status_code == 200
    for path in ("/metrics", "/system/openapi.json", "/system/docs"):
        r = await admin.get(path, headers=anonymous)
        assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized", path
    assert "fx_controller_deploys_total" in (await admin.get("/metrics")).text
    doc = (await admin.get("/system/openapi.json")).json()
    assert "/system/functions/{name}" in doc["paths"]
    assert (await admin.get("/system/docs")).status_code == 200


async def test_metrics_and_docs_can_be_made_public(controller: Controller):
    controller.settings.public_metrics = controller.settings.public_docs = True
    transport = httpx.ASGITransport(app=create_app(controller, "t"))
    async with httpx.AsyncClient(transport=transport, base_url="http://controller") as anonymous:
        assert "fx_controller_deploys_total" in (await anonymous.get("/metrics")).text
        assert (await anonymous.get("/system/openapi.json")).status_code == 200
        assert (await anonymous.get("/system/docs")).status_code == 200
        assert (await anonymous.get("/system/functions")).status_code == 401


class Body:
    """A request body of `chunks` MiB, counting how much of it the server pulled."""

    def __init__(self, chunks: int) -> None:
        self.chunks, self.pulled = chunks, 0

    async def __aiter__(self):
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"x" * (1 << 20)


async def test_the_token_is_checked_before_a_byte_of_the_body_is_read(admin: httpx.AsyncClient):
    body = Body(200)
    r = await admin.put("/system/functions/hello", content=body, headers={"Authorization": ""})
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
    assert body.pulled <= 1  # httpx may hand over the first chunk with the head; the server reads none


async def test_bodies_over_their_limit_are_413_from_content_length_or_once_they_outgrow_it(admin, controller):
    sized = await admin.put("/system/functions/hello", content=b"{" + b" " * (1 << 20) + b"}")
    assert sized.status_code == 413 and sized.json()["error"]["code"] == "RequestTooLarge"
    assert "1048576 bytes" in sized.json()["error"]["message"]
    body = Body(50)
    streamed = await admin.put("/system/functions/hello", content=body)  # chunked: no Content-Length
    assert streamed.status_code == 413 and body.pulled <= 3
    # Artifact uploads are bounded by the unzipped limit (1 MB in these tests) plus a zip's overhead.
    data, digest = make_zip({"handler.py": b"x = 1\n"})
    assert (await admin.put(f"/system/artifacts/{digest}", content=data)).status_code == 200
    limit = controller.settings.max_unzipped_bytes + ZIP_OVERHEAD
    big = await admin.put(f"/system/artifacts/{digest}", headers={"Content-Length": str(limit + 1)}, content=Body(1))
    assert big.status_code == 413 and str(limit) in big.json()["error"]["message"]


async def test_artifact_upload_is_stored_on_disk_and_in_the_object_store(admin, controller: Controller):
    data, digest = make_zip({"handler.py": b"x = 1\n" * 100})
    assert (await admin.head(f"/system/artifacts/{digest}")).status_code == 404
    r = await admin.put(f"/system/artifacts/{digest}", content=data)
    assert r.status_code == 200
    assert r.json() == {"digest": digest, "size": len(data), "unzipped_size": 600}
    assert (await admin.head(f"/system/artifacts/{digest}")).status_code == 200
    assert controller.artifacts.path(digest).read_bytes() == data
    objects = await controller._nc.jetstream().object_store("fx_artifacts")
    assert (await objects.get(artifact_key(digest))).data == data


async def test_artifact_whose_bytes_do_not_match_the_digest_is_refused(admin):
    data, digest = make_zip({"handler.py": b"x = 1\n"})
    r = await admin.put(f"/system/artifacts/{digest}", content=data + b"tampered")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "DigestMismatch"
    assert (await admin.head(f"/system/artifacts/{digest}")).status_code == 404


async def test_artifact_that_is_not_a_zip_is_refused(admin):
    data = b"just some text"
    r = await admin.put(f"/system/artifacts/sha256:{hashlib.sha256(data).hexdigest()}", content=data)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "InvalidArtifact"


async def test_artifact_with_more_entries_than_allowed_is_refused(admin, controller):
    controller.artifacts.max_entries = 2  # --max-artifact-entries
    data, digest = make_zip({"a.py": b"", "b.py": b"", "c.py": b""})
    r = await admin.put(f"/system/artifacts/{digest}", content=data)
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "InvalidArtifact", "message": "the artifact has 3 entries; the limit is 2"}


async def test_artifact_over_the_unzipped_limit_is_413_naming_size_and_limit(admin):
    data, digest = make_zip({"big.bin": b"\0" * (2 * 1024 * 1024)})  # compresses to a few KB; limit is 1 MB
    r = await admin.put(f"/system/artifacts/{digest}", content=data)
    assert r.status_code == 413
    error = r.json()["error"]
    assert error["code"] == "ArtifactTooLarge"
    assert "2.0 MB" in error["message"] and "1 MB" in error["message"]


async def test_artifact_with_a_path_escaping_the_code_directory_is_refused(admin):
    for evil in ("../evil.py", "/etc/evil.py", "pkg/../../evil.py"):
        data, digest = make_zip({evil: b"x = 1\n"})
        r = await admin.put(f"/system/artifacts/{digest}", content=data)
        assert r.status_code == 400, evil
        assert evil in r.json()["error"]["message"]


async def test_artifact_with_a_malformed_digest_is_refused(admin):
    r = await admin.put("/system/artifacts/md5:abc", content=b"x")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "InvalidDigest"


async def test_deploy_creates_version_1_with_all_traffic_and_publishes_its_route(admin, deployed, controller):
    result = await deployed("hello", timeout=5)
    assert result["created"] is True and result["version"] == 1
    assert "version 1" in result["message"]
    info = (await admin.get("/system/functions/hello")).json()
    assert info["latest"] == 1 and info["traffic"] == {"1": 100}
    assert info["status"] == "Ready"  # the readiness gate started one replica, kept for the idle timeout
    assert info["versions"][0]["state"] == "Ready"
    table = await route_table(controller, "hello")
    assert table is not None
    assert table.traffic == {"1": 100}
    assert table.versions["1"].endpoints == ["127.0.0.1:20001"] and table.versions["1"].concurrency == 1
    assert table.timeout_ms == 5000 and table.max_request_bytes == 6 * 1024 * 1024


async def test_identical_deploy_is_unchanged_and_a_changed_one_becomes_v2_with_the_traffic(admin, deployed, controller):
    await deployed("hello")
    before = await route_table(controller, "hello")
    again = await deployed("hello")
    assert again["created"] is False and again["version"] == 1
    assert "unchanged" in again["message"]

    changed = await deployed("hello", source=b"def handler(e, c):\n    return 2\n")
    assert changed["created"] is True and changed["version"] == 2
    info = (await admin.get("/system/functions/hello")).json()
    assert info["traffic"] == {"2": 100}
    assert [v["version"] for v in info["versions"]] == [1, 2]
    assert [v["traffic"] for v in info["versions"]] == [0, 100]
    after = await route_table(controller, "hello")
    assert after.traffic == {"2": 100} and set(after.versions) == {"1", "2"}
    assert after.revision > before.revision
    metrics = (await admin.get("/metrics")).text
    assert 'fx_controller_deploys_total{result="created"} 2.0' in metrics
    assert 'fx_controller_deploys_total{result="unchanged"} 1.0' in metrics


async def test_invalid_spec_is_400_naming_the_field(admin):
    _, digest = make_zip({"handler.py": b""})
    cases = [
        ({"scale": {"max": 0}}, "scale.max"),
        ({"handler": "nodot"}, "handler"),
        ({"env": {"_HANDLER": "x"}}, "env"),
        ({"memory": 1}, "memory"),
        ({"nats": {"publish": ["$KV.fx_routes.victim"]}}, "nats.publish"),
    ]
    for extra, field in cases:
        r = await admin.put("/system/functions/hello", json={"name": "hello", "artifact": digest, **extra})
        assert r.status_code == 400, (extra, r.text)
        error = r.json()["error"]
        assert error["code"] == "InvalidSpec" and error["field"] == field
        assert field in error["message"]


async def test_deploy_refuses_a_name_mismatch_a_bad_name_and_a_missing_artifact(admin):
    _, digest = make_zip({"handler.py": b""})
    r = await admin.put("/system/functions/hello", json={"name": "other", "artifact": digest})
    assert r.status_code == 400 and r.json()["error"]["field"] == "name"

    r = await admin.put("/system/functions/Bad_Name", json={"name": "Bad_Name", "artifact": digest})
    assert r.status_code == 400 and "DNS-1123" in r.json()["error"]["message"]

    r = await admin.put("/system/functions/hello", json={"name": "hello", "artifact": digest})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "ArtifactNotFound" and "upload it first" in error["message"]
    assert (await admin.get("/system/functions")).json() == []


async def test_a_dependency_layer_must_be_uploaded_and_a_new_one_makes_a_new_version(admin):
    code, code_digest = make_zip({"handler.py": b"def handler(e, c):\n    return 1\n"})
    layers = [make_zip({"dep/__init__.py": f"V = {n}\n".encode()}) for n in (1, 2)]
    assert (await admin.put(f"/system/artifacts/{code_digest}", content=code)).status_code == 200
    spec = {"name": "hello", "artifact": code_digest, "dependencies": layers[0][1]}
    r = await admin.put("/system/functions/hello", json=spec)
    assert r.status_code == 400 and r.json()["error"]["field"] == "dependencies"
    assert r.json()["error"]["code"] == "ArtifactNotFound"
    for data, digest in layers:
        assert (await admin.put(f"/system/artifacts/{digest}", content=data)).status_code == 200
    assert (await admin.put("/system/functions/hello", json=spec)).json()["version"] == 1
    assert not (await admin.put("/system/functions/hello", json=spec)).json()["created"]  # same code, same layer
    changed = (await admin.put("/system/functions/hello", json={**spec, "dependencies": layers[1][1]})).json()
    assert changed["created"] and changed["version"] == 2  # same code, other dependencies: a version
    r = await admin.put("/system/functions/hello", json={**spec, "dependencies": "sha256:nothex"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "dependencies"


async def test_an_image_function_is_refused_by_a_backend_without_containers_and_versioned_by_one_with(
    admin, backend, controller
):
    spec = {"name": "own", "image": "localhost/fx/own-image:1"}
    r = await admin.put("/system/functions/own", json=spec)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "ImageNotSupported" and error["field"] == "image" and "zip" in error["message"]
    assert (await admin.get("/system/functions")).json() == []

    r = await admin.put("/system/functions/own", json={**spec, "artifact": "sha256:" + "0" * 64})
    assert r.status_code == 400 and "exactly one of 'artifact'" in r.json()["error"]["message"]

    backend.runs_images = True
    first = (await admin.put("/system/functions/own", json=spec)).json()
    assert first["created"] and first["digest"] == "localhost/fx/own-image:1"
    assert not (await admin.put("/system/functions/own", json=spec)).json()["created"], "same image: unchanged"
    second = (await admin.put("/system/functions/own", json={**spec, "image": "localhost/fx/own-image:2"})).json()
    assert second["created"] and second["version"] == 2


async def test_a_runtime_the_backend_cannot_run_is_refused_naming_what_it_has_and_how_to_add_one(admin, backend):
    backend.runtimes = {"python3.11": "/usr/bin/python3.11", "provided": "/usr/bin/python3.11"}
    spec = {"name": "newer", "runtime": "python3.13", "artifact": "sha256:" + "0" * 64}
    r = await admin.put("/system/functions/newer", json=spec)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "RuntimeNotAvailable" and error["field"] == "runtime"
    assert "python3.13 is not available" in error["message"] and "it has python3.11, provided" in error["message"]
    assert "(how to add python3.13)" in error["message"]
    assert (await admin.get("/system/functions")).json() == []

    r = await admin.put("/system/functions/newer", json={**spec, "runtime": "python3.9"})
    assert r.status_code == 400 and "use one of python3.10, python3.11, python3.12, python3.13, provided" in r.text


async def test_unknown_function_is_404_naming_it(admin):
    for method in ("GET", "DELETE"):
        r = await admin.request(method, "/system/functions/ghost")
        assert r.status_code == 404
        error = r.json()["error"]
        assert error["code"] == "FunctionNotFound" and error["function"] == "ghost" and "ghost" in error["message"]
    assert (await admin.get("/system/functions/ghost/logs")).status_code == 404


async def test_delete_removes_route_replicas_and_record(admin, deployed, controller, backend):
    await deployed("hello", scale={"min": 1})
    await until(lambda: controller.fleet.count("hello", 1, "ready") == 1)
    r = await admin.delete("/system/functions/hello")
    assert r.status_code == 204
    assert await route_table(controller, "hello") is None
    assert controller.fleet.of("hello") == [] and len(backend.stopped) == 1
    assert (await admin.get("/system/functions/hello")).status_code == 404
    kv = await controller._nc.jetstream().key_value("fx_functions")
    assert await _keys(kv) == []


async def test_logs_returns_the_last_lines(admin, deployed, controller):
    await deployed("hello")
    log = controller.settings.state_dir / "logs" / "hello.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(200)))
    r = await admin.get("/system/functions/hello/logs", params={"tail": 3})
    assert r.status_code == 200 and r.text == "line 197\nline 198\nline 199\n"
    assert len((await admin.get("/system/functions/hello/logs")).text.splitlines()) == 100


async def _keys(kv) -> list[str]:
    try:
        return await kv.keys()
    except NoKeysError:
        return []


async def test_a_dry_run_deploy_meets_every_refusal_and_applies_nothing(admin, deployed, controller):
    data, digest = make_zip({"handler.py": b"def handler(e, c):\n    return 1\n"})
    spec = {"name": "hello", "artifact": digest}

    async def dry(**fields) -> httpx.Response:
        return await admin.put("/system/functions/hello", params={"dry_run": "true"}, json={**spec, **fields})

    missing = await dry()
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "artifact"
    assert (await admin.put(f"/system/artifacts/{digest}", content=data)).status_code == 200
    refusals = {
        "StreamNotFound": {"triggers": [{"jetstream": {"stream": "NOSUCH"}}]},
        "SecretNotFound": {"secrets": ["nosuch"]},
        "InvalidSpec": {"triggers": [{"schedule": "rate(0 minutes)"}]},
    }
    for code, fields in refusals.items():
        r = await dry(**fields)
        assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
    r = await admin.put("/system/functions/hello", params={"dry_run": "true", "traffic": "none"}, json=spec)
    assert r.json()["error"]["code"] == "FirstVersionNeedsTraffic"

    valid = (await dry()).json()
    assert valid["dry_run"] is True and valid["created"] is True and valid["version"] == 1
    assert (await admin.get("/system/functions")).json() == []
    assert await route_table(controller, "hello") is None
    await deployed("hello")
    again = (await dry()).json()
    assert again["dry_run"] is True and again["created"] is False and again["version"] == 1
    assert (await dry(memory=256)).json()["version"] == 2
    assert (await admin.get("/system/functions/hello")).json()["latest"] == 1
