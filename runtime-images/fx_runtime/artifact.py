"""Code zips: verified against their sha256 before anything in them is loaded, extracted once per digest."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile

from .faults import Fault

INVALID_ARTIFACT = "Runtime.InvalidArtifact"
FETCH_TIMEOUT_S = 60.0
UNAVAILABLE_S = 20.0


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, artifact: str, unavailable_for: float = UNAVAILABLE_S) -> None:
    """Download the zip to `artifact` (atomically); it is verified by prepare() like any other zip.

    A server that is not there yet (refused, 502-504) is tried again for `unavailable_for` seconds: a
    controller that has just started serves its artifacts a moment after it starts function pods."""
    parent = os.path.dirname(artifact) or "."
    os.makedirs(parent, exist_ok=True)
    deadline, pause = time.monotonic() + unavailable_for, 0.1
    while True:
        try:
            _download(url, artifact, parent)
            return
        except (urllib.error.URLError, OSError, ValueError) as e:
            if not _unavailable(e) or time.monotonic() + pause > deadline:
                raise Fault(INVALID_ARTIFACT, f"Cannot fetch artifact from {url}: {getattr(e, 'reason', e)}") from None
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _download(url: str, artifact: str, parent: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        os.replace(tmp, artifact)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _unavailable(error: Exception) -> bool:
    if isinstance(error, urllib.error.HTTPError):
        return error.code in (502, 503, 504)
    reason = getattr(error, "reason", error)
    return isinstance(reason, ConnectionRefusedError | ConnectionResetError)


def prepare(artifact: str, expected_sha256: str | None, code_dir: str, url: str | None = None) -> None:
    """Make `code_dir` hold the zip's content, fetching the zip from `url` first when it is not on disk.

    A digest-named code_dir is only ever created by renaming a finished extraction of a verified zip into
    place, so an existing one is reused as is: replicas after the first skip both hashing and unzipping.
    """
    if os.path.isdir(code_dir):
        return
    if not expected_sha256:
        raise Fault(INVALID_ARTIFACT, f"FX_ARTIFACT_SHA256 is required with FX_ARTIFACT {artifact}")
    if url and not os.path.exists(artifact):
        fetch(url, artifact)
    try:
        actual = sha256_of(artifact)
    except OSError as e:
        raise Fault(INVALID_ARTIFACT, f"Cannot read artifact {artifact}: {e.strerror}") from None
    if actual != expected_sha256:
        raise Fault(INVALID_ARTIFACT, f"Artifact {artifact} has sha256 {actual}, expected {expected_sha256}")
    parent = os.path.dirname(code_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".extract-", dir=parent)
    try:
        _extract(artifact, staging)
        os.rename(staging, code_dir)
    except OSError:
        # Another replica of the same digest won the rename: its extraction is as good as ours.
        if not os.path.isdir(code_dir):
            raise
    except zipfile.BadZipFile as e:
        raise Fault(INVALID_ARTIFACT, f"Artifact {artifact} is not a valid zip: {e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(artifact: str, target: str) -> None:
    with zipfile.ZipFile(artifact) as zf:
        for info in zf.infolist():
            path = zf.extract(info, target)  # zipfile strips absolute paths and '..'
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)  # keep executable bits of bundled binaries
