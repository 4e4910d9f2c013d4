"""Typed models of the admin API, shared by the CLI/SDK and the controller.

The controller validates every request body with these models, so a bad name or
handler is refused with the same message whether it came from `fx deploy`,
a script, or (on Kubernetes) a Function resource.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from fx.names import NAME_MAX, NAME_RE, check_name
from fx.protocol import DEFAULT_RUNTIME, MEMORY_MB_MAX, MEMORY_MB_MIN, RUNTIMES, reserved_subject
from fx.schedule import check_timezone, schedule_key
from fx.schedule import parse as parse_schedule

# Patterns end in \Z, not $: "$" also matches before a trailing newline, so "hello\n" would pass.
# Lambda's handler grammar: module path (dots or slashes) then ".function".
HANDLER_RE = re.compile(r"^[A-Za-z_][\w/.-]*\.[A-Za-z_]\w*\Z")
# Keys and values together: one replica's environment, far below what a process can be given (Linux: 128 KiB a
# string, 2 MiB in all), and stored in every version's record.
ENV_MAX_BYTES = 64 * 1024
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
# [registry[:port]/]path[:tag][@sha256:digest], lower-case path components as OCI distribution requires.
IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z"
)
# An alias starts with a letter, so it can never be mistaken for a version number or $LATEST.
ALIAS_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
# A header or cookie name is an HTTP token (RFC 9110).
STICKY_RE = re.compile(r"^(header|cookie):([!#$%&'*+.^_`|~0-9A-Za-z-]+)\Z")
# Lambda reserves these; letting a user set them would break the runtime contract.
RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_EXECUTION_ENV",
    }
)


def check_alias(alias: str) -> str:
    if len(alias) > NAME_MAX or not ALIAS_RE.match(alias):
        raise ValueError(
            f"alias {alias!r} is invalid: use lower-case letters, digits and '-', starting with a letter"
            f" and ending with a letter or digit, at most {NAME_MAX} characters (e.g. 'live', 'beta')"
        )
    return alias


def check_sticky(sticky: str) -> str:
    """ "header:<name>" (the name lower-cased: headers are case-insensitive) or "cookie:<name>"."""
    match = STICKY_RE.match(sticky)
    if not match:
        raise ValueError(f"sticky {sticky!r} is not 'header:<name>' or 'cookie:<name>' (e.g. 'header:x-user-id')")
    kind, name = match.groups()
    return f"header:{name.lower()}" if kind == "header" else sticky


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScaleSpec(_Model):
    min: Annotated[int, Field(ge=0, le=100)] = 0
    max: Annotated[int, Field(ge=1, le=100)] = 10
    idle_timeout: Annotated[float, Field(gt=0, le=86400, description="seconds idle before scale to zero")] = 300
    concurrency: Annotated[int, Field(ge=0, le=1000, description="in-flight requests per replica; 0 = no limit")] = 1
    keep_warm: Annotated[
        float | None,
        Field(
            ge=0,
            le=86400,
            description="seconds a version keeps its replicas after losing traffic; default: the controller's",
        ),
    ] = None
    # Autoscaling (docs/autoscaling.md); None: the controller's default (its --flag of the same name).
    target_rps: Annotated[
        float | None, Field(gt=0, le=100_000, description="requests per second per replica; off by default")
    ] = None
    stable_window: Annotated[
        float | None, Field(ge=1, le=3600, description="seconds of load the stable average spans")
    ] = None
    panic_window_percentage: Annotated[
        float | None, Field(ge=1, le=100, description="the panic window, in percent of the stable window")
    ] = None
    panic_threshold_percentage: Annotated[
        float | None,
        Field(ge=110, le=1000, description="panic when the panic window wants this percent of the ready replicas"),
    ] = None
    scale_down_delay: Annotated[
        float | None, Field(ge=0, le=3600, description="seconds a decision to scale down must hold")
    ] = None

    @model_validator(mode="after")
    def _min_le_max(self) -> ScaleSpec:
        if self.min > self.max:
            raise ValueError(f"scale.min ({self.min}) is greater than scale.max ({self.max})")
        return self


class HttpSpec(_Model):
    event: Literal["v2", "v1", "alb"] = "v2"  # API Gateway HTTP API 2.0, REST API 1.0, ALB


# A NATS subject: dot-separated tokens of printable characters; "*" is one whole token, ">" the whole last one.
SUBJECT_TOKEN_RE = re.compile(r"^[!-~]+\Z")
MAX_TRIGGERS = 16
MAX_SECRET_REFS = 16  # secrets one function may name
# NATS refuses a protocol line over 4096 bytes by closing the connection (the controller's, a gateway's): a
# subject (or KV key) is kept well below, with room for the rest of the line ($KV.<bucket>., a reply inbox).
MAX_SUBJECT_LENGTH = 256


def shown(value: str) -> str:
    """A value for an error message: an over-long one is not echoed whole."""
    return repr(value) if len(value) <= 80 else f"{value[:40]!r}... ({len(value)} characters)"


def subject_problem(subject: str) -> str | None:
    """What is wrong with a subject (or KV key) pattern as NATS syntax, if anything."""
    tokens = subject.split(".")
    if not subject:
        return "it is empty"
    if len(subject) > MAX_SUBJECT_LENGTH:
        return f"it is longer than {MAX_SUBJECT_LENGTH} characters"
    if any(not SUBJECT_TOKEN_RE.match(t) for t in tokens):
        return "a token is empty or holds a space or a non-ASCII character"
    if any(("*" in t and t != "*") or (">" in t and t != ">") for t in tokens):
        return "'*' and '>' must be whole tokens (e.g. 'orders.*')"
    if ">" in tokens[:-1]:
        return "'>' may only be the last token"
    return None


def check_subject(subject: str) -> str:
    """A subject to subscribe to (wildcards allowed), with a message that says what is wrong."""
    problem = subject_problem(subject)
    if problem is None and (reserved_subject(subject) or subject == ">"):
        problem = "fx., $ and _INBOX. subjects (and '>') are reserved for fx and NATS"
    if problem:
        raise ValueError(f"NATS subject {shown(subject)} is invalid: {problem}; e.g. 'orders.created' or 'orders.>'")
    return subject


STREAM_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}\Z")  # a JetStream stream name: no '.', '*', '>' or spaces
KV_KEYS_RE = re.compile(r"^[-/_=.A-Za-z0-9*>]+\Z")  # NATS KV's key characters, plus wildcards


class _Durable(_Model):
    """Delivery settings shared by the durable (JetStream-backed) triggers."""

    batch: Annotated[int, Field(ge=1, le=1000, description="up to this many messages per invocation")] = 1
    window_ms: Annotated[
        int, Field(ge=0, le=300_000, description="wait up to this long to fill a batch (Lambda's batching window)")
    ] = 0
    max_in_flight: Annotated[
        int, Field(ge=1, le=1000, description="batches in flight across all gateways; 1 keeps the stream's order")
    ] = 1
    max_deliver: Annotated[int, Field(ge=1, le=100, description="deliveries of a message before its dead letter")] = 3
    backoff: Annotated[float, Field(ge=0, le=3600, description="seconds before a redelivery, doubled each time")] = 1


class JetStreamTrigger(_Durable):
    """A durable trigger: a consumer on an existing JetStream stream, at-least-once, with batching."""

    stream: str = Field(description="the stream, which must exist at deploy")
    subject: str | None = Field(default=None, description="only messages on this subject of the stream (wildcards)")

    @field_validator("stream")
    @classmethod
    def _stream(cls, v: str) -> str:
        if not STREAM_RE.match(v):
            raise ValueError(f"stream name {v!r} is invalid: use letters, digits, '-' and '_' (e.g. 'ORDERS')")
        return v

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str | None) -> str | None:
        return None if v is None else check_subject(v)


class KvTrigger(_Durable):
    """A datastore-change trigger: puts and deletes of keys in a NATS KV bucket, delivered like `jetstream`."""

    bucket: str = Field(description="the KV bucket, which must exist at deploy")
    keys: str = Field(default=">", description="key pattern, NATS wildcards allowed (e.g. 'users.*')")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not STREAM_RE.match(v):
            raise ValueError(f"KV bucket name {v!r} is invalid: use letters, digits, '-' and '_' (e.g. 'users')")
        return v

    @field_validator("keys")
    @classmethod
    def _keys(cls, v: str) -> str:
        problem = subject_problem(v) or (None if KV_KEYS_RE.match(v) else "keys use letters, digits and '-_/='")
        if problem:
            raise ValueError(f"KV key pattern {v!r} is invalid: {problem}; e.g. 'users.*' or '>'")
        return v


class TriggerSpec(_Model):
    """An event source that invokes the function: exactly one of `nats`, `jetstream`, `kv` or `schedule`."""

    nats: str | None = Field(
        default=None,
        description="NATS subject (wildcards '*' and '>' allowed): each message invokes the function once across"
        " all gateways (a queue group); a message with a reply subject gets the function's result as the reply",
    )
    jetstream: JetStreamTrigger | None = None
    kv: KvTrigger | None = None
    schedule: str | None = Field(
        default=None,
        description="'cron(0/5 * * * ? *)' (EventBridge), 'rate(5 minutes)', or Unix cron '*/5 * * * *' (an optional"
        " leading seconds field): each tick invokes the function once, asynchronously, with a Scheduled Event",
    )
    timezone: str | None = Field(default=None, description="IANA time zone of a cron schedule; default UTC")

    @field_validator("nats")
    @classmethod
    def _subject(cls, v: str | None) -> str | None:
        return None if v is None else check_subject(v)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        return None if v is None else parse_schedule(v).expression

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        return None if v is None else check_timezone(v)

    @model_validator(mode="after")
    def _one_kind(self) -> TriggerSpec:
        if [self.nats, self.jetstream, self.kv, self.schedule].count(None) != 3:
            raise ValueError(
                "a trigger has exactly one of 'nats: SUBJECT', 'jetstream: {stream: NAME, ...}', 'kv: {bucket: NAME}'"
                " or 'schedule: EXPRESSION'"
            )
        if self.schedule is None and self.timezone is not None:
            raise ValueError("timezone goes with a schedule trigger (e.g. {schedule: 'cron(0 9 * * ? *)', ...})")
        return self

    @property
    def key(self) -> str:
        """What identifies the trigger within its function."""
        if self.jetstream is not None:
            return f"{self.jetstream.stream}/{self.jetstream.subject or '>'}"
        if self.kv is not None:
            return f"kv:{self.kv.bucket}/{self.kv.keys}"
        if self.schedule is not None:
            return schedule_key(self.schedule, self.timezone)
        return self.nats  # type: ignore[return-value]


MAX_GRANT_SUBJECTS = 32


def check_grant_subject(subject: str) -> str:
    """A subject a function may be granted: as a trigger's, and with a literal first token, since a wildcard
    there ('*.activate', '*.>') would reach fx.*, $JS/$KV and _INBOX subjects."""
    if not re.fullmatch(r"[!-~]+(\.[!-~]+)*", subject):  # fullmatch: no trailing newline slips through
        raise ValueError(f"NATS subject {subject!r} is invalid: it is empty or holds a space or a control character")
    check_subject(subject)  # its length too
    first = subject.split(".", 1)[0]
    if first in ("*", ">") or first.startswith("_INBOX"):
        raise ValueError(
            f"NATS subject {subject!r} cannot be granted: its first token must be a name (not a wildcard or"
            " _INBOX), e.g. 'orders.*' rather than '*.created'"
        )
    return subject


class NatsGrant(_Model):
    """What a function's replicas may do on fx's NATS; without a grant they get no NATS credentials at all."""

    publish: list[str] = Field(
        default_factory=list, max_length=MAX_GRANT_SUBJECTS, description="subjects it may publish to (wildcards)"
    )
    subscribe: list[str] = Field(
        default_factory=list, max_length=MAX_GRANT_SUBJECTS, description="subjects it may subscribe to (wildcards)"
    )

    @field_validator("publish", "subscribe")
    @classmethod
    def _subjects(cls, v: list[str]) -> list[str]:
        return [check_grant_subject(s) for s in v]


class FunctionSpec(_Model):
    """What a deploy sends. Identical specs (same artifact digest) create no new version."""

    name: str
    handler: str = "handler.handler"
    # "provided": the code root's executable `bootstrap` serves the Lambda Runtime API (e.g. awslambdaric).
    runtime: Annotated[str, Field(json_schema_extra={"enum": list(RUNTIMES)})] = DEFAULT_RUNTIME
    artifact: str | None = Field(default=None, description="sha256:<hex> digest of an uploaded code zip")
    dependencies: str | None = Field(
        default=None,
        description="sha256:<hex> digest of an uploaded dependency layer zip (what requirements.txt installs):"
        " extracted read-only and put on sys.path after the code, as Lambda's /opt/python",
    )
    image: str | None = Field(
        default=None,
        description="instead of a zip: a container image with the code in /var/task, built FROM fx's runtime"
        " image (the kubernetes backend runs it; pods pull it with imagePullPolicy IfNotPresent)",
    )
    memory: Annotated[int, Field(ge=MEMORY_MB_MIN, le=MEMORY_MB_MAX, description="MB")] = MEMORY_MB_MIN
    timeout: Annotated[float, Field(gt=0, le=900, description="seconds")] = 3
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(
        default_factory=list,
        max_length=MAX_SECRET_REFS,
        description="fx secrets (`fx secret set NAME KEY=VALUE`) whose keys become environment variables of the"
        " replicas; values are read when a replica starts and are never part of the spec",
    )
    scale: ScaleSpec = Field(default_factory=ScaleSpec)
    http: HttpSpec = Field(default_factory=HttpSpec)
    triggers: list[TriggerSpec] = Field(default_factory=list, max_length=MAX_TRIGGERS)
    nats: NatsGrant | None = Field(
        default=None, description="NATS subjects its replicas may publish/subscribe to; none: no NATS access"
    )
    # Opt-in, as Lambda's SnapStart: replicas are forks of a process that ran the init once (local backend).
    snap_start: bool = Field(
        default=False,
        description="start replicas from a snapshot of the initialized function: init runs once per version, "
        "snapshot_restore_py hooks run; replicas of a version share /tmp and a PID namespace (local backend)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, v: str) -> str:
        if v not in RUNTIMES:
            raise ValueError(f"runtime {v!r} is not one fx runs; use one of {', '.join(RUNTIMES)}")
        return v

    @field_validator("handler")
    @classmethod
    def _handler(cls, v: str) -> str:
        if not HANDLER_RE.match(v):
            raise ValueError(
                f"handler {v!r} is not of the form 'module.function' (e.g. 'handler.handler' or 'pkg/app.main')"
            )
        return v

    @field_validator("artifact", "dependencies")
    @classmethod
    def _artifact(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and not DIGEST_RE.match(v):
            raise ValueError(f"{info.field_name} {v!r} is not a 'sha256:<64 hex digits>' digest")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None and not IMAGE_RE.match(v):
            raise ValueError(
                f"image {v!r} is not an image reference like 'registry.example.com/team/hello:1.2'"
                " or 'hello@sha256:<64 hex digits>'"
            )
        return v

    @model_validator(mode="after")
    def _one_code(self) -> FunctionSpec:
        if self.dependencies is not None and self.image is not None:
            raise ValueError("'dependencies' goes with 'artifact': an image brings its dependencies inside it")
        if (self.artifact is None) == (self.image is None):
            raise ValueError(
                "give the code as exactly one of 'artifact' (a zip's digest: fx deploy builds and uploads it)"
                " and 'image' (a container image built FROM fx's runtime image)"
            )
        return self

    @property
    def code(self) -> str:
        """What identifies the version's code: the zip's digest or the image reference."""
        return self.artifact or self.image  # type: ignore[return-value]

    @property
    def config_digest(self) -> str:
        """What identifies the rest of the spec (handler, env, memory, scale, triggers...): versions with the
        same code but another config differ here."""
        config = self.model_dump(mode="json", exclude={"artifact", "image"})
        return "sha256:" + hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()

    @field_validator("triggers")
    @classmethod
    def _triggers(cls, v: list[TriggerSpec]) -> list[TriggerSpec]:
        keys = [t.key for t in v]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"trigger {twice[0]!r} is listed twice")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not ENV_NAME_RE.match(key):
                raise ValueError(f"environment variable name {key!r} is invalid: use letters, digits and '_'")
            if key in RESERVED_ENV:
                raise ValueError(f"environment variable {key!r} is reserved by the runtime")
            if "\0" in v[key]:
                raise ValueError(f"environment variable {key!r} holds a NUL character, which no process can be given")
        size = sum(len(k.encode()) + len(value.encode()) for k, value in v.items())
        if size > ENV_MAX_BYTES:
            raise ValueError(f"environment variables are {size} bytes; at most {ENV_MAX_BYTES} (keep data in a secret)")
        return v

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, v: list[str]) -> list[str]:
        for name in v:
            check_secret_name(name)
        twice = sorted({n for n in v if v.count(n) > 1})
        if twice:
            raise ValueError(f"secret {twice[0]!r} is listed twice")
        return v


class TrafficSpec(_Model):
    """A new split: version -> percent. Versions left out (or at 0) are reachable only when pinned."""

    traffic: dict[int, int] = Field(description="version -> percent; the percents sum to 100")
    sticky: str | None = Field(
        default=None,
        description="'header:<name>' or 'cookie:<name>': a caller with that value always gets the same version;"
        " null turns it off; left out: unchanged",
    )

    @field_validator("traffic")
    @classmethod
    def _traffic(cls, v: dict[int, int]) -> dict[int, int]:
        return check_split(v)

    @field_validator("sticky")
    @classmethod
    def _sticky(cls, v: str | None) -> str | None:
        return None if v is None else check_sticky(v)


def check_split(traffic: dict[int, int]) -> dict[int, int]:
    """Weights are whole percents 0..100 summing to 100; the zeros are dropped."""
    for version, percent in traffic.items():
        if version < 1:
            raise ValueError(f"version {version} does not exist: versions are numbered from 1")
        if not 0 <= percent <= 100:
            raise ValueError(f"version {version}: weight {percent} is not a percent between 0 and 100")
    total = sum(traffic.values())
    if total != 100:
        shown = " + ".join(f"{v}={p}" for v, p in traffic.items()) or "nothing"
        raise ValueError(f"weights must sum to 100, but {shown} makes {total}")
    return {v: p for v, p in sorted(traffic.items()) if p}


class AliasSpec(_Model):
    version: Annotated[int, Field(ge=1, description="the version the alias points to")]


class PromoteSpec(_Model):
    """Give `version` all traffic: at once, or `step` percent every `interval` seconds."""

    version: Annotated[int, Field(ge=1)]
    step: Annotated[int | None, Field(ge=1, le=100, description="percent added per interval; null: at once")] = None
    interval: Annotated[float, Field(gt=0, le=86400, description="seconds between steps")] = 30
    max_error_rate: Annotated[
        float | None,
        Field(ge=0, le=1, description="roll back by itself when the version's 5xx share over an interval passes this"),
    ] = None
    min_requests: Annotated[int, Field(ge=1, description="requests an interval needs before its error rate counts")] = (
        20
    )

    @model_validator(mode="after")
    def _canary_needs_steps(self) -> PromoteSpec:
        if self.max_error_rate is not None and self.step is None:
            raise ValueError("max_error_rate needs a stepwise promote: give step (e.g. --step 10)")
        return self


class RolloutInfo(_Model):
    """A stepwise promote in progress; kept in the function record, so a restarted controller resumes it."""

    version: int
    weight: int  # the version's percent now
    step: int
    interval: float
    next_step_at: datetime
    base: dict[int, int]  # the split before the rollout: where an automatic rollback returns
    max_error_rate: float | None = None
    min_requests: int = 20


# A version takes traffic only once one of its replicas has initialised (the readiness gate):
# Pending until then, Ready after, Failed if its init failed (its traffic never moved to it).
VersionState = Literal["Pending", "Ready", "Failed"]


class InitError(_Model):
    """Why a version failed to initialise: Lambda's errorType, its message and the traceback's lines."""

    error_type: str
    message: str
    stack_trace: list[str] = Field(default_factory=list)


class VersionInfo(_Model):
    version: int
    digest: str
    config_digest: str = ""  # of the spec without the code: versions differing only in config differ here
    created_at: datetime
    spec: FunctionSpec
    state: VersionState = "Ready"
    init_error: InitError | None = None  # when state is Failed
    traffic: int = 0  # percent of unpinned traffic
    replicas_ready: int = 0
    replicas_starting: int = 0
    replicas_desired: int = 0  # the autoscaler's latest decision (docs/autoscaling.md)
    panic: bool = False  # that decision was made in panic mode
    requests: int = 0  # since the controller started
    errors: int = 0  # 5xx answers since the controller started
    aliases: list[str] = Field(default_factory=list)
    warm_until: datetime | None = None  # kept warm after losing traffic (or deployed with none) until then


class FunctionInfo(_Model):
    name: str
    latest: int
    traffic: dict[int, int]
    aliases: dict[str, int] = Field(default_factory=dict)
    # An alias's own split (the Lambda API's RoutingConfig): alias -> {version: percent}.
    alias_traffic: dict[str, dict[int, int]] = Field(default_factory=dict)
    versions: list[VersionInfo]
    status: str = "Ready"  # Ready | Scaled to zero | Starting (its first version) | Failed: <cause>
    sticky: str | None = None  # "header:<name>" / "cookie:<name>" cohorts, if any
    previous: dict[int, int] | None = None  # the split `fx rollback` returns to
    rollout: RolloutInfo | None = None
    last_rollout: str | None = None  # how the latest stepwise promote ended


class DeployResult(_Model):
    function: str
    version: int
    created: bool  # False: identical to the latest version, nothing changed
    digest: str
    message: str
    dry_run: bool = False  # True: validated only (?dry_run=true); `version`/`created` say what a deploy would do
    state: VersionState = "Ready"  # of `version`: a new one is Pending until a replica of it has initialised
    init_error: InitError | None = None
    traffic: dict[int, int] = Field(default_factory=dict)  # the function's split when this answer was made


class ArtifactInfo(_Model):
    digest: str
    size: int  # bytes, zipped
    unzipped_size: int


class BlobInfo(_Model):
    """A request body uploaded for one function's calls (PUT /system/blobs/NAME/DIGEST)."""

    digest: str
    size: int  # bytes
    ttl: float  # seconds it is kept after its upload


