"""The replica's configuration, read once from the environment the backend gave it."""

from __future__ import annotations

import os
import sys
import time
import uuid
from dataclasses import dataclass

SIX_MB = 6 * 1024 * 1024
TWENTY_MB = 20 * 1024 * 1024  # Lambda's (soft) limit of a streamed response
UNIX_PREFIX = "unix:"
MAX_SOCKET_PATH = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
LAMBDA_RUNTIME_API = "127.0.0.1:9001"


@dataclass(frozen=True, slots=True)
class Settings:
    handler: str
    function_name: str
    function_version: str
    memory_mb: str  # a string, as Lambda's context.memory_limit_in_mb is
    region: str
    artifact: str | None
    artifact_sha256: str | None
    artifact_url: str | None  # where to fetch the zip when FX_ARTIFACT is not on disk (the kubernetes backend)
    code_dir: str
    listen_host: str
    listen_port: int
    listen_path: str | None  # a Unix socket to listen on instead (FX_LISTEN=unix:/abs/path)
    timeout_ms: int
    http_event: str
    max_request_bytes: int
    max_blob_bytes: int  # a body passed by reference (X-Fx-Body-Ref), read by the gateway from the blob store
    max_response_bytes: int
    bootstrap: str | None  # a command serving the Lambda Runtime API instead of an in-process handler
    # host:port of the Runtime API. Set without a bootstrap: relay to a runtime client someone else starts.
    runtime_api: str | None
    alb_multi_value: bool  # ALB target group with lambda.multi_value_headers.enabled
    # What the gateway sends as X-Fx-Replica-Token; None: no check (a runtime started by hand, an old backend).
    replica_token: str | None = None
    # The dependency layer: a zip like FX_ARTIFACT's (FX_LAYER, FX_LAYER_SHA256, FX_LAYER_URL), extracted to
    # FX_LAYER_DIR and put on sys.path after the code. None: the code zip holds everything.
    layer: str | None = None
    layer_sha256: str | None = None
    layer_url: str | None = None
    layer_dir: str = ""
    max_stream_bytes: int = TWENTY_MB  # a streamed response (streams.py); a joined one is max_response_bytes

    @property
    def relays(self) -> bool:
        """Invocations go through the Lambda Runtime API (runtime_api.py), not to an in-process handler."""
        return bool(self.bootstrap or self.runtime_api)

    @property
    def listen(self) -> str:
        """Where the replica listens, as FX_LISTEN spells it (for messages)."""
        return f"{UNIX_PREFIX}{self.listen_path}" if self.listen_path else f"{self.listen_host}:{self.listen_port}"

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:000000000000:function:{self.function_name}"


def _int(env: os._Environ[str], name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _sha256(env: os._Environ[str], name: str) -> str | None:
    return (env.get(name) or "").removeprefix("sha256:").lower() or None


def _unix_path(listen: str) -> str | None:
    """The socket path of `unix:/abs/path`, checked against what bind(2) accepts; None for host:port."""
    if not listen.startswith(UNIX_PREFIX):
        return None
    path = listen[len(UNIX_PREFIX) :]
    if not os.path.isabs(path):
        raise ValueError(f"FX_LISTEN={listen!r}: the socket path must be absolute (unix:/run/fx/http.sock)")
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ValueError(f"FX_LISTEN={listen!r}: a socket path has at most {MAX_SOCKET_PATH} bytes; use a shorter one")
    return path


def parse_listen(listen: str) -> tuple[str, int, str | None]:
    """FX_LISTEN -> (host, port, None) or ("127.0.0.1", 0, socket path)."""
    listen_path = _unix_path(listen)
    host, _, port = ("", "", "0") if listen_path else listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"FX_LISTEN must be host:port or unix:/absolute/path, got {listen!r}")
    return host or "127.0.0.1", int(port), listen_path


