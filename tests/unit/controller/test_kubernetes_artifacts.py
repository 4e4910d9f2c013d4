"""Code by content digest without image builds: the controller's artifact server hands a zip to a function
pod's runtime, which fetches it with urllib and verifies its sha256 before it extracts anything."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from pathlib import Path

import httpx
import pytest
from fx_controller.backends.kubernetes.artifact_server import ArtifactServer
from fx_runtime import artifact
from fx_runtime.faults import Fault
from nats.js.errors import ObjectNotFoundError

from tests.loopback import free_port


def make_zip() -> tuple[bytes, str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(e, c):\n    return 'fetched'\n")
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


class FakeArtifacts:
    """The controller's Artifacts: zips it has, by digest."""

    def __init__(self, root: Path, zips: dict[str, bytes]) -> None:
        self.paths = {}
        for digest, data in zips.items():
            path = root / f"{digest.replace(':', '-')}.zip"
            path.write_bytes(data)
            self.paths[digest] = path

    async def ensure_local(self, digest: str) -> Path:
        if digest not in self.paths:
            raise ObjectNotFoundError
        return self.paths[digest]


@pytest.fixture
async def served(tmp_path: Path):
    data, hexdigest = make_zip()
    port = free_port()
    server = ArtifactServer(FakeArtifacts(tmp_path, {f"sha256:{hexdigest}": data}), f"127.0.0.1:{port}")
    await server.start()
    yield f"http://127.0.0.1:{port}", hexdigest
    await server.stop()


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


async def test_an_unknown_or_malformed_digest_is_a_clear_error(served, tmp_path: Path) -> None:
    base, _ = served
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
    server = ArtifactServer(FakeArtifacts(tmp_path, {f"sha256:{hexdigest}": data}), f"127.0.0.1:{port}")
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
