"""Test messages for a user trying a trigger (`fx publish`, `fx kv put`), published by the controller.

Only user subjects: fx.event_models refuses fx's own and NATS's ($JS, $KV, _INBOX), so the admin API cannot
be used to forge what fx's components read.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterator

import nats.errors
import nats.js.errors
from fx.event_models import KvPutResult, PublishResult, PublishSpec
from nats.aio.client import Client as NATS

from ..api.errors import ApiError

# Replies to users' test requests: apart from the controller's own inbox, which the gateways may not publish to.
REQUEST_INBOX = "_INBOX.fx-requests"
NO_RESPONDERS = "503"  # the status NATS answers a request with when nobody subscribes to its subject


def _text(data: bytes) -> tuple[str, bool]:
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


@contextlib.contextmanager
def _unconfirmed(spec: PublishSpec) -> Iterator[None]:
    """NATS not answering once the message was sent is not "unavailable, retry" (503): the message may have been
    delivered or stored, so the caller is told that a retry may deliver it twice."""
    try:
        yield
    except nats.errors.TimeoutError:
        message = (
            f"NATS did not confirm the message on {spec.subject!r} within {spec.timeout:g} s: it may have been"
            " published; publishing it again may deliver it twice"
        )
        raise ApiError(504, "PublishUnconfirmed", message) from None


class Messages:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc

    def _fits(self, data: bytes, headers: dict[str, str] | None = None) -> None:
        """nats-server closes a connection that sends more than its max_payload (headers included): refused here."""
        size = len(data) + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in (headers or {}).items())
        if size > self.nc.max_payload:
            message = f"the message is {size} bytes with its headers; NATS takes at most {self.nc.max_payload}"
            raise ApiError(413, "PayloadTooLarge", message, field="data")

    async def publish(self, spec: PublishSpec) -> PublishResult:
        data = spec.payload()
        headers = spec.headers or None
        self._fits(data, headers)
        if spec.request:
            return await self._request(spec, data, headers)
        js = self.nc.jetstream()
        try:  # asked first: a JetStream publish is a request, which a nats trigger would answer instead
            stream = await js.find_stream_name_by_subject(spec.subject)
        except nats.js.errors.NotFoundError:
            await self.nc.publish(spec.subject, data, headers=headers)
            with _unconfirmed(spec):
                await self.nc.flush(timeout=spec.timeout)
            return PublishResult(subject=spec.subject)
        with _unconfirmed(spec):
            ack = await js.publish(spec.subject, data, headers=headers, timeout=spec.timeout, stream=stream)
        return PublishResult(subject=spec.subject, stream=ack.stream, seq=ack.seq)

    async def _request(self, spec: PublishSpec, data: bytes, headers: dict[str, str] | None) -> PublishResult:
        # Not nc.request: its replies come to the controller's own inbox, which no gateway may publish to.
        inbox = f"{REQUEST_INBOX}.{uuid.uuid4().hex}"
        sub = await self.nc.subscribe(inbox, max_msgs=1)
        try:
            await self.nc.publish(spec.subject, data, reply=inbox, headers=headers)
            reply = await sub.next_msg(timeout=spec.timeout)
        except nats.errors.TimeoutError:
            raise ApiError(504, "Timeout", f"no reply on {spec.subject!r} within {spec.timeout:g} s") from None
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        if (reply.headers or {}).get("Status") == NO_RESPONDERS:
            message = f"nothing listens on {spec.subject!r} (no function's nats trigger names it?)"
            raise ApiError(404, "NoResponders", message, field="subject")
        body, binary = _text(reply.data)
        return PublishResult(subject=spec.subject, reply=body, reply_base64=binary, reply_headers=reply.headers or {})

    async def kv_put(self, bucket: str, key: str, value: str) -> KvPutResult:
        try:
            kv = await self.nc.jetstream().key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            message = f"KV bucket {bucket!r} does not exist; fx kv create {bucket}"
            raise ApiError(404, "BucketNotFound", message, field="name") from None
        data = value.encode()
        self._fits(data)
        return KvPutResult(bucket=bucket, key=key, revision=await kv.put(key, data))
