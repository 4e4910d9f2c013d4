"""A warm pool member (python -m fx_runtime.pool) becomes a replica in place: one specialize request with the
replica environment, answered when the handler is loaded and listening; a bad handler is an init error."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.loopback import free_port


def zipped(source: str, tmp_path: Path) -> tuple[Path, str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", source)
    path = tmp_path / "code.zip"
    path.write_bytes(buf.getvalue())
    return path, hashlib.sha256(buf.getvalue()).hexdigest()


@pytest.fixture
def member(tmp_path: Path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fx_runtime.pool"],
        env={"FX_LISTEN": f"127.0.0.1:{port}", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            assert httpx.get(f"{base}/_fx/health").json() == {"status": "pool"}
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the pool member never listened"
            time.sleep(0.02)
    yield base, port, proc
    proc.kill()
    proc.wait(5)


def replica_env(tmp_path: Path, port: int, source: str) -> dict[str, str]:
    path, hexdigest = zipped(source, tmp_path)
    return {
        "_HANDLER": "handler.handler",
        "AWS_LAMBDA_FUNCTION_NAME": "hello",
        "FX_ARTIFACT": str(path),
        "FX_ARTIFACT_SHA256": hexdigest,
        "FX_CODE_DIR": str(tmp_path / "code" / hexdigest),
        "FX_LISTEN": f"127.0.0.1:{port}",
    }


def test_a_pool_member_specialises_into_a_replica(member, tmp_path: Path) -> None:
    base, port, _ = member
    env = replica_env(tmp_path, port, "def handler(e, c):\n    return {'name': c.function_name}\n")
    started = time.perf_counter()
    answer = httpx.post(f"{base}/_fx/specialize", json={"env": env}, timeout=30)
    took = time.perf_counter() - started
    assert answer.status_code == 200 and answer.json()["event"] == "ready"
    assert took < 2.0  # no interpreter start: the code's import only
    assert httpx.post(f"{base}/_fx/invoke", content=b"{}").json() == {"name": "hello"}


def test_a_bad_handler_is_an_init_error_and_the_member_exits(member, tmp_path: Path) -> None:
    base, port, proc = member
    env = replica_env(tmp_path, port, "import nothing_by_this_name\n")
    answer = httpx.post(f"{base}/_fx/specialize", json={"env": env}, timeout=30)
    assert answer.status_code == 500
    assert answer.json()["errorType"] == "Runtime.ImportModuleError"
    assert proc.wait(10) == 1


def test_anything_else_is_refused(member) -> None:
    base, _, _ = member
    assert httpx.post(f"{base}/_fx/specialize", json={"env": {"A": 1}}).status_code == 400
    assert httpx.get(f"{base}/_fx/other").status_code == 404


def test_an_idle_member_stops_at_once_on_sigterm(member) -> None:
    _, _, proc = member
    proc.terminate()
    assert proc.wait(2) == 0  # as PID 1 in a pod it would otherwise wait out the grace period
