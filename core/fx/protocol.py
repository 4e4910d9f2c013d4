"""The wire protocols between fx components, in one place.

Stdlib only: the gateway imports this on its start path and the runtime never
imports it at all (the runtime's side of the replica protocol is restated in
fx_runtime so that it stays dependency-free). See ARCHITECTURE.md for prose.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# --- NATS names ---------------------------------------------------------------

KV_FUNCTIONS = "fx_functions"  # embedded-mode function store: key = function name
KV_ROUTES = "fx_routes"  # route tables the gateways follow: key = function name
KV_SECRETS = "fx_secrets"  # secret values: key = secret name; read and written by the controller alone
KV_CREDENTIALS = "fx_credentials"  # the Lambda API's SigV4 access keys: key = access key id; the controller's alone
OBJ_ARTIFACTS = "fx_artifacts"  # code zips: key = "sha256-<hex>"
OBJ_BLOBS = "fx_blobs"  # request bodies passed by reference (BODY_REF): key = blob_key(function, digest)
SUBJECT_ACTIVATE = "fx.activate"  # request-reply: gateway asks for a ready replica
SUBJECT_LOAD = "fx.load"  # gateway load reports, published every LOAD_REPORT_INTERVAL_S
SUBJECT_USAGE = "fx.usage"  # request-reply: a gateway's billed usage not yet acknowledged (UsageReport)
KV_USAGE = "fx_usage"  # billed usage per hour: key = "<hour since the epoch>.<function>.<version>"; controller's
KV_APIS = "fx_apis"  # API routes (fx.api_models.ApiSpec as JSON) the gateways follow: key = API name
LOAD_REPORT_INTERVAL_S = 1.0
KV_STREAM_PREFIX = "KV_"  # NATS KV keeps bucket B in stream KV_B, its keys on subjects $KV.B.<key>
# Subjects no caller, trigger or grant may name: fx's own (activation, load, async calls, dead letters) and
# NATS's ($JS/$KV/$O/$SYS APIs, _INBOX replies). Compared in any case, to be safe rather than exact.
RESERVED_SUBJECT_PREFIXES = ("fx.", "$", "_inbox.")


def reserved_subject(subject: str) -> bool:
    lower = subject.lower()
    return lower == "fx" or lower.startswith(RESERVED_SUBJECT_PREFIXES)


def kv_stream(bucket: str) -> str:
    """The stream that holds a KV bucket."""
    return KV_STREAM_PREFIX + bucket


def kv_bucket(stream: str) -> str | None:
    """The bucket a stream holds, None if it holds none."""
    return stream[len(KV_STREAM_PREFIX) :] if stream.startswith(KV_STREAM_PREFIX) else None


def kv_subject(bucket: str, keys: str) -> str:
    """The subject of `keys` (a key or a pattern of keys) in a bucket's stream."""
    return f"$KV.{bucket}.{keys}"


def kv_key(subject: str) -> str:
    """kv_subject's inverse: the key (or pattern of keys) a subject of a bucket's stream names."""
    return subject.split(".", 2)[2]  # bucket names have no dots


# --- runtimes -----------------------------------------------------------------

# What `runtime:` may name: the Python a handler runs on, or "provided" (the code's own `bootstrap`). Each
# backend says which of these it can run (an interpreter found on the host, an image configured).
PYTHON_RUNTIMES = ("python3.10", "python3.11", "python3.12", "python3.13")
RUNTIMES = (*PYTHON_RUNTIMES, "provided")
DEFAULT_RUNTIME = "python3.11"


def runtime_version(runtime: str) -> tuple[int, int] | None:
    """(3, 12) for "python3.12"; None for "provided"."""
    if runtime not in PYTHON_RUNTIMES:
        return None
    major, minor = runtime.removeprefix("python").split(".")
    return int(major), int(minor)


# --- gateway -> replica (HTTP/1.1 keep-alive) ---------------------------------

