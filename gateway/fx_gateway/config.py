"""fx-gateway's settings: command-line flags, each with an FX_* environment variable as its default."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: str | None = None  # the gateway's NATS user (.creds file); None: NATS without auth
    host: str = "127.0.0.1"
    port: int = 8080
    controller_host: str = "127.0.0.1"
    controller_port: int = 8081
    hold_timeout: float = 30.0  # seconds a request may wait for a replica
    hold_queue: int = 1000  # held requests per version
    max_request_bytes: int = 6 * 1024 * 1024  # ceiling on every route table's own limit
    gateway_id: str = ""
    drain_timeout: float = 10.0  # seconds in-flight requests get on SIGTERM
    # async invocations
    async_max_bytes: int = 256 * 1024  # body of one async call, as Lambda's async payload limit
    async_concurrency: int = 64  # calls this gateway runs at once
    async_retries: int = 2  # after the first attempt, as Lambda's MaximumRetryAttempts
    async_backoff: float = 1.0  # seconds before the first retry, doubled for each one after
    async_max_age: float = 6 * 3600  # seconds a call may wait, as Lambda's MaximumEventAgeInSeconds
    async_ack_wait: float = 30.0  # a call taken by a gateway that died is redelivered after this
    trigger_concurrency: int = 256  # trigger events this gateway runs at once


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return (host or "127.0.0.1"), int(port or default_port)


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
        "--hold-timeout",
        type=float,
        default=float(env("FX_HOLD_TIMEOUT", Settings.hold_timeout)),
        help="seconds a request may wait for a replica [FX_HOLD_TIMEOUT]",
    )
    p.add_argument(
        "--hold-queue",
        type=int,
        default=int(env("FX_HOLD_QUEUE", Settings.hold_queue)),
        help="max held requests per version [FX_HOLD_QUEUE]",
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=int(env("FX_MAX_REQUEST_BYTES", Settings.max_request_bytes)),
        help="ceiling on any function's request body limit [FX_MAX_REQUEST_BYTES]",
    )
    p.add_argument(
        "--gateway-id",
        default=env("FX_GATEWAY_ID", f"{socket.gethostname()}-{os.getpid()}"),
        help="name in load reports [FX_GATEWAY_ID]",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=float(env("FX_DRAIN_TIMEOUT", Settings.drain_timeout)),
        help="seconds in-flight requests get on SIGTERM [FX_DRAIN_TIMEOUT]",
    )
    p.add_argument(
        "--async-max-bytes",
        type=int,
        default=int(env("FX_ASYNC_MAX_BYTES", Settings.async_max_bytes)),
        help="max body of an async call [FX_ASYNC_MAX_BYTES]",
    )
    p.add_argument(
        "--async-concurrency",
        type=int,
        default=int(env("FX_ASYNC_CONCURRENCY", Settings.async_concurrency)),
        help="async calls this gateway runs at once [FX_ASYNC_CONCURRENCY]",
    )
    p.add_argument(
        "--async-retries",
        type=int,
        default=int(env("FX_ASYNC_RETRIES", Settings.async_retries)),
        help="retries of a failed async call before it is dead-lettered [FX_ASYNC_RETRIES]",
    )
    p.add_argument(
        "--async-backoff",
        type=float,
        default=float(env("FX_ASYNC_BACKOFF", Settings.async_backoff)),
        help="seconds before the first retry, doubled for each next one [FX_ASYNC_BACKOFF]",
    )
    p.add_argument(
        "--async-max-age",
        type=float,
        default=float(env("FX_ASYNC_MAX_AGE", Settings.async_max_age)),
        help="seconds an async call may wait before it is dead-lettered [FX_ASYNC_MAX_AGE]",
    )
    p.add_argument(
        "--async-ack-wait",
        type=float,
        default=float(env("FX_ASYNC_ACK_WAIT", Settings.async_ack_wait)),
        help="seconds before a call taken by a vanished gateway is redelivered [FX_ASYNC_ACK_WAIT]",
    )
    p.add_argument(
        "--trigger-concurrency",
        type=int,
        default=int(env("FX_TRIGGER_CONCURRENCY", Settings.trigger_concurrency)),
        help="NATS trigger events this gateway runs at once [FX_TRIGGER_CONCURRENCY]",
    )
    args = p.parse_args(argv)
    host, port = _host_port(args.listen, 8080)
    controller = urlsplit(args.controller)
    if controller.scheme != "http" or not controller.hostname:
        p.error(f"--controller {args.controller!r}: expected http://host:port")
    return Settings(
        nats_url=args.nats,
        nats_creds=args.nats_creds,
        host=host,
        port=port,
        controller_host=controller.hostname,
        controller_port=controller.port or 80,
        hold_timeout=args.hold_timeout,
        hold_queue=args.hold_queue,
        max_request_bytes=args.max_request_bytes,
        gateway_id=args.gateway_id,
        drain_timeout=args.drain_timeout,
        async_max_bytes=args.async_max_bytes,
        async_concurrency=args.async_concurrency,
        async_retries=args.async_retries,
        async_backoff=args.async_backoff,
        async_max_age=args.async_max_age,
        async_ack_wait=args.async_ack_wait,
        trigger_concurrency=args.trigger_concurrency,
    )
