"""The streams and KV buckets users' durable triggers read, made by the controller on the admin API's behalf.

Functions' and gateways' NATS users may not create streams (issue 11's permissions), and a user should not
need the nats CLI to try a trigger: `fx stream create` / `fx kv create` ask the controller, whose NATS user
may. Creating is idempotent (the same settings again: `created: false`); fx's own streams and buckets are
neither listed nor reachable by name (fx.event_models reserves their prefixes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import nats.js.errors
from fx.event_models import (
    RESERVED_BUCKET_PREFIX,
    RESERVED_STREAM_PREFIXES,
    BucketInfo,
    BucketSpec,
    StreamInfo,
    StreamSpec,
)
from fx.models import FunctionSpec
from fx.protocol import kv_bucket, kv_stream
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.api import StreamInfo as NatsStreamInfo

from ..api.errors import ApiError

SUBJECTS_OVERLAP = 10065  # JetStream: "subjects overlap with an existing stream"


def _stream_info(info: NatsStreamInfo, created: bool = False) -> StreamInfo:
    c, state = info.config, info.state
    return StreamInfo(
        name=c.name or "",
        subjects=list(c.subjects or []),
        messages=state.messages,
        bytes=state.bytes,
        max_age=c.max_age or 0,
        max_bytes=c.max_bytes if c.max_bytes is not None else -1,
        consumers=state.consumer_count,
        created=created,
    )


def _bucket_info(info: NatsStreamInfo, created: bool = False) -> BucketInfo:
    return BucketInfo(
        name=kv_bucket(info.config.name or "") or "",
        values=info.state.messages,
        bytes=info.state.bytes,
        history=info.config.max_msgs_per_subject or 1,
        consumers=info.state.consumer_count,
        created=created,
    )


def _reads(spec: FunctionSpec, stream: str) -> bool:
    """Whether `spec` has a durable trigger on `stream` (a bucket's stream is KV_<bucket>)."""
    for trigger in spec.triggers:
        if trigger.jetstream is not None and trigger.jetstream.stream == stream:
            return True
        if trigger.kv is not None and kv_stream(trigger.kv.bucket) == stream:
            return True
    return False


class UserStreams:
    def __init__(
        self, js: JetStreamContext, specs: Callable[[], Iterable[tuple[str, FunctionSpec]]], replicas: int = 1
    ) -> None:
        self.js = js
        self.specs = specs  # (function, spec) of every live version
        self.replicas = replicas  # copies of each stream and bucket in a JetStream cluster (FX_NATS_REPLICAS)

    async def _info(self, stream: str) -> NatsStreamInfo | None:
        try:
            return await self.js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return None

    async def _all(self) -> list[NatsStreamInfo]:
        found: list[NatsStreamInfo] = []
        while page := await self.js.streams_info(offset=len(found)):
            found += page
        return found

    def _users(self, stream: str) -> list[str]:
        return sorted({name for name, spec in self.specs() if _reads(spec, stream)})

    # --- streams ---

    async def create_stream(self, name: str, spec: StreamSpec) -> StreamInfo:
        have = await self._info(name)
        if have is not None:
            if sorted(have.config.subjects or []) != sorted(spec.subjects):
                raise ApiError(
                    409,
                    "StreamExists",
                    f"stream {name!r} exists with subjects {', '.join(have.config.subjects or [])};"
                    f" `fx stream rm {name}` first to change them",
                    field="name",
                )
            return _stream_info(have)
        config = StreamConfig(
            name=name,
            subjects=spec.subjects,
            storage=StorageType.FILE,
            max_age=spec.max_age or None,
            max_bytes=spec.max_bytes,
            num_replicas=self.replicas,
            description="made with fx stream create",
        )
        try:
            return _stream_info(await self.js.add_stream(config), created=True)
        except nats.js.errors.APIError as exc:
            if exc.err_code == SUBJECTS_OVERLAP:
                raise ApiError(
                    409,
                    "SubjectsOverlap",
                    f"subjects: {', '.join(spec.subjects)} overlap the subjects of another stream"
                    " (`fx stream ls` lists them); a message is stored by one stream only",
                    field="subjects",
                ) from None
            raise

    async def list_streams(self) -> list[StreamInfo]:
        return [_stream_info(i) for i in await self._all() if _is_user_stream(i.config.name or "")]

    async def delete_stream(self, name: str) -> None:
        await self._delete(name, f"stream {name!r}", "stream")

    # --- KV buckets ---

    async def create_bucket(self, name: str, spec: BucketSpec) -> BucketInfo:
        have = await self._info(kv_stream(name))
        if have is not None:
            return _bucket_info(have)
        config = KeyValueConfig(
            bucket=name,
            history=spec.history,
            max_bytes=spec.max_bytes,
            storage=StorageType.FILE,
            replicas=self.replicas,
        )
        await self.js.create_key_value(config)
        return _bucket_info(await self.js.stream_info(kv_stream(name)), created=True)

    async def list_buckets(self) -> list[BucketInfo]:
        streams = await self._all()
        return [_bucket_info(i) for i in streams if _is_user_bucket(i.config.name or "")]

    async def delete_bucket(self, name: str) -> None:
        await self._delete(kv_stream(name), f"KV bucket {name!r}", "kv")

    async def _delete(self, stream: str, what: str, verb: str) -> None:
        users = self._users(stream)
        if users:
            raise ApiError(
                409,
                "StreamInUse",
                f"{what} is read by the triggers of {', '.join(users)}; remove them (or the functions) first",
                field="name",
            )
        try:
            await self.js.delete_stream(stream)
        except nats.js.errors.NotFoundError:
            raise ApiError(404, "StreamNotFound", f"{what} does not exist; `fx {verb} ls` lists them") from None


def _is_user_stream(name: str) -> bool:
    return not name.lower().startswith(RESERVED_STREAM_PREFIXES)


def _is_user_bucket(stream: str) -> bool:
    bucket = kv_bucket(stream)
    return bucket is not None and not bucket.lower().startswith(RESERVED_BUCKET_PREFIX)
