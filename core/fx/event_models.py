"""Admin-API models of the event verbs: dead letters (/system/dlq), user streams and KV buckets
(/system/streams, /system/kv) and the platform's status (/system/status)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from fx.models import MAX_SUBJECT_LENGTH, STREAM_RE, _Model, check_name, check_subject, shown
from fx.protocol import DLQ_LIST_DEFAULT as DLQ_LIST_DEFAULT  # the admin API's, re-exported for the controller
from fx.protocol import PUBLISH_TIMEOUT_DEFAULT

# Names fx's own streams and buckets use (FX_ASYNC, FX_DLQ, KV_fx_*, OBJ_fx_*) or that JetStream gives the
# streams behind buckets: a user's stream is created under none of them, so it can never shadow fx's.
RESERVED_STREAM_PREFIXES = ("fx_", "kv_", "obj_")
RESERVED_BUCKET_PREFIX = "fx_"
DLQ_LIST_MAX = 10_000
REDRIVE_BATCH = 1000  # letters one redrive call of `function` or `all` judges: its answer comes in seconds
# JetStream keeps sizes, ages (in nanoseconds) and sequences as 64-bit integers: a larger value is a 400 here,
# not an OverflowError or a BadRequestError (500s) on the way to NATS.
INT64_MAX = 2**63 - 1
STREAM_MAX_AGE = 100 * 365 * 86400  # seconds (a century; JetStream's limit is ~292 years of nanoseconds)
STREAM_SUBJECTS_MAX = 32
LetterId = Annotated[int, Field(ge=1, le=INT64_MAX)]


class DeadLetter(_Model):
    """One dead letter, as `fx dlq ls` shows it; `id` is its sequence in the FX_DLQ stream."""

    id: int
    function: str
    source: Literal["async", "jetstream", "kv"]  # an async call, or a record of a durable trigger
    error: str  # the function's errorType, or the platform's error code
    message: str
    status: int  # HTTP status of the last attempt (0: none was made)
    attempts: int
    time: datetime  # when it was dead-lettered
    call_id: str | None = None  # async calls: the X-Fx-Call-Id the caller got
    stream: str | None = None  # durable triggers: where the record came from
    subject: str | None = None


class DeadLetterDetail(DeadLetter):
    """`fx dlq show`: the letter with every header and the stored body (text, or base64 when binary)."""

    headers: dict[str, str]
    body: str
    body_base64: bool = False


class RedriveSpec(_Model):
    """Which letters to re-enqueue: exactly one of `ids`, `function` or `all`; with `function` or `all`, those
    from id `start` to id `end` (default: the last there is when the redrive begins), a batch a call."""

    ids: Annotated[list[LetterId] | None, Field(max_length=DLQ_LIST_MAX)] = None
    function: str | None = None
    all: bool = False
    start: LetterId = 1
    end: LetterId | None = None

    @field_validator("function")
    @classmethod
    def _function(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v)

    @model_validator(mode="after")
    def _one(self) -> RedriveSpec:
        chosen = [self.ids is not None, self.function is not None, self.all]
        if sum(chosen) != 1:
            raise ValueError("name exactly one of: ids, function, all")
        return self


class RedriveFailure(_Model):
    id: int
    reason: str


class RedriveResult(_Model):
    """Letters re-accepted (and removed from the DLQ), and those left in it with the reason; `next`: the call
    that redrives the rest, when there were more letters than one call takes (REDRIVE_BATCH)."""

    redriven: list[DeadLetter]
    failed: list[RedriveFailure]
    next: RedriveSpec | None = None


def _check_stream_name(name: str, what: str, example: str) -> str:
    if not STREAM_RE.match(name):
        raise ValueError(f"{what} name {name!r} is invalid: use letters, digits, '-' and '_' (e.g. {example!r})")
    return name


class StreamSpec(_Model):
    """A user stream for `jetstream` triggers: what `fx stream create` sends."""

    subjects: Annotated[
        list[str], Field(min_length=1, max_length=STREAM_SUBJECTS_MAX, description="subjects it stores, e.g. orders.>")
    ]
    max_age: Annotated[
        float, Field(ge=0, le=STREAM_MAX_AGE, description="seconds a message is kept; 0: until a limit")
    ] = 0
    max_bytes: Annotated[
        int, Field(ge=-1, le=INT64_MAX, description="bytes kept, oldest dropped first; -1: unlimited")
    ] = -1

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, subjects: list[str]) -> list[str]:
        return [check_subject(subject) for subject in subjects]


class StreamInfo(_Model):
    name: str
    subjects: list[str]
    messages: int
    bytes: int
    max_age: float
    max_bytes: int
    consumers: int
    created: bool = False  # True when this call created it


class BucketSpec(_Model):
    """A user KV bucket for `kv` triggers: what `fx kv create` sends."""

    history: Annotated[int, Field(ge=1, le=64, description="values kept per key")] = 1
    max_bytes: Annotated[int, Field(ge=-1, le=INT64_MAX, description="bytes kept; -1: unlimited")] = -1


class BucketInfo(_Model):
    name: str
    values: int  # stored values, every key's history and deletions included
    bytes: int
    history: int
    consumers: int  # one per kv trigger watching it, once a gateway has started it
    created: bool = False


def check_stream_name(name: str) -> str:
    _check_stream_name(name, "stream", "ORDERS")
    if name.lower().startswith(RESERVED_STREAM_PREFIXES):
        raise ValueError(f"stream name {name!r} is reserved (FX_*, KV_*, OBJ_* are fx's and JetStream's)")
    return name


def check_bucket_name(name: str) -> str:
    _check_stream_name(name, "KV bucket", "users")
    if name.lower().startswith(RESERVED_BUCKET_PREFIX):
        raise ValueError(f"KV bucket name {name!r} is reserved (fx_* are fx's own)")
    return name


class PlatformStatus(_Model):
    """`fx status`: what an operator needs to find and reach the platform's parts."""

    version: str  # the controller's
    backend: str
    functions: int
    nats_url: str  # as the controller reaches it
    nats_creds: str | None = None  # embedded mode: the admin's credentials file on the platform's host
    state_bytes: dict[str, int] | None = None  # embedded mode: the state dir on disk by kind, measured each minute


