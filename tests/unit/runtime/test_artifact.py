"""Code zips are verified before anything in them runs, and extracted once per digest."""

import hashlib
import os
import socket
import stat
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from fx_runtime import artifact
from fx_runtime.faults import Fault

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


def test_a_dependency_layer_is_verified_extracted_and_imported_after_the_code(start, tmp_path: Path):
    code = make_zip(tmp_path / "code.zip", {"handler.py": "import dep\ndef handler(e, c):\n    return dep.WHERE\n"})
    layer = make_zip(tmp_path / "layer.zip", {"dep.py": "WHERE = 'layer'\n", "handler.py": "raise SystemExit(9)\n"})
    env = {
        "FX_ARTIFACT": str(tmp_path / "code.zip"),
        "FX_ARTIFACT_SHA256": code,
        "FX_CODE_DIR": str(tmp_path / "code" / code),
        "FX_LAYER": str(tmp_path / "layer.zip"),
        "FX_LAYER_SHA256": layer,
        "FX_LAYER_DIR": str(tmp_path / "code" / layer),
    }
    replica = start(**env)  # the code's handler.py wins over the layer's
    assert httpx.post(f"{replica.base}/_fx/invoke", content=b"{}").json() == "layer"
    assert artifact.sealed(str(tmp_path / "code" / layer))

    (tmp_path / "layer.zip").write_bytes((tmp_path / "layer.zip").read_bytes() + b"\0")
    tampered = start(wait=False, **{**env, "FX_LAYER_DIR": str(tmp_path / "other")})
    assert tampered.wait_exit() == 1
    assert "[ERROR] Runtime.InvalidArtifact: Artifact" in tampered.log_text() and not (tmp_path / "other").exists()


def test_the_extracted_tree_is_sealed_and_a_tampered_one_is_extracted_again(tmp_path: Path):
    with zipfile.ZipFile(tmp_path / "code.zip", "w") as zf:
        zf.writestr("handler.py", HANDLER)
        tool = zipfile.ZipInfo("bin/tool")
        tool.external_attr = (stat.S_IFREG | stat.S_ISUID | 0o777) << 16
        zf.writestr(tool, "#!/bin/sh\n")
    digest = hashlib.sha256((tmp_path / "code.zip").read_bytes()).hexdigest()
    code = tmp_path / "code" / digest
    artifact.prepare(str(tmp_path / "code.zip"), digest, str(code))
    modes = {p.relative_to(code).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in code.rglob("*")}
    assert modes == {"handler.py": 0o444, "bin": 0o555, "bin/tool": 0o555}  # no setuid, nothing writable
    assert stat.S_IMODE(code.stat().st_mode) == 0o555 and artifact.sealed(str(code))

    # Someone opened the tree up and changed the code: it is not trusted, the verified zip is extracted again.
    os.chmod(code, 0o755)
    os.chmod(code / "handler.py", 0o644)
    (code / "handler.py").write_text("def handler(e, c):\n    return 'tampered'\n")
    artifact.prepare(str(tmp_path / "code.zip"), digest, str(code))
    assert (code / "handler.py").read_text() == HANDLER and artifact.sealed(str(code))
    assert sorted(p.name for p in code.parent.iterdir()) == [digest]  # nothing stale left behind

    with zipfile.ZipFile(tmp_path / "fifo.zip", "w") as zf:
        fifo = zipfile.ZipInfo("pipe")
        fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
        zf.writestr(fifo, "")
    fifo_digest = hashlib.sha256((tmp_path / "fifo.zip").read_bytes()).hexdigest()
    with pytest.raises(Fault, match="zip entry 'pipe' is a fifo"):
        artifact.prepare(str(tmp_path / "fifo.zip"), fifo_digest, str(tmp_path / "code" / fifo_digest))


def test_a_tree_another_replica_placed_meanwhile_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Replicas of functions sharing a zip start at once: a tree another one sealed after this one first looked
    is in use (its replica imports from it) and must not be discarded and extracted again."""
    digest = make_zip(tmp_path / "code.zip", {"handler.py": HANDLER})
    code = tmp_path / "code" / digest
    real_sealed, placed = artifact.sealed, []

    def the_other_replica_wins(path: str) -> bool:
        if not placed:  # this replica looks first and sees nothing; the other one places its tree right after
            placed.append(None)
            artifact.prepare(str(tmp_path / "code.zip"), digest, path)
            placed[0] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)  # as the other replica's working directory
            return False
        return real_sealed(path)

    monkeypatch.setattr(artifact, "sealed", the_other_replica_wins)
    artifact.prepare(str(tmp_path / "code.zip"), digest, str(code))
    in_use = os.fstat(placed[0])
    os.close(placed[0])
    assert in_use.st_nlink > 0, "the tree a replica runs from was deleted"
    assert os.path.samestat(in_use, os.stat(code)) and (code / "handler.py").read_text() == HANDLER
    assert sorted(p.name for p in code.parent.iterdir()) == [digest]


def test_a_zip_with_too_many_entries_is_refused(tmp_path: Path):
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as zf:
        for i in range(4):
            zf.writestr(f"f{i}.py", "")
    with zipfile.ZipFile(tmp_path / "many.zip") as zf:
        assert artifact.entry_problem(zf, 3) == "the artifact has 4 entries; the limit is 3"
        assert artifact.entry_problem(zf, 4) is None


def test_a_server_that_drops_the_first_connections_is_fetched_from_as_soon_as_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A new pod's first connections may be dropped until the cluster's NetworkPolicy engine admits it. A full
    accept queue drops SYNs the same way: a plain connect would wait for the kernel's retransmission (1 s); a new
    process's knocks (50 ms each) find the server soon after it answers (0.3 s here)."""
    monkeypatch.setattr(artifact, "_STARTED", time.monotonic())  # this process: a new pod's runtime
    make_zip(tmp_path / "code.zip", {"handler.py": HANDLER})
    data = (tmp_path / "code.zip").read_bytes()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())  # the queue is full: further SYNs are dropped
    fetched: list[float] = []

    def fetch() -> None:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/a.zip"
        artifact.fetch(url, str(tmp_path / "pod" / "a.zip"))
        fetched.append(time.monotonic())

    began = time.monotonic()
    fetching = threading.Thread(target=fetch)
    fetching.start()
    time.sleep(0.3)
    answering = time.monotonic()
    listener.listen(128)  # from now on it answers every connection
    filler.close()
    listener.settimeout(0.1)
    try:
        while fetching.is_alive() and time.monotonic() - answering < 10:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                if conn.recv(65536).startswith(b"GET "):  # the filler and a knock send nothing, and close
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(data))
                    conn.sendall(data)
        fetching.join(5)
    finally:
        listener.close()
    assert (tmp_path / "pod" / "a.zip").read_bytes() == data
    assert fetched[0] - answering < 0.5, f"fetched {fetched[0] - began:.2f} s after it began, {answering - began:.2f} s"
