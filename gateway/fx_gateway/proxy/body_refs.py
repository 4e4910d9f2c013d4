"""Calls whose body is passed by reference: `X-Fx-Body-Ref: sha256:<hex>` and no body of their own. The body is
the blob the controller stored for that function under that digest (PUT /system/blobs/NAME/DIGEST, verified
there); the gateway reads it from the NATS object store fx_blobs, which its NATS user may read but not write, and
sends it to a replica as the call's body, the header kept (the runtime then takes a body over its own limit).
Only calls that carry the header come here: the hot path pays one header lookup."""

from __future__ import annotations

import asyncio
import re
import weakref

import nats.errors
from fx.protocol import BODY_REF, OBJ_BLOBS, blob_key
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from fx_gateway.http import responses
from fx_gateway.proxy.exchange import Exchange
from fx_gateway.tasks import spawn

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # fx.models.DIGEST_RE, which the gateway cannot import (no pydantic)
STREAM = f"OBJ_{OBJ_BLOBS}"
READ_TIMEOUT_S = 30.0  # reading one blob from NATS (tens of MB: well under a second on one host)


class BlobsFull(ConnectionError):
    """This gateway holds --blobs-max-bytes of blobs already."""


class BlobReader:
    """Reads blobs on the gateway's NATS connection (`connection()`: the current one, None while there is none),
    holding at most `limit` bytes of them at once: a caller who knows a digest could otherwise make the gateway
    hold the same large blob once per call."""

    def __init__(self, connection, limit: int) -> None:
        self._connection = connection
        self._nc: NatsClient | None = None
        self._store: ObjectStore | None = None
        self.limit = limit
        self.held = 0  # bytes of blobs read or being read, until their exchanges are gone

    async def read(self, function: str, digest: str, holder: object) -> bytes | None:
        """The blob's bytes, counted against the limit until `holder` is gone; None when there is none.
        ConnectionError while NATS is away, BlobsFull over the limit."""
        nc = self._connection()
        if nc is None or not nc.is_connected:
            raise ConnectionError("NATS is not connected")
        js = nc.jetstream()
        if self._nc is not nc or self._store is None:
            self._nc, self._store = nc, ObjectStore(OBJ_BLOBS, STREAM, js)
        for _ in range(2):  # again once when its chunks went: put again meanwhile (new chunks, the old purged)
            try:
                info = await self._store.get_info(blob_key(function, digest))
            except ObjectNotFoundError:
                return None
            size = info.size or 0
            if self.held + size > self.limit:
                raise BlobsFull(
                    f"this gateway holds {self.held} bytes of blobs, {self.limit} at most (--blobs-max-bytes)"
                )
            self.held += size
            release = weakref.finalize(holder, self._release, size)
            try:
                return await self._chunks(js, info.nuid, info.chunks or 0)
            except NotFoundError:
                release()
            except BaseException:
                release()
                raise
        return None  # its chunks expired (--blob-ttl) while it was read

    def _release(self, size: int) -> None:
        self.held -= size

    async def _chunks(self, js, nuid: str, count: int) -> bytes:
        """Chunk by chunk with direct gets (one request each, no consumer): nats-py's ObjectStore.get reads through
        an ordered consumer, about half a second more for a few MB, and joins the chunks by `+=` (quadratic)."""
        chunks: list[bytes] = []
        subject, seq = f"$O.{OBJ_BLOBS}.C.{nuid}", 1
        for _ in range(count):
            msg = await js.get_msg(STREAM, seq=seq, subject=subject, next=True, direct=True)
            chunks.append(msg.data or b"")
            seq = (msg.seq or seq) + 1
        return b"".join(chunks)


class BodyRefExchange(Exchange):
    """An Exchange whose body is read from fx_blobs before it is sent; its own body must be empty."""

    __slots__ = ("__weakref__", "digest", "reader")  # the reader counts its blob until the exchange is gone

    def __init__(self, reader: BlobReader, digest: bytes, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reader = reader
        self.digest = digest.decode("latin-1")

    def begin(self) -> None:
        function = self.dispatcher.function
        if self.size:
            message = f"a call with {BODY_REF} has no body of its own: the blob it names is its body"
            self.fail(responses.error(400, "InvalidBodyRef", message, function), 400)
        elif not DIGEST.fullmatch(self.digest):
            message = f"{BODY_REF} {self.digest[:80]!r} is not 'sha256:<64 hex digits>'"
            self.fail(responses.error(400, "InvalidBodyRef", message, function), 400)
        else:
            spawn(self._read(function))

    async def _read(self, function: str) -> None:
        try:
            data = await asyncio.wait_for(self.reader.read(function, self.digest, self), READ_TIMEOUT_S)
        except BlobsFull as exc:
            self.fail(responses.error(503, "BlobUnavailable", f"{exc}; retry", function), 503)
            return
        except (ConnectionError, TimeoutError, nats.errors.Error) as exc:
            message = f"the blob {self.digest} could not be read from NATS ({exc or type(exc).__name__}); retry"
            self.fail(responses.error(503, "BlobUnavailable", message, function), 503)
            return
        if data is None:
            message = (
                f"no blob {self.digest} for function {function!r}: it was never uploaded for it, or was removed"
                f" after fx-controller --blob-ttl; upload it with PUT /system/blobs/{function}/{self.digest}"
            )
            self.fail(responses.error(404, "BlobNotFound", message, function), 404)
            return
        if self.gone:  # as a held call whose caller went away: not sent, not counted
            return
        self.size = len(data)
        self.body = [data]
        Exchange.begin(self)
