"""Code zips: verified against their sha256 before anything in them is loaded, extracted once per digest."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile

from .faults import Fault

INVALID_ARTIFACT = "Runtime.InvalidArtifact"
FETCH_TIMEOUT_S = 60.0


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, artifact: str) -> None:
    """Download the zip to `artifact` (atomically); it is verified by prepare() like any other zip."""
    parent = os.path.dirname(artifact) or "."
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fetch-", dir=parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        os.replace(tmp, artifact)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise Fault(INVALID_ARTIFACT, f"Cannot fetch artifact from {url}: {getattr(e, 'reason', e)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