REPLICA_INVOKE_PATH = "/_fx/invoke"  # POST raw event -> raw result (Lambda Invoke semantics)
REPLICA_HEALTH_PATH = "/_fx/health"  # GET -> 200 once init is done: the Kubernetes readiness probe
REPLICA_HTTP_PREFIX = "/_fx/http"  # + the caller's path: an HTTP trigger invocation
FUNCTION_ERROR_HEADER = "X-Amz-Function-Error"  # set on raw invokes whose handler failed
REPLICA_TOKEN = "X-Fx-Replica-Token"  # the version's token, on every request (a caller's own is dropped)
# First header line of a replica's answer to an invocation its handler ran: "<duration ms> <memory MB>", the
# REPORT line's numbers. The gateway reads it for the handler-duration and billing metrics and strips it.
REPLICA_REPORT = "X-Fx-Report"
MEMORY_MB_MIN, MEMORY_MB_MAX = 128, 10240  # a function's memory, as Lambda allows it (FunctionSpec.memory)
# Set by the gateway alone (a caller's own are dropped); the handler sees neither:
INVOKED_QUALIFIER = "X-Fx-Qualifier"  # the version or alias the caller named: the end of the invoked ARN
RUNS_AS_LATEST = "X-Fx-Latest"  # "1": the call named no version (or $LATEST) and runs the newest, Lambda's $LATEST
REQUEST_ID = "X-Fx-Request-Id"  # the invocation's aws_request_id, when the gateway chose it (an async call's id)

# --- callers -> gateway: request headers the gateway consumes -------------------

PIN_VERSION = "X-Fx-Version"  # a version or alias, when the path names none (same name as CALLBACK_VERSION)
CALLBACK_URL = "X-Callback-Url"  # an async call's outcome is POSTed there
CALLBACK_SUBJECT = "X-Fx-Callback-Subject"  # ... or published there


# --- async invocations (JetStream) ----------------------------------------------
# A call accepted on /async-function/NAME or the Invoke API with X-Amz-Invocation-Type: Event is stored
# in STREAM_ASYNC on "fx.async.<function>" before the caller gets its 202. The message's data is the
# request body; its headers are the caller's end-to-end HTTP headers plus the ASYNC_* headers below.
# Gateways share one durable pull consumer (CONSUMER_ASYNC), so each call is taken by one gateway.

STREAM_ASYNC = "FX_ASYNC"  # work-queue retention: a call leaves the stream when acked
CONSUMER_ASYNC = "fx-async"
STREAM_DLQ = "FX_DLQ"  # dead letters of async calls and of durable (JetStream) triggers
# Defaults of the admin API that `fx --help` shows: here, stdlib-only, and not in fx.event_models (pydantic).
DLQ_LIST_DEFAULT = 100  # dead letters one /system/dlq listing returns
PUBLISH_TIMEOUT_DEFAULT = 5.0  # seconds /system/publish waits for a reply or a stream's ack
ASYNC_CALL_ID = "Fx-Async-Call-Id"
ASYNC_FUNCTION = "Fx-Async-Function"
ASYNC_QUALIFIER = "Fx-Async-Qualifier"  # version or alias the caller pinned, if any
ASYNC_METHOD = "Fx-Async-Method"
ASYNC_TARGET = "Fx-Async-Target"  # the replica path: REPLICA_INVOKE_PATH, or REPLICA_HTTP_PREFIX + path?query
ASYNC_CALLBACK_URL = "Fx-Async-Callback-Url"  # from the caller's X-Callback-Url
ASYNC_CALLBACK_SUBJECT = "Fx-Async-Callback-Subject"  # from the caller's X-Fx-Callback-Subject
# Sent by the async worker to the replica with an HTTP-trigger call (never passed on from a caller): a function
# error is then answered with Lambda's error shape rather than the opaque 502, so the dead letter names it.
ERROR_DETAIL = "X-Fx-Error-Detail"
# Sent by the gateway with an InvokeWithResponseStream call (never passed on from a caller): the replica answers in
# the event-stream framing, a streaming handler's chunks as they come.
RESPONSE_STREAM = "X-Fx-Response-Stream"
# Sent by the gateway with a request that came through an API route (never passed on from a caller): compact JSON
# of the route's context (routeKey, resource, pathParameters, stage, ...), from which the replica builds the event.
ROUTE_CONTEXT = "X-Fx-Route"
# Added to a dead letter, beside every header of the stored call:
DEAD_ERROR = "Fx-Error"  # code: the function's errorType, or the gateway's error code
DEAD_MESSAGE = "Fx-Error-Message"  # one line, at most 1 KB
DEAD_STATUS = "Fx-Status"  # HTTP status of the last attempt (0: none was made); same name as REPLY_STATUS
DEAD_ATTEMPTS = "Fx-Attempts"
# ... and to a durable trigger's dead letter, which keeps the message's own headers too:
DEAD_SUBJECT = "Fx-Subject"  # where the message was published
DEAD_STREAM = "Fx-Stream"
DEAD_SEQUENCE = "Fx-Sequence"  # its sequence in that stream

