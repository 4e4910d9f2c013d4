"""fx-gateway's settings: command-line flags, each with an FX_* environment variable as its default."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from fx.flags import option

from fx_gateway.events.callback_policy import CallbackPolicy


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: str | None = None  # the gateway's NATS user (.creds file); None: NATS without auth
    nats_replicas: int = 1  # copies of the async-call streams in a JetStream cluster, as the controller makes them
    host: str = "127.0.0.1"
    port: int = 8080
    controller_host: str = "127.0.0.1"
    controller_port: int = 8081
    hold_timeout: float = 30.0  # seconds a request may wait for a replica
    hold_queue: int = 1000  # held requests per version
    replica_retries: int = 1  # times a request whose replica was lost may be sent again (proxy.replica_loss)
    max_request_bytes: int = 6 * 1024 * 1024  # ceiling on every route table's own limit
    gateway_id: str = ""
    drain_timeout: float = 10.0  # seconds in-flight requests get on SIGTERM
    routes_wait: float = 5.0  # seconds the listener waits for the initial route tables before it opens anyway
    # async invocations
    async_max_bytes: int = 256 * 1024  # body of one async call, as Lambda's async payload limit
    async_concurrency: int = 64  # calls this gateway runs at once
    async_retries: int = 2  # after the first attempt, as Lambda's MaximumRetryAttempts
    async_backoff: float = 1.0  # seconds before the first retry, doubled for each one after
    async_max_age: float = 6 * 3600  # seconds a call may wait, as Lambda's MaximumEventAgeInSeconds
    async_ack_wait: float = 30.0  # a call taken by a gateway that died is redelivered after this
    trigger_concurrency: int = 256  # trigger events this gateway runs at once
    trigger_batch_max: int = 64  # waiting events and raw-invoke async calls sent to a replica in one request
    # NATS trigger messages that may wait while trigger_concurrency events run (then new ones are dropped):
    # nats-py's bounds of a subscription's pending messages, where they waited before
    trigger_waiting_max: int = 512 * 1024
    trigger_waiting_bytes: int = 128 * 1024 * 1024
    api_usage_interval: float = 1.0  # seconds between API key counts sent to the controller (quotas, throttle N)
    backlog_interval: float = 5.0  # seconds between samples of the async backlog and the triggers' consumers
    usage_interval: float = 10.0  # seconds between billed-usage reports to the controller (`fx usage`)
    # JWT authorizers of API routes
    jwt_clock_skew: float = 60.0  # seconds exp, nbf and iat may be off by (the issuer's clock against ours)
    jwt_cache_entries: int = 4096  # verified tokens remembered until they expire; 0: every request is verified
    jwks_refresh: float = 300.0  # seconds between fetches of an issuer's keys (a removed key stops verifying then)
    jwks_min_interval: float = 10.0  # seconds between fetches made because a token names a key not held
    jwks_timeout: float = 5.0  # seconds for a fetch of an issuer's discovery document and keys
    jwks_max_bytes: int = 256 * 1024  # an issuer's discovery document or key set; larger: not used
    authorizer_timeout: float = 10.0  # seconds an API route's authorizer may take to decide; then 500
    # what one caller connection may cost (nginx's defaults where it has one)
    max_url_bytes: int = 8 * 1024  # request target; longer: 414
    max_header_bytes: int = 32 * 1024  # all header names and values of one request; more: 431
    max_headers: int = 100  # header lines of one request; more: 431
    header_timeout: float = 10.0  # seconds for a request's whole head, from its first byte (or the connect): 408
    body_timeout: float = 30.0  # seconds without a body byte while a body is due: 408
    idle_timeout: float = 75.0  # seconds a keep-alive connection may wait for its next request
    max_connections: int = 4096  # caller connections at once; more are answered 503 and closed
    system_max_bytes: int = 266 * 1024 * 1024  # body of a /system call forwarded to the controller
    blobs_max_bytes: int = 256 * 1024 * 1024  # blobs (bodies passed by reference) held at once; more: 503
    system_connect_timeout: float = 10.0  # seconds to open a connection to the controller, in attempts of 2 s
    upstream_max_connections: int = 100  # open connections to one API upstream (scheme://host:port); more requests wait
    upstream_max_body_bytes: int = 64 * 1024 * 1024  # request body streamed to an API upstream; more: 413
    upstream_ca_file: str = ""  # PEM CAs that https API upstreams' certificates are verified with; "": the system's
    metrics_host: str = ""  # with metrics_port: /metrics is served there only, not on the main listener
    metrics_port: int = 0
    max_revision_skew: float = 60.0  # seconds a route table's revision (ns of the controller's clock) may lead ours
    # callbacks of async calls: where results may be sent
    callback_hosts: tuple[str, ...] = ("127.0.0.0/8", "::1")  # X-Callback-Url: CIDRs, IPs, names, each [:port]
    callback_subjects: tuple[str, ...] = ()  # X-Fx-Callback-Subject: NATS subject patterns
    # Lambda authorizers of API routes
    authorizer_cache_entries: int = 10_000  # cached answers per authorizer; the oldest go first
    authorizer_max_bytes: int = 64 * 1024  # a Lambda authorizer's answer; larger: 500


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return (host or "127.0.0.1"), int(port or default_port)


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


# Numeric flags: (flag, type, default, meaning); each also comes from its FX_* variable (fx.flags) and sets the
# Settings field of its name.
_NUMBERS = (
    (
        "--nats-replicas",
        int,
        Settings.nats_replicas,
        "copies JetStream keeps of the async-call streams (FX_NATS_REPLICAS)",
    ),
    ("--hold-timeout", float, Settings.hold_timeout, "seconds a request may wait for a replica"),
    ("--hold-queue", int, Settings.hold_queue, "max held requests per version"),
    (
        "--replica-retries",
        int,
        Settings.replica_retries,
        "times a request whose replica was lost is sent again, if it is a GET, HEAD or OPTIONS or provably unread",
    ),
    ("--max-request-bytes", int, Settings.max_request_bytes, "ceiling on any function's request body limit"),
    ("--drain-timeout", float, Settings.drain_timeout, "seconds in-flight requests get on SIGTERM"),
    (
        "--routes-wait",
        float,
        Settings.routes_wait,
        "seconds the listener waits for NATS and the initial route tables before it opens anyway (until then a"
        " restarted gateway refuses connections rather than answer 404 for the functions it has not loaded)",
    ),
    ("--async-max-bytes", int, Settings.async_max_bytes, "max body of an async call"),
    ("--async-concurrency", int, Settings.async_concurrency, "async calls this gateway runs at once"),
    ("--async-retries", int, Settings.async_retries, "retries of a failed async call before it is dead-lettered"),
    ("--async-backoff", float, Settings.async_backoff, "seconds before the first retry, doubled for each next one"),
    ("--async-max-age", float, Settings.async_max_age, "seconds an async call may wait before it is dead-lettered"),
    (
        "--async-ack-wait",
        float,
        Settings.async_ack_wait,
        "seconds before a call taken by a vanished gateway is redelivered",
    ),
    ("--trigger-concurrency", int, Settings.trigger_concurrency, "NATS trigger events this gateway runs at once"),
    (
        "--trigger-waiting-max",
        int,
        Settings.trigger_waiting_max,
        "NATS trigger messages that may wait for a free slot (--trigger-concurrency); past it, or past"
        " --trigger-waiting-bytes of their data, new ones are dropped (core NATS is at most once)",
    ),
    ("--trigger-waiting-bytes", int, Settings.trigger_waiting_bytes, "bytes of NATS trigger messages that may wait"),
    (
        "--trigger-batch-max",
        int,
        Settings.trigger_batch_max,
        "trigger events and raw-invoke async calls of a function, already waiting for a replica, sent to it in one"
        " request (each still its own invocation); 1: one request per event",
    ),
    (
        "--api-usage-interval",
        float,
        Settings.api_usage_interval,
        "seconds between this gateway's API key counts sent to the controller; a quota is overshot by what the"
        " other gateways admit in about two of them, and a gateway's throttle share follows the gateways alive",
    ),
    (
        "--backlog-interval",
        float,
        Settings.backlog_interval,
        "seconds between samples of the async backlog and the durable triggers' consumers (metrics)",
    ),
    (
        "--usage-interval",
        float,
        Settings.usage_interval,
        "seconds between billed-usage reports to the controller (`fx usage`)",
    ),
    (
        "--jwt-clock-skew",
        float,
        Settings.jwt_clock_skew,
        "seconds a JWT's exp, nbf and iat may be off by, for clocks that differ between its issuer and the gateway",
    ),
    (
        "--jwt-cache-entries",
        int,
        Settings.jwt_cache_entries,
        "verified JWTs each JWT authorizer remembers until they expire (least recently used out first); 0: none",
    ),
    (
        "--jwks-refresh",
        float,
        Settings.jwks_refresh,
        "seconds between fetches of a JWT issuer's keys: a key the issuer removed stops verifying within this",
    ),
    (
        "--jwks-min-interval",
        float,
        Settings.jwks_min_interval,
        "least seconds between the fetches of an issuer's keys that tokens naming an unknown key (kid) cause",
    ),
    (
        "--jwks-timeout",
        float,
        Settings.jwks_timeout,
        "seconds for a fetch of a JWT issuer's discovery document or keys",
    ),
    (
        "--jwks-max-bytes",
        int,
        Settings.jwks_max_bytes,
        "largest discovery document or key set (JWKS) of a JWT issuer; larger: refused and logged",
    ),
    (
        "--authorizer-timeout",
        float,
        Settings.authorizer_timeout,
        "seconds an API route's authorizer (a JWKS fetch, a Lambda authorizer) may take to decide; then 500",
    ),
    (
        "--authorizer-cache-entries",
        int,
        Settings.authorizer_cache_entries,
        "cached answers per Lambda authorizer (the oldest are dropped first)",
    ),
    (
        "--authorizer-max-bytes",
        int,
        Settings.authorizer_max_bytes,
        "largest answer of a Lambda authorizer function; larger: 500",
    ),
)
_LIMITS = (
    ("--max-url-bytes", int, Settings.max_url_bytes, "longest request target; longer: 414"),
    (
        "--max-header-bytes",
        int,
        Settings.max_header_bytes,
        "most bytes of header names and values in one request; more: 431",
    ),
    ("--max-headers", int, Settings.max_headers, "most header lines in one request; more: 431"),
    (
        "--header-timeout",
        float,
        Settings.header_timeout,
        "seconds for a request's whole head to arrive; then 408 and close",
    ),
    ("--body-timeout", float, Settings.body_timeout, "seconds without a byte of a request body; then 408 and close"),
    (
        "--idle-timeout",
        float,
        Settings.idle_timeout,
        "seconds a keep-alive connection may wait for its next request; then close",
    ),
    (
        "--max-connections",
        int,
        Settings.max_connections,
        "caller connections at once; more are answered 503 and closed",
    ),
    (
        "--system-max-bytes",
        int,
        Settings.system_max_bytes,
        "largest /system request body forwarded to the controller; more: 413",
    ),
    (
        "--blobs-max-bytes",
        int,
        Settings.blobs_max_bytes,
        "bytes of blobs (bodies passed by reference, X-Fx-Body-Ref) this gateway holds at once; more: 503, retry",
    ),
    (
        "--system-connect-timeout",
        float,
        Settings.system_connect_timeout,
        "seconds to open a /system call's connection to the controller, in attempts of at most 2 s (an address"
        " that vanished in a failover never answers: a fresh attempt reaches the new leader); then 502",
    ),
    (
        "--upstream-max-connections",
        int,
        Settings.upstream_max_connections,
        "connections open at once to one API upstream (scheme://host:port); further requests wait for one, within their"
        " route's timeout",
    ),
    (
        "--upstream-max-body-bytes",
        int,
        Settings.upstream_max_body_bytes,
        "largest request body streamed to an API upstream; more: 413",
    ),
    (
        "--max-revision-skew",
        float,
        Settings.max_revision_skew,
        "seconds a route table's revision may be ahead of this gateway's clock; further: ignored",
    ),
)


def _field(flag: str) -> str:
    """The Settings field (and argparse dest) of a table's flag: --hold-timeout, hold_timeout."""
    return flag.removeprefix("--").replace("-", "_")