class ErrorDetail(_Model):
    code: str  # machine-readable, e.g. FunctionNotFound, InvalidSpec, Unauthorized
    message: str  # names what is wrong and how to fix it
    function: str | None = None
    field: str | None = None


class ErrorBody(_Model):
    """Every non-2xx JSON answer of the gateway and controller has this shape."""

    error: ErrorDetail


# --- secrets -------------------------------------------------------------------------

MAX_SECRET_KEYS = 100  # keys in one secret


def check_secret_name(name: str) -> str:
    """A secret name is a DNS-1123 label, because it becomes a Kubernetes Secret's name."""
    if len(name) > NAME_MAX or not NAME_RE.fullmatch(name):
        raise ValueError(
            f"secret name {name!r} is not a DNS-1123 label: use lower-case letters, digits and '-', starting and"
            f" ending with a letter or digit, at most {NAME_MAX} characters (e.g. 'db' or 'stripe-live')"
        )
    return name


class SecretSpec(_Model):
    """What `fx secret set` sends: the secret becomes exactly these keys (a key left out is removed)."""

    # Neither a validation error nor a repr shows the values.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    values: dict[str, str] = Field(
        repr=False,
        min_length=1,
        max_length=MAX_SECRET_KEYS,
        description="environment variable name -> value; the values are write-only: no answer ever shows them",
    )

    @field_validator("values")
    @classmethod
    def _values(cls, v: dict[str, str]) -> dict[str, str]:
        # Messages name the key, never the value.
        for key, value in v.items():
            if not ENV_NAME_RE.fullmatch(key):
                raise ValueError(
                    f"key {key!r} is not an environment variable name: use letters, digits and '_',"
                    " not starting with a digit (e.g. 'DB_PASSWORD')"
                )
            if key in RESERVED_ENV or key.startswith("FX_"):
                raise ValueError(f"key {key!r} is an environment variable of the runtime or of fx; rename it")
            if "\0" in value:
                raise ValueError(f"the value of {key!r} holds a NUL character, which no environment variable can")
        return v


class SecretInfo(_Model):
    """A secret as the admin API shows it: its keys, never its values."""

    name: str
    keys: list[str]
    updated_at: datetime
    used_by: list[str] = Field(
        default_factory=list, description="functions whose live versions (traffic, alias, latest) reference it"
    )
