"""Command-line flags of fx-controller; each one can also come from the environment."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fx import interpreters, log_files
from fx.flags import option

from .backends.local_sandbox import parse_uid_range


@dataclass
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    nats_creds: Path | None = None  # the controller's own NATS user; None: NATS without auth
    nats_auth_dir: Path | None = None  # holds the fx account's signing key, to mint functions' NATS users
    nats_creds_ttl: float = 3600.0  # seconds a function's NATS credentials are valid (renewed while it runs)
    nats_replicas: int = 1  # copies JetStream keeps of fx's streams, KV buckets and object store (3: a NATS cluster)
    host: str = "127.0.0.1"
    port: int = 8081
    state_dir: Path = Path(".fx")
    token_file: Path | None = None  # default: <state_dir>/admin-token
    token: str | None = None  # FX_TOKEN wins over the token file
    backend: str = "local"
    drain_delay: float = 1.0  # seconds between unpublishing a replica and SIGTERM
    max_unzipped_mb: int = 250
    lambda_zip_max_mb: int = 50  # a ZipFile sent to the Lambda API (Lambda's own limit for a direct upload)
    max_credentials: int = 100  # the Lambda API's access keys at once (`fx credentials create`)
    max_api_keys: int = 500  # API keys of API routes at once (`fx apikey create`)
    max_secret_bytes: int = 65536  # keys and values of one secret (AWS Secrets Manager's limit is 64 KB too)
    max_apis: int = 100  # APIs (fx.yaml `apis:`) at once
    max_routes_per_api: int = 300  # routes of one API (API Gateway's default quota)
    stable_window: float = 10.0  # seconds of load the autoscaler's stable average spans (docs/autoscaling.md)
    panic_window_percentage: float = 10.0  # the panic window, in percent of the stable window
    panic_threshold_percentage: float = 200.0  # panic when the panic window wants this percent of ready replicas
    max_scale_up_rate: float = 1000.0  # at most this many times the ready replicas in one step
    max_scale_down_rate: float = 2.0  # at least the ready replicas divided by this after one step
    scale_down_delay: float = 0.0  # seconds a decision to scale down must hold
    init_timeout: float = 30.0  # a replica not ready by then is stopped and reported failed
    keep_warm: float = 300.0  # seconds a version keeps its replicas after losing traffic, for instant rollback
    max_artifact_entries: int = 20_000  # files and directories in one code zip
    sandbox: str = "auto"  # local backend: auto = each function in its own sandbox when fx runs as root; off
    sandbox_uids: tuple[int, int] = (100_000, 165_535)
    sandbox_tmp_mb: int = 512  # each replica's /tmp (a tmpfs: it counts against the function's memory)
    sandbox_pids_max: int = 256  # processes and threads per replica
    # local backend: runtime -> interpreter, named explicitly; the others are looked for (fx.interpreters)
    interpreters: dict[str, str] = field(default_factory=dict)
    max_body_kb: int = 1024  # body of an admin call other than an artifact upload
    blob_max_bytes: int = 64 * 1024 * 1024  # one request body passed by reference (PUT /system/blobs/...)
    blob_ttl: float = 3600.0  # seconds a blob is kept after its upload
    blob_store_max_bytes: int = 1024 * 1024 * 1024  # all blobs at once; more: 507 BlobStoreFull
    log_max_bytes: int = log_files.FUNCTION_LOGS.max_bytes  # a function's log rotates once over this
    log_keep: int = log_files.FUNCTION_LOGS.keep  # rotated files kept of each function's log
    log_check_interval: float = 0.5  # seconds between checks of the logs' sizes: a log overshoots by this much
    gc_interval: float = 600.0  # seconds between sweeps for what no function uses (code, zips, logs)
    gc_grace: float = 3600.0  # an unreferenced zip younger than this is kept (uploaded for a deploy under way)
    public_metrics: bool = False  # /metrics without the token
    metrics_listen: str = ""  # host:port serving /metrics alone, without the token (for scrapers); empty: none
    public_docs: bool = False  # /system/openapi.json and /system/docs without the token
    usage_retention: float = 35 * 86400.0  # seconds billed usage is kept per hour (`fx usage --since`)

    @property
    def max_unzipped_bytes(self) -> int:
        return self.max_unzipped_mb * 1024 * 1024


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen {value!r} is not host:port")
    return host, int(port)


def _uids(value: str) -> tuple[int, int]:
    try:
        return parse_uid_range(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--sandbox-uids: {e}") from None


def _at_least(low: int) -> Callable[[str], int]:
    def number(value: str) -> int:
        if not value.strip().lstrip("-").isdigit() or int(value) < low:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least {low}")
        return int(value)

    number.__name__ = f"whole number >= {low}"
    return number


# The numeric flags: (flag, type, default, meaning); each also comes from its FX_* variable (fx.flags).
_NUMBERS = (
    (
        "--nats-creds-ttl",
        float,
        Settings.nats_creds_ttl,
        "seconds a function's NATS credentials are valid; renewed while it runs",
    ),
    (
        "--nats-replicas",
        int,
        Settings.nats_replicas,
        "copies JetStream keeps of each stream, KV bucket and object store fx makes (at most the NATS servers)",
    ),
    ("--drain-delay", float, Settings.drain_delay, "seconds between unpublishing a replica and SIGTERM"),
    ("--max-unzipped-mb", int, Settings.max_unzipped_mb, "largest unzipped size of a code zip, in MB"),
    ("--lambda-zip-max-mb", int, Settings.lambda_zip_max_mb, "largest ZipFile the Lambda API takes, in MB"),
    ("--max-credentials", int, Settings.max_credentials, "access keys for the Lambda API that may exist at once"),
    ("--max-api-keys", int, Settings.max_api_keys, "API keys of API routes that may exist at once"),
    ("--max-secret-bytes", int, Settings.max_secret_bytes, "bytes of keys and values one secret may hold"),
    ("--max-apis", int, Settings.max_apis, "APIs (fx.yaml `apis:`) that may exist at once"),
    ("--max-routes-per-api", int, Settings.max_routes_per_api, "routes one API may have"),
    ("--stable-window", float, Settings.stable_window, "seconds of load the autoscaler's stable average spans"),
    (
        "--panic-window-percentage",
        float,
        Settings.panic_window_percentage,
        "the autoscaler's panic window, in percent of the stable window",
    ),
    (
        "--panic-threshold-percentage",
        float,
        Settings.panic_threshold_percentage,
        "panic (scale on the panic window, never down) when it wants this percent of the ready replicas",
    ),
    ("--max-scale-up-rate", float, Settings.max_scale_up_rate, "scale up to at most this times the ready replicas"),
    ("--max-scale-down-rate", float, Settings.max_scale_down_rate, "scale down to at least ready / this"),
    ("--scale-down-delay", float, Settings.scale_down_delay, "seconds a decision to scale down must hold first"),
    ("--init-timeout", float, Settings.init_timeout, "seconds a replica may take to become ready"),
    ("--keep-warm", float, Settings.keep_warm, "seconds a version keeps its replicas after losing traffic"),
    ("--max-artifact-entries", int, Settings.max_artifact_entries, "files and directories a code zip may hold"),
    ("--sandbox-tmp-mb", int, Settings.sandbox_tmp_mb, "size of each replica's /tmp"),
    ("--sandbox-pids-max", int, Settings.sandbox_pids_max, "processes and threads per replica"),
    (
        "--max-body-kb",
        int,
        Settings.max_body_kb,
        "largest body of an admin call other than an artifact upload (those: --max-unzipped-mb)",
    ),
    ("--blob-max-bytes", int, Settings.blob_max_bytes, "largest request body passed by reference (a blob)"),
    ("--blob-ttl", float, Settings.blob_ttl, "seconds a blob is kept after its upload"),
    ("--usage-retention", float, Settings.usage_retention, "seconds billed usage is kept (`fx usage --since`)"),
    ("--blob-store-max-bytes", int, Settings.blob_store_max_bytes, "bytes all blobs may hold at once"),
    ("--log-max-bytes", _at_least(1), Settings.log_max_bytes, "a function's log rotates once over this size"),
    ("--log-keep", _at_least(0), Settings.log_keep, "rotated files kept of each function's log"),
    ("--log-check-interval", float, Settings.log_check_interval, "seconds between checks of the logs' sizes"),
    ("--gc-interval", float, Settings.gc_interval, "seconds between sweeps for code, zips and logs no function uses"),
    ("--gc-grace", float, Settings.gc_grace, "seconds an unreferenced code zip is kept after its upload"),
)


# The autoscaler's flags: (flag, lowest, highest), the ranges a function's scale spec allows too.
_SCALING_RANGES = (
    ("--stable-window", 0.1, 3600),
    ("--panic-window-percentage", 1, 100),
    ("--panic-threshold-percentage", 110, 1000),
    ("--max-scale-up-rate", 1.01, 1e6),
    ("--max-scale-down-rate", 1.01, 1e6),
    ("--scale-down-delay", 0, 3600),
)


def _check_scaling(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    for flag, lowest, highest in _SCALING_RANGES:
        value = getattr(a, flag.removeprefix("--").replace("-", "_"))
        if not lowest <= value <= highest:
            p.error(f"{flag} {value:g} is out of range: give a value from {lowest:g} to {highest:g}")


def _named(p: argparse.ArgumentParser, values: list[str]) -> dict[str, str]:
    try:
        return interpreters.parse(values)
    except ValueError as e:
        p.error(f"--interpreter or {interpreters.ENV}: {e}")


def parse(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    p = argparse.ArgumentParser(prog="fx-controller", description="fx control plane: admin API, autoscaler, replicas")
    p.add_argument("--nats", default=env.get("FX_NATS_URL", Settings.nats_url), help="NATS URL [FX_NATS_URL]")
    p.add_argument(
        "--nats-creds", default=env.get("FX_NATS_CREDS"), help="the controller's NATS .creds file [FX_NATS_CREDS]"
    )
    p.add_argument(
        "--nats-auth-dir",
        default=env.get("FX_NATS_AUTH_DIR"),
        help="directory with fx-account.pub and fx-signing.nk, to mint functions' NATS users [FX_NATS_AUTH_DIR]",
    )
    p.add_argument(
        "--listen", default=env.get("FX_LISTEN", f"{Settings.host}:{Settings.port}"), help="host:port [FX_LISTEN]"
    )
    p.add_argument("--state-dir", default=env.get("FX_STATE_DIR", str(Settings.state_dir)), help="[FX_STATE_DIR]")
    p.add_argument("--token-file", default=env.get("FX_TOKEN_FILE"), help="admin token file, created if missing")
    p.add_argument(
        "--backend",
        default=env.get("FX_BACKEND", "local"),
        choices=["local", "kubernetes"],
        help="local: replicas are processes on this host; kubernetes: pods (FX_K8S_* variables) [FX_BACKEND]",
    )
    p.add_argument(
        "--sandbox",
        default=env.get("FX_SANDBOX", Settings.sandbox),
        choices=["auto", "off"],
        help="local backend: auto = each function in its own sandbox when running as root [FX_SANDBOX]",
    )
    p.add_argument(
        "--sandbox-uids",
        type=_uids,
        default=env.get("FX_SANDBOX_UIDS", "-".join(map(str, Settings.sandbox_uids))),
        help="FIRST-LAST: the uids (and gids) functions run as, one per function [FX_SANDBOX_UIDS]",
    )
    p.add_argument(
        "--interpreter",
        action="append",
        default=interpreters.from_env(env),
        metavar="RUNTIME=PATH",
        help="local backend: run RUNTIME (e.g. python3.12) on the interpreter at PATH; repeatable. Others are"
        f" looked for on PATH and in pyenv [{interpreters.ENV}: comma-separated]",
    )
    for flag, kind, default, meaning in _NUMBERS:
        option(p, flag, kind, default, meaning, env)
    for flag, name, what in (
        ("--public-metrics", "FX_PUBLIC_METRICS", "/metrics"),
        ("--public-docs", "FX_PUBLIC_DOCS", "/system/openapi.json and /system/docs"),
    ):
        on = env.get(name, "").lower() in ("1", "true")
        p.add_argument(flag, action="store_true", default=on, help=f"serve {what} without the admin token [{name}]")
    p.add_argument(
        "--metrics-listen",
        default=env.get("FX_METRICS_LISTEN", ""),
        help="host:port serving /metrics alone, without the admin token (for scrapers; a standby answers too);"
        " the admin port keeps /metrics behind the token [FX_METRICS_LISTEN]",
    )
    a = p.parse_args(argv)
    _check_scaling(p, a)
    host, port = _listen(a.listen)
    if a.metrics_listen:
        try:
            _listen(a.metrics_listen)
        except argparse.ArgumentTypeError:
            p.error(f"--metrics-listen {a.metrics_listen!r} is not host:port")
    state_dir = Path(a.state_dir)
    return Settings(
        nats_url=a.nats,
        nats_creds=Path(a.nats_creds) if a.nats_creds else None,
        nats_auth_dir=Path(a.nats_auth_dir) if a.nats_auth_dir else None,
        nats_creds_ttl=a.nats_creds_ttl,
        nats_replicas=a.nats_replicas,
        host=host,
        port=port,
        state_dir=state_dir,
        token_file=Path(a.token_file) if a.token_file else state_dir / "admin-token",
        token=env.get("FX_TOKEN") or None,
        backend=a.backend,
        drain_delay=a.drain_delay,
        max_unzipped_mb=a.max_unzipped_mb,
        lambda_zip_max_mb=a.lambda_zip_max_mb,
        max_credentials=a.max_credentials,
        max_api_keys=a.max_api_keys,
        max_secret_bytes=a.max_secret_bytes,
        max_apis=a.max_apis,
        max_routes_per_api=a.max_routes_per_api,
        stable_window=a.stable_window,
        panic_window_percentage=a.panic_window_percentage,
        panic_threshold_percentage=a.panic_threshold_percentage,
        max_scale_up_rate=a.max_scale_up_rate,
        max_scale_down_rate=a.max_scale_down_rate,
        scale_down_delay=a.scale_down_delay,
        init_timeout=a.init_timeout,
        keep_warm=a.keep_warm,
        max_artifact_entries=a.max_artifact_entries,
        sandbox=a.sandbox,
        sandbox_uids=a.sandbox_uids,
        sandbox_tmp_mb=a.sandbox_tmp_mb,
        sandbox_pids_max=a.sandbox_pids_max,
        interpreters=_named(p, a.interpreter),
        max_body_kb=a.max_body_kb,
        blob_max_bytes=a.blob_max_bytes,
        blob_ttl=a.blob_ttl,
        usage_retention=a.usage_retention,
        blob_store_max_bytes=a.blob_store_max_bytes,
        log_max_bytes=a.log_max_bytes,
        log_keep=a.log_keep,
        log_check_interval=a.log_check_interval,
        gc_interval=a.gc_interval,
        gc_grace=a.gc_grace,
        public_metrics=a.public_metrics,
        metrics_listen=a.metrics_listen,
        public_docs=a.public_docs,
    )
