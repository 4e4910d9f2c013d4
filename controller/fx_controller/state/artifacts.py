"""Code zips: uploaded once, verified, stored on disk and in the NATS object store fx_artifacts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import re
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

from fx.models import DIGEST_RE, ArtifactInfo
from fx.protocol import artifact_key
from fx.state_dir import private
from fx_runtime.artifact import MAX_ENTRIES, entry_problem
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from ..api.errors import DISK_FULL, ApiError, disk_full


def _epoch(mtime: str | None) -> float:
    """NATS's RFC 3339 time (nanoseconds, Z) in epoch seconds; now when it has none."""
    if not mtime:
        return time.time()
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", mtime).replace("Z", "+00:00")).timestamp()


def _check_digest(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise ApiError(400, "InvalidDigest", f"artifact digest {digest!r} is not 'sha256:<64 hex digits>'")
    return digest


def _escapes_root(name: str) -> bool:
    path = name.replace("\\", "/")
    return path.startswith("/") or (len(path) > 1 and path[1] == ":") or posixpath.normpath(path).startswith("..")


def inspect_zip(path: Path, limit: int, max_entries: int = MAX_ENTRIES) -> int:
    """Unzipped size of a code zip; refuses non-zips, zip-slip paths, special files, links out of the tree,
    more than `max_entries` entries and archives over `limit` bytes."""
    try:
        with zipfile.ZipFile(path) as zf:
            entries = zf.infolist()
            problem = entry_problem(zf, max_entries)
    except (zipfile.BadZipFile, OSError) as e:
        raise ApiError(400, "InvalidArtifact", f"the uploaded artifact is not a valid zip file: {e}") from e
    if problem:
        raise ApiError(400, "InvalidArtifact", problem)
    for entry in entries:
        if _escapes_root(entry.filename):
            raise ApiError(400, "InvalidArtifact", f"zip entry {entry.filename!r} points outside the code directory")
    size = sum(entry.file_size for entry in entries)
    if size > limit:
        raise ApiError(
            413,
            "ArtifactTooLarge",
            f"the artifact unzips to {size / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB",
        )
    return size


class Artifacts:
    def __init__(
        self, root: Path, objects: ObjectStore, max_unzipped_bytes: int, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.root = root
        self._objects = objects
        self._limit = max_unzipped_bytes
        self.max_entries = max_entries
        private(root)

    def path(self, digest: str) -> Path:
        return self.root / f"{artifact_key(digest)}.zip"

    async def exists(self, digest: str) -> bool:
        if self.path(_check_digest(digest)).exists():
            return True
        try:
            await self._objects.get_info(artifact_key(digest))
        except NotFoundError:
            return False
        return True

    async def ensure_local(self, digest: str) -> Path:
        """The zip on this host's disk, fetched from the object store when another host uploaded it."""
        path = self.path(digest)
        if not path.exists():
            result = await self._objects.get(artifact_key(digest))
            await asyncio.to_thread(self._write_atomically, path, result.data or b"")
        return path

    async def restore(self, digests: set[str]) -> list[str]:
        """Upload again the zips of `digests` this host has on disk (the object store lost them); returns the
        digests it has no copy of."""
        missing = []
        for digest in sorted(digests):
            path = self.path(digest)
            try:
                await self._objects.get_info(artifact_key(digest))
                continue
            except NotFoundError:
                pass
            if not path.exists():
                missing.append(digest)
                continue
            with path.open("rb") as f:
                await self._objects.put(artifact_key(digest), f)
        return missing

    async def stored(self) -> dict[str, float]:
        """digest -> when it was stored or released (epoch seconds, the latest), of every zip on this host's disk
        or in the object store."""
        found = {}
        for path in self.root.glob("sha256-*.zip"):
            with contextlib.suppress(FileNotFoundError):
                found["sha256:" + path.name.removeprefix("sha256-").removesuffix(".zip")] = path.stat().st_mtime
        try:
            # shielded: a list cancelled halfway leaves its watcher subscribed, and the NATS drain then hangs
            infos = await asyncio.shield(self._objects.list())
        except NotFoundError:  # an empty store
            infos = []
        for info in infos:
            if DIGEST_RE.match(digest := info.name.replace("-", ":", 1)) and not info.deleted:
                found[digest] = max(found.get(digest, 0.0), _epoch(info.mtime))
        return found

    async def remove(self, digest: str) -> None:
        """The zip from the object store, then from this host's disk (a copy on disk is put back by restore())."""
        with contextlib.suppress(NotFoundError):
            await self._objects.delete(artifact_key(digest))
        self.path(digest).unlink(missing_ok=True)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)  # left only when the write failed (a full disk)

    async def store(self, digest: str, chunks: AsyncIterator[bytes]) -> ArtifactInfo:
        """Stream the upload to a temp file while hashing; verify; then publish it atomically."""
        hexdigest = _check_digest(digest).split(":", 1)[1]
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        tmp = Path(tmp_name)
        try:
            sha = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self._limit:  # a zip is never bigger than what it unzips to, plus headers
                        raise ApiError(
                            413, "ArtifactTooLarge", f"the artifact is over the limit of {self._limit / 2**20:.0f} MB"
                        )
                    sha.update(chunk)
                    f.write(chunk)
            if sha.hexdigest() != hexdigest:
                raise ApiError(
                    400,
                    "DigestMismatch",
                    f"the uploaded bytes have sha256 {sha.hexdigest()}, not the {hexdigest} named in the URL",
                )
            unzipped = await asyncio.to_thread(inspect_zip, tmp, self._limit, self.max_entries)
            with tmp.open("rb") as f:
                await self._objects.put(artifact_key(digest), f)
            os.replace(tmp, self.path(digest))
        except OSError as exc:
            if exc.errno in DISK_FULL:  # a write() error names no file: say where
                raise disk_full(self.root, exc.strerror) from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return ArtifactInfo(digest=digest, size=size, unzipped_size=unzipped)