def parse(argv: list[str] | None = None) -> Settings:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="fx-gateway", description="fx data plane: routes HTTP calls to function replicas")
    p.add_argument("--nats", default=env("FX_NATS_URL", Settings.nats_url), help="NATS URL [FX_NATS_URL]")
    p.add_argument("--nats-creds", default=env("FX_NATS_CREDS"), help="the gateway's NATS .creds file [FX_NATS_CREDS]")
    p.add_argument("--listen", default=env("FX_LISTEN", "127.0.0.1:8080"), help="host:port to serve on [FX_LISTEN]")
    p.add_argument(
        "--controller",
        default=env("FX_CONTROLLER_URL", "http://127.0.0.1:8081"),
        help="controller admin API URL, for /system/* [FX_CONTROLLER_URL]",
    )
    p.add_argument(
        "--gateway-id",
        default=env("FX_GATEWAY_ID", f"{socket.gethostname()}-{os.getpid()}"),
        help="name in load reports [FX_GATEWAY_ID]",
    )
    for flag, kind, default, meaning in _NUMBERS:
        option(p, flag, kind, default, meaning)
    limits = p.add_argument_group("limits per caller connection")
    for flag, kind, default, meaning in _LIMITS:
        option(limits, flag, kind, default, meaning)
    p.add_argument(
        "--metrics-listen",
        default=env("FX_METRICS_LISTEN", ""),
        help="host:port serving /metrics (and /healthz) instead of the main listener, which then answers"
        " /metrics 404; empty: /metrics on the main listener [FX_METRICS_LISTEN]",
    )
    p.add_argument(
        "--callback-hosts",
        default=env("FX_CALLBACK_HOSTS", ",".join(Settings.callback_hosts)),
        help="comma-separated CIDRs, IPs and host names (.example.com: any subdomain), each optionally :PORT,"
        " that X-Callback-Url may name; link-local and cloud metadata addresses never [FX_CALLBACK_HOSTS]",
    )
    p.add_argument(
        "--callback-subjects",
        default=env("FX_CALLBACK_SUBJECTS", ",".join(Settings.callback_subjects)),
        help="comma-separated NATS subject patterns X-Fx-Callback-Subject may name (none by default);"
        " fx.*, $* and _INBOX.* never [FX_CALLBACK_SUBJECTS]",
    )
    p.add_argument(
        "--upstream-ca-file",
        default=env("FX_UPSTREAM_CA_FILE", Settings.upstream_ca_file),
        help="PEM file of the CAs that https API upstreams' certificates are verified with (default: the system's)"
        " [FX_UPSTREAM_CA_FILE]",
    )
    args = p.parse_args(argv)
    if args.upstream_ca_file and not os.path.isfile(args.upstream_ca_file):
        p.error(f"--upstream-ca-file {args.upstream_ca_file!r}: no such file")
    host, port = _host_port(args.listen, 8080)
    metrics_host, metrics_port = _host_port(args.metrics_listen, 0) if args.metrics_listen else ("", 0)
    controller = urlsplit(args.controller)
    if controller.scheme != "http" or not controller.hostname:
        p.error(f"--controller {args.controller!r}: expected http://host:port")
    settings = Settings(
        nats_url=args.nats,
        nats_creds=args.nats_creds,
        host=host,
        port=port,
        controller_host=controller.hostname,
        controller_port=controller.port or 80,
        gateway_id=args.gateway_id,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        **{_field(flag): getattr(args, _field(flag)) for flag, *_ in (*_NUMBERS, *_LIMITS)},
        callback_hosts=_list(args.callback_hosts),
        callback_subjects=_list(args.callback_subjects),
        upstream_ca_file=args.upstream_ca_file,
    )
    try:
        CallbackPolicy.from_settings(settings)
    except ValueError as exc:
        p.error(str(exc))
    return settings
