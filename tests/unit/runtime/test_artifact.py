"""Code zips are verified before anything in them runs, and extracted once per digest."""

import hashlib
import zipfile
from pathlib import Path

import httpx

HANDLER = "def handler(e, c):\n    return 'from the zip'\n"


def make_zip(path: Path, files: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_zip_is_verified_extracted_and_served(start, tmp_path: Path):
    digest = make_zip(tmp_path / "code.zip", {"handler.py": HANDLER})
    code_dir = tmp_path / "state" / "code" / digest
    env = {"FX_ARTIFACT": str(tmp_path / "code.zip"), "FX_ARTIFACT_SHA256": digest, "FX_CODE_DIR": str(code_dir)}
    replica = start(**env)
    assert httpx.post(f"{replica.base}/_fx/invoke", content=b"{}").json() == "from the zip"
    assert (code_dir / "handler.py").read_text() == HANDLER
    assert [p.name for p in code_dir.parent.iterdir()] == [digest]  # no staging directory left behind
    # A second replica reuses the extraction, even if the zip is gone by then.
    (tmp_path / "code.zip").unlink()
    second = start(**env)
    assert httpx.post(f"{second.base}/_fx/invoke", content=b"{}").json() == "from the zip"


def test_sha256_mismatch_is_refused_before_any_code_runs(start, tmp_path: Path):
    make_zip(tmp_path / "code.zip", {"handler.py": "open('ran', 'w')\ndef handler(e, c):\n    return 1\n"})
    code_dir = tmp_path / "state" / "code" / "x"
    replica = start(
        wait=False,
        FX_ARTIFACT=str(tmp_path / "code.zip"),
        FX_ARTIFACT_SHA256="sha256:" + "0" * 64,
        FX_CODE_DIR=str(code_dir),
    )
    assert replica.wait_exit() == 1
    log = replica.log_text()
    assert "[ERROR] Runtime.InvalidArtifact: Artifact" in log and "expected " + "0" * 64 in log
    assert not code_dir.exists() and not list(tmp_path.rglob("ran"))
