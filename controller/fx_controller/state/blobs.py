"""Request bodies passed by reference (the SDK's large arguments): uploaded for one function, verified against
their sha256, kept in the NATS object store fx_blobs for a while (`ttl`) and within a total (`store_max_bytes`).
The gateway reads them (X-Fx-Body-Ref) and sends them as the body to that function's replicas; nothing here or
there unpickles them. The store is opened (made, its limits set) at each upload, so one NATS lost is made again."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from fx.models import DIGEST_RE, BlobInfo
from fx.protocol import OBJ_BLOBS, blob_key
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig
from nats.js.errors import APIError, BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.object_store import ObjectStore

from ..api.errors import ApiError

STREAM = f"OBJ_{OBJ_BLOBS}"


class Blobs:
    def __init__(
        self,
        js: JetStreamContext,
        known: Callable[[str], bool],
        max_bytes: int,
        ttl: float,
        store_max_bytes: int,
        replicas: int = 1,
    ) -> None:
        self._js = js
        self._known = known  # whether a function of that name exists
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.store_max_bytes = store_max_bytes
        self.replicas = replicas  # copies in a JetStream cluster (FX_NATS_REPLICAS)

    async def exists(self, function: str, digest: str) -> bool:
        """Whether the blob is there with more than half its TTL left: a call naming it now will find it."""
        self._check(function, digest)
        return await self._fresh(blob_key(function, digest))

    async def store(self, function: str, digest: str, chunks: AsyncIterator[bytes]) -> BlobInfo:
        """Read the upload (up to max_bytes) while hashing, verify it, then put it whole."""
        self._check(function, digest)
        sha = hashlib.sha256()
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self.max_bytes:
                raise ApiError(
                    413,
                    "BlobTooLarge",
                    f"a blob may hold {self.max_bytes} bytes (fx-controller --blob-max-bytes)",
                    function=function,
                )
            sha.update(chunk)
            parts.append(chunk)
        if "sha256:" + sha.hexdigest() != digest:
            raise ApiError(
                400, "DigestMismatch", f"the uploaded bytes have sha256 {sha.hexdigest()}, not the {digest} named"
            )
        store = await self._open()
        key = blob_key(function, digest)
        if await self._fresh(key):  # the same bytes, with more than half their time left: not put again
            return BlobInfo(digest=digest, size=size, ttl=self.ttl)
        try:
            await store.put(key, b"".join(parts))
        except APIError as exc:
            if "maximum bytes" not in str(exc.description):
                raise
            raise ApiError(
                507,
                "BlobStoreFull",
                f"the blob store is full ({self.store_max_bytes} bytes, fx-controller --blob-store-max-bytes):"
                f" blobs are removed {self.ttl:g} s after their upload (--blob-ttl); try again later",
                function=function,
            ) from exc
        return BlobInfo(digest=digest, size=size, ttl=self.ttl)

    async def _fresh(self, key: str) -> bool:
        """Whether the blob was put less than half the TTL ago. Putting it again would give it new chunks and
        purge the old ones, which a call of a concurrent upload of the same bytes may be reading."""
        meta = f"$O.{OBJ_BLOBS}.M.{base64.urlsafe_b64encode(key.encode()).decode()}"
        try:
            msg = await self._js.get_last_msg(STREAM, meta)
        except NotFoundError:
            return False
        age = datetime.now(UTC) - msg.time if msg.time else timedelta.max
        return age < timedelta(seconds=self.ttl / 2)

    def _check(self, function: str, digest: str) -> None:
        if not DIGEST_RE.match(digest):
            raise ApiError(400, "InvalidDigest", f"blob digest {digest!r} is not 'sha256:<64 hex digits>'")
        if not self._known(function):
            raise ApiError(404, "FunctionNotFound", f"function {function!r} does not exist", function=function)

    async def _open(self) -> ObjectStore:
        """fx_blobs with this controller's limits and copies: made when missing, updated when they changed."""
        js = self._js
        try:
            store = await js.object_store(OBJ_BLOBS)
        except (BucketNotFoundError, NotFoundError):
            config = ObjectStoreConfig(ttl=self.ttl, max_bytes=self.store_max_bytes, replicas=self.replicas)
            try:
                return await js.create_object_store(OBJ_BLOBS, config)
            except BadRequestError:  # made meanwhile by another controller
                return await js.object_store(OBJ_BLOBS)
        config = (await js.stream_info(STREAM)).config
        wanted = (self.ttl, self.store_max_bytes, self.replicas)
        if (config.max_age, config.max_bytes, config.num_replicas) != wanted:
            window = min(config.duplicate_window or self.ttl, self.ttl)  # NATS: never longer than the max age
            changed = dataclasses.replace(
                config,
                max_age=self.ttl,
                max_bytes=self.store_max_bytes,
                num_replicas=self.replicas,
                duplicate_window=window,
            )
            await js.update_stream(changed)
        return store