# Sent with an async call's result to its callback (URL or subject):
CALL_ID = "X-Fx-Call-Id"  # on the 202 that accepted the call, to the replica that runs it, to its callback
CALLBACK_FUNCTION = "X-Fx-Function"
CALLBACK_STATUS = "X-Fx-Function-Status"  # the HTTP status of the last attempt
CALLBACK_OUTCOME = "X-Fx-Outcome"  # "success" or "failure"
CALLBACK_ATTEMPTS = "X-Fx-Attempts"
CALLBACK_VERSION = "X-Fx-Version"  # the version that answered
CALLBACK_ERROR = "X-Fx-Error"  # on failure: the error code

ASYNC_PREFIX = "fx.async."
DEAD_LETTER_PREFIX = "fx.dlq."
ASYNC_SUBJECTS = ASYNC_PREFIX + ">"  # every function's async calls: STREAM_ASYNC's subjects
DEAD_LETTER_SUBJECTS = DEAD_LETTER_PREFIX + ">"  # every function's dead letters: STREAM_DLQ's subjects


def async_subject(function: str) -> str:
    return ASYNC_PREFIX + function


def dead_letter_subject(function: str) -> str:
    return DEAD_LETTER_PREFIX + function


def dead_letter_function(subject: str) -> str:
    """dead_letter_subject's inverse."""
    return subject.removeprefix(DEAD_LETTER_PREFIX)


# --- NATS triggers --------------------------------------------------------------
# The reply a NATS-triggered invocation sends when its message has a reply subject. The status shares its
# wire name with DEAD_STATUS (both documented as `Fx-Status`), but it is this invocation's status.
REPLY_STATUS = "Fx-Status"
REPLY_FUNCTION_ERROR = "Fx-Function-Error"  # on failure: Unhandled, Handled, or Platform (the gateway's own)


# --- API routes (KV_APIS) ----------------------------------------------------------
# The paths the gateway serves itself, each with everything under it: an API route there is refused at deploy, so
# `/function/NAME/...`, the admin API, Lambda's API and the metrics keep working whatever routes are deployed.
GATEWAY_PATHS = (
    "/function",
    "/async-function",
    "/system",
    "/2015-03-31",
    "/2016-08-19",
    "/2021-11-15",
    "/metrics",
    "/healthz",
)


def gateway_path(path: str) -> str | None:
    """The gateway's own path `path` is (or is under), if any."""
    return next((p for p in GATEWAY_PATHS if path == p or path.startswith(p + "/")), None)


def artifact_key(digest: str) -> str:
    """Object-store key for a "sha256:<hex>" digest (':' is not allowed in keys)."""
    return digest.replace(":", "-", 1)


