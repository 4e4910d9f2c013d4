"""Code by content digest without image builds: the controller's artifact server hands a zip to a function
pod's runtime, which fetches it with urllib and verifies its sha256 before it extracts anything. Only a pod of
a version with that digest (known by its address from the pod watch) gets it; here the pod is 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from pathlib import Path

import httpx
import pytest
from fx_controller.backends.kubernetes.artifact_server import ArtifactServer
from fx_controller.backends.kubernetes.pod_access import PodAccess
from fx_controller.backends.kubernetes.pods import PodState
from fx_runtime import artifact
from fx_runtime.faults import Fault

from tests.loopback import free_port
from tests.unit.controller.fake_artifacts import FakeArtifacts


def make_zip() -> tuple[bytes, str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(e, c):\n    return 'fetched'\n")
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def pod_here(digest: str, **kw) -> PodState:
    """The pod at 127.0.0.1 as the watch reports it."""
    return PodState("fx-hello-v1-abc", "hello", 1, ip="127.0.0.1", ready=True, digest=digest, **kw)


@pytest.fixture
async def controller(tmp_path: Path):
    data, hexdigest = make_zip()
    port = free_port()
    access = PodAccess(unknown_wait=0.3)
    server = ArtifactServer(FakeArtifacts(tmp_path, {f"sha256:{hexdigest}": data}), f"127.0.0.1:{port}", access)
    await server.start()
    yield f"http://127.0.0.1:{port}", hexdigest, access
    await server.stop()


@pytest.fixture
def served(controller):
    base, hexdigest, access = controller
    access.observe("ADDED", pod_here(f"sha256:{hexdigest}"))
    return base, hexdigest


async def test_the_runtime_fetches_verifies_and_extracts_a_served_zip(served, tmp_path: Path) -> None:
    base, hexdigest = served
    code_dir = tmp_path / "pod" / "code" / hexdigest
    zip_path = tmp_path / "pod" / f"sha256-{hexdigest}.zip"
    url = f"{base}/artifacts/sha256-{hexdigest}.zip"
    await asyncio.to_thread(artifact.prepare, str(zip_path), hexdigest, str(code_dir), url)
    assert "fetched" in (code_dir / "handler.py").read_text()
    assert sorted(p.name for p in zip_path.parent.iterdir()) == ["code", zip_path.name]  # no temp file left


async def test_a_zip_that_does_not_match_its_digest_is_refused_before_extraction(served, tmp_path: Path) -> None:
    base, hexdigest = served
    code_dir = tmp_path / "pod" / "code" / ("0" * 64)
    url = f"{base}/artifacts/sha256-{hexdigest}.zip"  # a real zip, but the pod was told another digest
    with pytest.raises(Fault) as caught:
        await asyncio.to_thread(artifact.prepare, str(tmp_path / "pod" / "a.zip"), "0" * 64, str(code_dir), url)
    assert caught.value.error_type == "Runtime.InvalidArtifact" and f"expected {'0' * 64}" in caught.value.message
    assert not code_dir.exists()


async def test_an_unknown_or_malformed_digest_is_a_clear_error(controller, tmp_path: Path) -> None:
    base, _, access = controller
    access.observe("ADDED", pod_here(f"sha256:{'1' * 64}"))  # a pod whose code the store does not have
    async with httpx.AsyncClient(base_url=base) as http:
        missing = await http.get(f"/artifacts/sha256-{'1' * 64}.zip")
        bad = await http.get("/artifacts/../../etc/passwd")
        worse = await http.get("/artifacts/sha256-XYZ.zip")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ArtifactNotFound"
    assert bad.status_code == 404
    assert worse.status_code == 400
    with pytest.raises(Fault, match="Cannot fetch artifact"):
        await asyncio.to_thread(
            artifact.prepare,
            str(tmp_path / "x.zip"),
            "1" * 64,
            str(tmp_path / "code" / ("1" * 64)),
            f"{base}/artifacts/sha256-{'1' * 64}.zip",
        )


async def test_a_controller_that_is_not_serving_yet_is_waited_for_briefly(tmp_path: Path) -> None:
    """A restarted controller starts function pods a moment before its artifact server is reachable."""
    data, hexdigest = make_zip()
    port = free_port()
    access = PodAccess()
    access.observe("ADDED", pod_here(f"sha256:{hexdigest}"))
    server = ArtifactServer(FakeArtifacts(tmp_path, {f"sha256:{hexdigest}": data}), f"127.0.0.1:{port}", access)
    url = f"http://127.0.0.1:{port}/artifacts/sha256-{hexdigest}.zip"
    fetching = asyncio.create_task(asyncio.to_thread(artifact.fetch, url, str(tmp_path / "pod" / "a.zip")))
    await asyncio.sleep(0.5)  # refused meanwhile
    assert not fetching.done()
    await server.start()
    try:
        await asyncio.wait_for(fetching, 10)
        assert (tmp_path / "pod" / "a.zip").read_bytes() == data
    finally:
        await server.stop()

    with pytest.raises(Fault, match="Connection refused"):  # and not for ever
        await asyncio.to_thread(artifact.fetch, url, str(tmp_path / "b.zip"), 0.3)


async def test_code_goes_only_to_the_pods_of_its_version(controller) -> None:
    base, hexdigest, access = controller
    path = f"/artifacts/sha256-{hexdigest}.zip"
    async with httpx.AsyncClient(base_url=base) as http:
        unknown = await http.get(path)  # no pod at this address: refused once the watch had its chance
        access.observe("ADDED", pod_here(f"sha256:{'cd' * 32}"))
        other = await http.get(path)  # a pod of another function's version
        access.observe("MODIFIED", pod_here(f"sha256:{hexdigest}"))
        own = await http.get(path)
        access.observe("DELETED", pod_here(f"sha256:{hexdigest}"))
        access.observe("ADDED", PodState("fx-pool-x", "", 0, ip="127.0.0.1", ready=True, pool=True))
        idle = await http.get(path)  # an idle pool pod runs nothing
    assert [r.status_code for r in (unknown, other, own, idle)] == [403, 403, 200, 403]
    assert unknown.json()["error"]["code"] == "Forbidden"


async def test_a_pod_the_watch_has_not_reported_yet_is_waited_for(controller) -> None:
    base, hexdigest, access = controller
    async with httpx.AsyncClient(base_url=base) as http:
        asking = asyncio.create_task(http.get(f"/artifacts/sha256-{hexdigest}.zip"))
        await asyncio.sleep(0.1)
        access.observe("ADDED", pod_here(f"sha256:{hexdigest}"))
        assert (await asking).status_code == 200


async def test_a_pool_pod_gets_its_assignment_once_and_then_only_that_code(controller) -> None:
    base, hexdigest, access = controller
    access.observe("ADDED", PodState("fx-pool-x", "", 0, ip="127.0.0.1", ready=True, pool=True))
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/pool/assignment")).status_code == 404  # nobody is specialising it
        env = {"_HANDLER": "handler.handler", "FX_ARTIFACT_SHA256": hexdigest}
        access.assign("127.0.0.1", env, {"/tmp/fx-nats.creds": "a NATS user"})
        first = await http.get("/pool/assignment")
        again = await http.get("/pool/assignment")
        own = await http.get(f"/artifacts/sha256-{hexdigest}.zip")
        other = await http.get(f"/artifacts/sha256-{'cd' * 32}.zip")
        access.finish("127.0.0.1")
        after = await http.get(f"/artifacts/sha256-{hexdigest}.zip")  # still labelled a pool pod: nothing
    assert first.json() == {"env": env, "files": {"/tmp/fx-nats.creds": "a NATS user"}}
    assert again.status_code == 404 and again.json()["error"]["code"] == "NoAssignment"
    assert (own.status_code, other.status_code, after.status_code) == (200, 403, 403)