def load(env: os._Environ[str] = os.environ) -> Settings:
    """Read the FX_* and Lambda variables, then fill in the Lambda variables the backend leaves to us."""
    host, port, listen_path = parse_listen(env.get("FX_LISTEN", "127.0.0.1:0"))
    runtime_api = env.get("FX_RUNTIME_API", "")
    if runtime_api and not runtime_api.rpartition(":")[2].isdigit():
        raise ValueError(f"FX_RUNTIME_API must be host:port, got {runtime_api!r}")
    http_event = env.get("FX_HTTP_EVENT", "v2") or "v2"
    if http_event not in ("v2", "v1", "alb"):
        raise ValueError(f"FX_HTTP_EVENT must be v2, v1 or alb, got {http_event!r}")
    artifact = env.get("FX_ARTIFACT") or None
    if artifact:
        code_dir = env.get("FX_CODE_DIR", "")
        if not code_dir:
            raise ValueError("FX_CODE_DIR must say where FX_ARTIFACT is extracted")
    else:
        code_dir = env.get("LAMBDA_TASK_ROOT") or env.get("FX_CODE_DIR") or os.getcwd()
    layer = env.get("FX_LAYER") or None
    if layer and not env.get("FX_LAYER_DIR"):
        raise ValueError("FX_LAYER_DIR must say where FX_LAYER is extracted")
    settings = Settings(
        handler=env.get("_HANDLER", ""),
        function_name=env.get("AWS_LAMBDA_FUNCTION_NAME", "function"),
        function_version=env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        memory_mb=env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        artifact=artifact,
        artifact_sha256=_sha256(env, "FX_ARTIFACT_SHA256"),
        artifact_url=env.get("FX_ARTIFACT_URL") or None,
        code_dir=os.path.abspath(code_dir),
        listen_host=host,
        listen_port=port,
        listen_path=listen_path,
        timeout_ms=_int(env, "FX_TIMEOUT_MS", 3000),
        http_event=http_event,
        max_request_bytes=_int(env, "FX_MAX_REQUEST_BYTES", SIX_MB),
        max_blob_bytes=_int(env, "FX_MAX_BLOB_BYTES", 256 * 1024 * 1024),
        max_response_bytes=_int(env, "FX_MAX_RESPONSE_BYTES", SIX_MB),
        bootstrap=env.get("FX_BOOTSTRAP") or None,
        runtime_api=runtime_api or None,
        alb_multi_value=env.get("FX_ALB_MULTI_VALUE_HEADERS", "").lower() in ("1", "true"),
        replica_token=env.get("FX_REPLICA_TOKEN") or None,
        layer=layer,
        layer_sha256=_sha256(env, "FX_LAYER_SHA256"),
        layer_url=env.get("FX_LAYER_URL") or None,
        layer_dir=os.path.abspath(env["FX_LAYER_DIR"]) if layer else "",
        max_stream_bytes=_int(env, "FX_MAX_STREAM_BYTES", TWENTY_MB),
    )
    _fill_lambda_env(env, settings)
    return settings


def _log_stream(s: Settings) -> str:
    return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{s.function_version}]{uuid.uuid4().hex}"


def new_log_stream(env: os._Environ[str], s: Settings) -> None:
    """A replica forked from a template is an execution environment of its own: its own log stream name."""
    env["AWS_LAMBDA_LOG_STREAM_NAME"] = _log_stream(s)


def _fill_lambda_env(env: os._Environ[str], s: Settings) -> None:
    """Set what Lambda's own sandbox sets, so handlers that read these variables behave as on Lambda."""
    env["LAMBDA_TASK_ROOT"] = s.code_dir
    env["_HANDLER"] = s.handler
    env["AWS_LAMBDA_FUNCTION_NAME"] = s.function_name
    env["AWS_LAMBDA_FUNCTION_VERSION"] = s.function_version
    env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = s.memory_mb
    env["AWS_REGION"] = s.region
    env.setdefault("AWS_DEFAULT_REGION", s.region)
    env.setdefault("LAMBDA_RUNTIME_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env.setdefault("AWS_EXECUTION_ENV", f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}")
    env.setdefault("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{s.function_name}")
    env.setdefault("AWS_LAMBDA_LOG_STREAM_NAME", _log_stream(s))
    env.setdefault("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    # Lambda's value. A Python replica is its own runtime client, so nothing serves the Runtime API to the
    # handler, as on Lambda, where the runtime client owns it; code that reads it only checks that it runs on
    # Lambda. A bootstrap's runtime client gets the replica's real Runtime API address instead (runtime_api.py).
    env.setdefault("AWS_LAMBDA_RUNTIME_API", LAMBDA_RUNTIME_API)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "en_US.UTF-8")
    env.setdefault("TZ", ":UTC")
    time.tzset()