# A function call whose body is a blob uploaded before (PUT /system/blobs/NAME/sha256:<hex>): it carries
# `X-Fx-Body-Ref: sha256:<hex>` and no body; the gateway sends the blob as the body, the header kept.
BODY_REF = "X-Fx-Body-Ref"


def blob_key(function: str, digest: str) -> str:
    """Object-store key of a blob uploaded for `function`: only that function's calls can name it."""
    return f"{function}/{artifact_key(digest)}"


# --- controller -> gateways: route tables (KV_ROUTES) --------------------------


@dataclass
class VersionRoute:
    """One immutable version as the gateway sees it."""

    endpoints: list[str] = field(default_factory=list)  # "host:port" of READY replicas only
    concurrency: int = 1  # max in-flight requests per replica; 0 = unlimited
    token: str = ""  # the replica token the gateway sends as X-Fx-Replica-Token; "" = none
    # The version's next replica, prepared before it is needed (local backend, snap_start: a template's spare): with
    # no replica to take a request, the gateway sends it there, which makes it a replica, instead of asking the
    # controller for an activation. "" = none. One out of date refuses the connection (activation then).
    standby: str = ""


@dataclass
class TriggerRoute:
    """An event source a gateway subscribes to for a function.

    kind "nats": a core NATS subject. kind "jetstream": a durable consumer on `stream` (filtered by `subject`
    when set), with the batching and redelivery settings of fx.models.JetStreamTrigger. kind "kv": the same
    on a KV bucket's stream (`stream` kv_stream(bucket), `subject` kv_subject(bucket, keys)), from new changes on.
    kind "schedule": `schedule` (an fx.schedule expression) in `timezone`; each tick becomes one async call.
    """

    kind: str
    subject: str = ""
    stream: str = ""
    batch: int = 1
    window_ms: int = 0
    max_in_flight: int = 1
    max_deliver: int = 3
    backoff: float = 1.0
    schedule: str = ""
    timezone: str = ""


