"""Code zips: verified against their sha256 before anything in them is loaded, extracted once per digest."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile

from .faults import Fault

INVALID_ARTIFACT = "Runtime.InvalidArtifact"


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def prepare(artifact: str, expected_sha256: str | None, code_dir: str) -> None:
    """Make `code_dir` hold the zip's content.

    A digest-named code_dir is only ever created by renaming a finished extraction of a verified zip into
    place, so an existing one is reused as is: replicas after the first skip both hashing and unzipping.
    """
    if os.path.isdir(code_dir):
        return
    if not expected_sha256:
        raise Fault(INVALID_ARTIFACT, f"FX_ARTIFACT_SHA256 is required with FX_ARTIFACT {artifact}")
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