PUBLISH_TIMEOUT_MAX = 60.0
PUBLISH_HEADERS_MAX = 64
# A NATS header: a name as HTTP's (no ':', no spaces), a value on one line (a CR or LF would end it and start a
# header the caller made up, e.g. Nats-Msg-Id).
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}\Z")
HEADER_VALUE_RE = re.compile(r"^[^\r\n\x00]*\Z")


def check_publish_subject(subject: str) -> str:
    """A subject to publish on: NATS syntax, no wildcards, none of fx's or NATS's own."""
    if "*" in subject.split(".") or ">" in subject.split("."):
        raise ValueError(f"NATS subject {subject!r} is invalid: a message is published on one subject, no wildcards")
    return check_subject(subject)


class PublishSpec(_Model):
    """A test message, as `fx publish` sends it: what a producer of the user's would publish."""

    subject: str
    data: str = ""
    base64: bool = False  # data is base64 (a binary payload)
    headers: dict[str, str] = Field(default_factory=dict)
    request: bool = False  # wait for one reply, as `nats req` does (a NATS trigger answers with the result)
    timeout: Annotated[float, Field(gt=0, le=PUBLISH_TIMEOUT_MAX)] = PUBLISH_TIMEOUT_DEFAULT

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str) -> str:
        return check_publish_subject(v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        if len(headers) > PUBLISH_HEADERS_MAX:
            raise ValueError(f"{len(headers)} headers: at most {PUBLISH_HEADERS_MAX}")
        for name, value in headers.items():
            if not HEADER_NAME_RE.match(name):
                raise ValueError(f"header name {shown(name)} is invalid: letters, digits and !#$%&'*+.^_`|~- only")
            if not HEADER_VALUE_RE.match(value):
                raise ValueError(f"the value of header {name!r} holds a line break or NUL")
        return headers

    @model_validator(mode="after")
    def _data(self) -> PublishSpec:
        if self.base64:
            try:
                base64.b64decode(self.data, validate=True)
            except binascii.Error as e:
                raise ValueError(f"data is not base64 ({e}), yet base64 is true") from None
        return self

    def payload(self) -> bytes:
        return base64.b64decode(self.data) if self.base64 else self.data.encode()


class PublishResult(_Model):
    subject: str
    stream: str | None = None  # the stream that stored it; None: core NATS, delivered to whoever listened
    seq: int | None = None
    reply: str | None = None  # with `request`: the reply's body (text, or base64 when binary)
    reply_base64: bool = False
    reply_headers: dict[str, str] = Field(default_factory=dict)


KV_KEY_RE = re.compile(r"^[-/_=A-Za-z0-9]+(\.[-/_=A-Za-z0-9]+)*\Z")  # NATS KV's key rules, no wildcards


def check_kv_key(key: str) -> str:
    if len(key) > MAX_SUBJECT_LENGTH:  # its subject is $KV.<bucket>.<key>
        raise ValueError(f"KV key {shown(key)} is longer than {MAX_SUBJECT_LENGTH} characters")
    if not KV_KEY_RE.match(key) or key.startswith("_kv"):
        raise ValueError(f"KV key {key!r} is invalid: use letters, digits, '-_/=' and '.' between them (e.g. 'eu.ann')")
    return key


class KvPutSpec(_Model):
    value: str


class KvPutResult(_Model):
    bucket: str
    key: str
    revision: int