@dataclass
class RouteTable:
    """Everything a gateway needs to route one function. Published on every change.

    `traffic` maps version -> percent and sums to 100; versions absent from it get
    traffic only when pinned (by version number or alias).
    """

    function: str
    revision: int  # strictly increasing per function; gateways drop older tables
    traffic: dict[str, int]
    versions: dict[str, VersionRoute]
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version
    # An alias with a split of its own (Lambda's RoutingConfig): alias -> {version: percent}, summing to 100.
    alias_traffic: dict[str, dict[str, int]] = field(default_factory=dict)
    timeout_ms: int = 3000  # function timeout; the gateway's backstop adds a grace
    max_request_bytes: int = 6 * 1024 * 1024
    hold_timeout_ms: int | None = None  # per-function override of the gateway default
    hold_queue: int | None = None  # per-function override of the gateway default
    # Sticky cohorts: "header:<name>" or "cookie:<name>". A request carrying that value is
    # given a version by a stable hash of it (the same user always lands on the same
    # version for a given split); without it, the weighted random choice applies.
    sticky: str | None = None
    # The triggers of the versions that take traffic; their events are routed by the same weights.
    triggers: list[TriggerRoute] = field(default_factory=list)

    def to_json(self) -> bytes:
        raw = asdict(self)
        for route in raw["versions"].values():
            if not route["standby"]:  # as the release before wrote it: its gateways read a table with no such key
                del route["standby"]
        return json.dumps(raw, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> RouteTable:
        raw = json.loads(data)
        raw["versions"] = {v: VersionRoute(**r) for v, r in raw["versions"].items()}
        raw["triggers"] = [TriggerRoute(**t) for t in raw.get("triggers", ())]
        return cls(**raw)


# --- gateway -> controller -----------------------------------------------------


@dataclass
class ActivationRequest:
    """Sent on SUBJECT_ACTIVATE when a version has no ready replica and requests wait."""

    function: str
    version: str
    queued: int = 1  # requests the asking gateway holds for this version
    held_ms: float = 0.0  # how long the oldest of them waited before this was sent: a cold start's queueing

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ActivationRequest:
        return cls(**json.loads(data))


@dataclass
class ActivationReply:
    """The controller answers once a replica is ready, or once it knows it will not be.

    On failure `status` is the HTTP status the held requests get (502 when the
    replica failed to start, 503 when it could not be scheduled) and `error` /
    `cause` say why, e.g. error="Runtime.ImportModuleError",
    cause="Unable to import module 'handler': No module named 'requests'".
    """

    ok: bool
    endpoints: list[str] = field(default_factory=list)
    status: int = 200
    error: str = ""
    cause: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ActivationReply:
        return cls(**json.loads(data))


def load_report_key(function: str, version: str) -> str:
    """A version's key in LoadReport.versions (and in the controller's load totals)."""
    return f"{function}/{version}"


@dataclass
class VersionLoad:
    in_flight: int = 0  # proxied requests awaiting a replica's answer, now
    queued: int = 0  # requests held waiting for a replica, now
    requests: int = 0  # requests completed since the previous report
    errors: int = 0  # of those, answered with a 5xx


@dataclass
class UsageReport:
    """Sent on SUBJECT_USAGE; the controller adds it to the current hour and replies once it is stored, and only
    then does the gateway count it as reported (else it is sent again with the next one)."""

    gateway: str
    versions: dict[str, tuple[int, int]]  # load_report_key -> (invocations, billed MB-milliseconds)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> UsageReport:
        raw = json.loads(data)
        return cls(raw["gateway"], {k: (int(v[0]), int(v[1])) for k, v in raw["versions"].items()})


@dataclass
class LoadReport:
    """Published by every gateway on SUBJECT_LOAD. Keys of `versions` are load_report_key(function, version)."""

    gateway: str
    versions: dict[str, VersionLoad]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> LoadReport:
        raw = json.loads(data)
        return cls(raw["gateway"], {k: VersionLoad(**v) for k, v in raw["versions"].items()})


# --- API keys (`fx apikey`): controller <-> gateways ---------------------------

KV_API_KEYS = "fx_api_keys"  # API keys the gateways follow: key = key name, value fx.api_key_models.ApiKeyRecord
KV_API_USAGE = "fx_api_usage"  # requests per API key and UTC day: key = "<key id>.<day>"; the controller's alone
SUBJECT_API_KEY_USAGE = "fx.apikeys.usage"  # request-reply, every gateway every --api-usage-interval


@dataclass
class ApiKeyUsageReport:
    """A gateway's requests per API key not yet acknowledged; sent even when empty, since the reply is how the
    gateway learns the quotas used elsewhere and how many gateways share each rate."""

    gateway: str
    interval: float  # seconds between this gateway's reports: it counts as live for a few of them
    counts: list[tuple[str, int, int]]  # (key id, UTC day since the epoch, requests admitted)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ApiKeyUsageReport:
        raw = json.loads(data)
        counts = [(str(key), int(day), int(n)) for key, day, n in raw["counts"]]
        return cls(str(raw["gateway"]), float(raw["interval"]), counts)


@dataclass
class ApiKeyUsageReply:
    """Sent once the report is stored: the gateways live now, and the totals of the keys with a quota."""

    gateways: int  # gateways that reported lately, the asking one included: each enforces rate / gateways
    day: int  # the controller's UTC day since the epoch, which `used` counts
    used: dict[str, tuple[int, int]]  # key id -> (requests that day, that month)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ApiKeyUsageReply:
        raw = json.loads(data)
        used = {str(k): (int(v[0]), int(v[1])) for k, v in raw["used"].items()}
        return cls(max(1, int(raw["gateways"])), int(raw["day"]), used)
