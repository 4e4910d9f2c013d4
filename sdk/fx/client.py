"""Python clients for one fx gateway: `Client` (the admin API, invokes and HTTP calls) and `AsyncClient` (its
asyncio variant for calling functions). Both find the gateway and token as the CLI does when not given them.

import fx
client = fx.Client()  # or fx.Client("http://127.0.0.1:8080", token), fx.Client(context="prod")
client.invoke("hello", {"name": "you"})
"""

from __future__ import annotations

import functools
import hashlib
import json
import ssl
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote
from urllib.request import getproxies

import httpx
from pydantic import TypeAdapter

from fx import config
from fx.errors import FunctionError, FxError, answer_error, unreachable
from fx.models import (
    AliasSpec,
    ArtifactInfo,
    BlobInfo,
    DeployResult,
    FunctionInfo,
    FunctionSpec,
    PromoteSpec,
    SecretInfo,
    VersionInfo,
)
from fx.protocol import BODY_REF, CALL_ID, FUNCTION_ERROR_HEADER
from fx.reads import logs_params

# The models of APIs, API keys, events and usage are imported by the calls that return them: building them would
# add tens of ms to a `fx ls`, whose answer needs fx.models alone.
if TYPE_CHECKING:
    from fx.api_key_models import ApiKeyInfo, IssuedApiKey, QuotaSpec
    from fx.api_models import ApiSpec
    from fx.event_models import (
        BucketInfo,
        BucketSpec,
        DeadLetter,
        DeadLetterDetail,
        KvPutResult,
        PlatformStatus,
        PublishResult,
        PublishSpec,
        RedriveResult,
        RedriveSpec,
        StreamInfo,
        StreamSpec,
    )
    from fx.usage import Usage

M = TypeVar("M")


@functools.cache
def _list_of(model: type[M]) -> TypeAdapter[list[M]]:
    """The validator of a JSON list of `model`, made on first use."""
    return TypeAdapter(list[model])  # type: ignore[valid-type]


_UNCHANGED: Any = object()  # "leave the sticky setting as it is", as distinct from None (turn it off)


# Pooled connections a client keeps: f.map() calls from this many threads at once without reconnecting.
MAX_CONNECTIONS = 100


class _Gateway:
    """What both clients hold: the gateway's URL and an HTTP client that sends the token.

    gateway None: the gateway and token the CLI would use (flags aside: `context`, FX_GATEWAY/FX_TOKEN, the
    current context, .fx/admin-token). A gateway given with no token sends none."""

    _HTTP: Any  # each client's httpx class

    def __init__(
        self,
        gateway: str | None = None,
        token: str | None = None,
        *,
        context: str | None = None,
        timeout: float = 60.0,
        transport: Any = None,
    ) -> None:
        if gateway is None:
            settings = config.resolve(token=token, context=context)
            gateway, token = settings.gateway, settings.token
        self.gateway = gateway.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
        # A plain-HTTP gateway with no proxy never uses TLS, so certifi's CA bundle (~15 ms to load, a CLI run's
        # largest single cost after its imports) is not loaded: the context given trusts no certificate at all,
        # and would fail closed were it ever used.
        plain = self.gateway.startswith("http://") and not getproxies()
        verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) if plain else True
        self._http = self._HTTP(
            base_url=self.gateway, headers=headers, timeout=timeout, transport=transport, limits=limits, verify=verify
        )


class Client(_Gateway):
    """The admin API, invokes and HTTP calls; `transport`: an httpx.BaseTransport (tests)."""

    _HTTP = httpx.Client
    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- admin API -------------------------------------------------------------

    def health(self) -> bool:
        return self._send("GET", "/system/health").status_code == 200

    def platform_version(self) -> str:
        return str(self._send("GET", "/system/version").json()["version"])

    def has_artifact(self, digest: str) -> bool:
        return self._exists(f"/system/artifacts/{digest}")

    def upload_artifact(self, digest: str, data: bytes) -> ArtifactInfo:
        r = self._send("PUT", f"/system/artifacts/{digest}", content=data, headers={"Content-Type": "application/zip"})
        return ArtifactInfo.model_validate_json(r.content)

    def has_blob(self, function: str, digest: str) -> bool:
        """Whether that blob is there for `function`'s calls, with more than half its TTL left."""
        return self._exists(f"/system/blobs/{_seg(function)}/{digest}")

    def upload_blob(self, function: str, digest: str, data: bytes) -> BlobInfo:
        """A body for `function`'s calls to name by reference (X-Fx-Body-Ref), kept for the platform's TTL."""
        headers = {"Content-Type": "application/octet-stream"}
        r = self._send("PUT", f"/system/blobs/{_seg(function)}/{digest}", content=data, headers=headers)
        return BlobInfo.model_validate_json(r.content)

    def deploy(self, spec: FunctionSpec, traffic: bool = True) -> DeployResult:
        """traffic=False: the new version gets none (started warm, reachable only when pinned)."""
        return self._put_function(spec, {} if traffic else {"traffic": "none"})

    def deploy_project(
        self, manifest: str | Path = "fx.yaml", names: list[str] | None = None, wait: float = 120.0
    ) -> list[DeployResult]:
        """What `fx deploy` does: the functions of fx.yaml (all, or those named) built, uploaded, dry-run by the
        server (nothing deployed if it refuses one), deployed; then up to `wait` s for their versions to start."""
        from fx import deploy  # which uses this client

        results = deploy.deploy(self, Path(manifest), names, progress=silent)
        return deploy.wait(self, results, wait, silent) if wait else results

    def validate(self, spec: FunctionSpec, traffic: bool = True) -> DeployResult:
        """The server's dry run of deploy(): FxError for whatever it would refuse, nothing applied."""
        return self._put_function(spec, {"dry_run": "true"} if traffic else {"dry_run": "true", "traffic": "none"})

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """An admin-API GET's JSON as it came, unvalidated (the CLI's read commands show it as they get it)."""
        return self._send("GET", path, params=params).json()

    def list_functions(self) -> list[FunctionInfo]:
        return _list_of(FunctionInfo).validate_json(self._send("GET", "/system/functions").content)

    def describe(self, name: str) -> FunctionInfo:
        return FunctionInfo.model_validate_json(self._send("GET", f"/system/functions/{_seg(name)}").content)

    def delete(self, name: str) -> None:
        self._send("DELETE", f"/system/functions/{_seg(name)}")

    def versions(self, name: str) -> list[VersionInfo]:
        return _list_of(VersionInfo).validate_json(
            self._send("GET", f"/system/functions/{_seg(name)}/versions").content
        )

    def version(self, name: str, qualifier: str | int) -> VersionInfo:
        """One version by number, alias or $LATEST."""
        r = self._send("GET", f"/system/functions/{_seg(name)}/versions/{_seg(str(qualifier))}")
        return VersionInfo.model_validate_json(r.content)

    def set_traffic(self, name: str, traffic: dict[int, int], sticky: str | None = _UNCHANGED) -> FunctionInfo:
        """A new split {version: percent}; `sticky` "header:<name>" / "cookie:<name>", None to turn it off."""
        body: dict[str, Any] = {"traffic": traffic} if sticky is _UNCHANGED else {"traffic": traffic, "sticky": sticky}
        return self._function("PUT", name, "traffic", json=body)

    def promote(self, name: str, spec: PromoteSpec) -> FunctionInfo:
        return self._function("POST", name, "promote", json=spec.model_dump(mode="json"))

    def rollback(self, name: str, force: bool = False) -> FunctionInfo:
        """force: go back even onto a version that failed to initialise (refused with 409 otherwise)."""
        return self._function("POST", name, "rollback", params={"force": "true"} if force else None)

    def set_alias(self, name: str, alias: str, version: int) -> FunctionInfo:
        body = AliasSpec(version=version).model_dump()
        return self._function("PUT", name, f"aliases/{_seg(alias)}", json=body)

    def delete_alias(self, name: str, alias: str) -> FunctionInfo:
        return self._function("DELETE", name, f"aliases/{_seg(alias)}")

    def logs(
        self,
        name: str,
        follow: bool = False,
        tail: int | None = None,
        since: datetime | None = None,
        timestamps: bool = False,
        on_cut: Callable[[int], None] | None = None,
    ) -> Iterator[str]:
        """Replica log lines, whole invocations: the last `tail` (the server's default 100; with `since`, all
        since then); with follow, a stream that ends only when the caller stops reading. `timestamps`: each line
        after the time its invocation began. `on_cut(N)` is told, before the first line, that only N were kept."""
        params = logs_params(follow, tail, since, timestamps)
        url = f"/system/functions/{_seg(name)}/logs"
        timeout = httpx.Timeout(self._http.timeout.connect, read=None) if follow else self._http.timeout
        try:
            with self._http.stream("GET", url, params=params, timeout=timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise _error(r)
                if on_cut and (cut := r.headers.get("Fx-Logs-Cut")):
                    on_cut(int(cut))
                yield from r.iter_lines()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    # --- secrets: values go in, only names and keys come back ----------------------

    def set_secret(self, name: str, values: dict[str, str]) -> SecretInfo:
        """Create or replace a secret: it becomes exactly these keys."""
        r = self._send("PUT", f"/system/secrets/{_seg(name)}", json={"values": values})
        return SecretInfo.model_validate_json(r.content)

    def list_secrets(self) -> list[SecretInfo]:
        return _list_of(SecretInfo).validate_json(self._send("GET", "/system/secrets").content)

    def delete_secret(self, name: str) -> None:
        self._send("DELETE", f"/system/secrets/{_seg(name)}")

    # --- APIs: routes in front of functions (fx.yaml `apis:`) -------------------------

    def put_api(self, spec: ApiSpec, dry_run: bool = False, deploying: list[str] | None = None) -> ApiSpec:
        """Create or replace an API; the answer is the API as stored. dry_run: the server's checks alone, the
        functions `deploying` (about to be deployed) not refused as missing."""
        from fx.api_models import ApiSpec

        body = spec.model_dump(mode="json", exclude={"name"})
        params = {"dry_run": "true", "deploying": deploying or []} if dry_run else None
        r = self._send("PUT", f"/system/apis/{_seg(spec.name)}", json=body, params=params)
        return ApiSpec.model_validate_json(r.content)

    def apis(self) -> list[ApiSpec]:
        from fx.api_models import ApiSpec

        return _list_of(ApiSpec).validate_json(self._send("GET", "/system/apis").content)

    def api(self, name: str) -> ApiSpec:
        from fx.api_models import ApiSpec

        return ApiSpec.model_validate_json(self._send("GET", f"/system/apis/{_seg(name)}").content)

    def delete_api(self, name: str) -> None:
        self._send("DELETE", f"/system/apis/{_seg(name)}")

    # --- the Lambda API's SigV4 access keys (`fx credentials`) ----------------------

    def create_credential(self, name: str = "") -> dict[str, Any]:
        """A new access key id and its secret: the only answer that holds the secret."""
        return self._send("POST", "/system/credentials", json={"name": name}).json()

    def list_credentials(self) -> list[dict[str, Any]]:
        return self._send("GET", "/system/credentials").json()

    def delete_credential(self, key_id: str) -> None:
        self._send("DELETE", f"/system/credentials/{_seg(key_id)}")

    # --- API keys of API routes (`fx apikey`) -----------------------------------------

    def create_api_key(
        self, name: str, api: str, rate: float | None = None, burst: int | None = None, quota: QuotaSpec | None = None
    ) -> IssuedApiKey:
        """A new key for `api`'s routes with `api_key: true`: the only answer that holds its value."""
        from fx.api_key_models import ApiKeySpec, IssuedApiKey

        spec = ApiKeySpec(name=name, api=api, rate=rate, burst=burst, quota=quota)
        r = self._send("POST", "/system/apikeys", json=spec.model_dump(mode="json"))
        return IssuedApiKey.model_validate_json(r.content)

    def list_api_keys(self) -> list[ApiKeyInfo]:
        """The keys with their limits and usage today and this month (UTC), never their values."""
        from fx.api_key_models import ApiKeyInfo

        return _list_of(ApiKeyInfo).validate_json(self._send("GET", "/system/apikeys").content)

    def delete_api_key(self, name: str) -> None:
        self._send("DELETE", f"/system/apikeys/{_seg(name)}")

    # --- events: dead letters, streams and buckets, the platform's status ---------

    def dead_letters(self, function: str | None = None, limit: int | None = None) -> list[DeadLetter]:
        from fx.event_models import DeadLetter

        params = {k: v for k, v in (("function", function), ("limit", limit)) if v is not None}
        return _list_of(DeadLetter).validate_json(self._send("GET", "/system/dlq", params=params).content)

    def dead_letter(self, letter_id: int) -> DeadLetterDetail:
        from fx.event_models import DeadLetterDetail

        return DeadLetterDetail.model_validate_json(self._send("GET", f"/system/dlq/{letter_id}").content)

    def redrive(self, spec: RedriveSpec) -> RedriveResult:
        from fx.event_models import RedriveResult

        r = self._send("POST", "/system/dlq/redrive", json=spec.model_dump(mode="json"))
        return RedriveResult.model_validate_json(r.content)

    def create_stream(self, name: str, spec: StreamSpec) -> StreamInfo:
        from fx.event_models import StreamInfo

        r = self._send("PUT", f"/system/streams/{_seg(name)}", json=spec.model_dump(mode="json"))
        return StreamInfo.model_validate_json(r.content)

    def list_streams(self) -> list[StreamInfo]:
        from fx.event_models import StreamInfo

        return _list_of(StreamInfo).validate_json(self._send("GET", "/system/streams").content)

    def delete_stream(self, name: str) -> None:
        self._send("DELETE", f"/system/streams/{_seg(name)}")

    def create_bucket(self, name: str, spec: BucketSpec) -> BucketInfo:
        from fx.event_models import BucketInfo

        r = self._send("PUT", f"/system/kv/{_seg(name)}", json=spec.model_dump(mode="json"))
        return BucketInfo.model_validate_json(r.content)

    def list_buckets(self) -> list[BucketInfo]:
        from fx.event_models import BucketInfo

        return _list_of(BucketInfo).validate_json(self._send("GET", "/system/kv").content)

    def delete_bucket(self, name: str) -> None:
        self._send("DELETE", f"/system/kv/{_seg(name)}")

    def publish(self, spec: PublishSpec) -> PublishResult:
        from fx.event_models import PublishResult

        r = self._send("POST", "/system/publish", json=spec.model_dump(mode="json"))
        return PublishResult.model_validate_json(r.content)

    def kv_put(self, bucket: str, key: str, value: str) -> KvPutResult:
        from fx.event_models import KvPutResult

        r = self._send("PUT", f"/system/kv/{_seg(bucket)}/keys/{_seg(key)}", json={"value": value})
        return KvPutResult.model_validate_json(r.content)

    def usage(self, since: float) -> Usage:
        """Billed usage per function version over the last `since` seconds (widened to whole hours)."""
        from fx.usage import Usage

        return Usage.model_validate_json(self._send("GET", "/system/usage", params={"since": since}).content)

    def status(self) -> PlatformStatus:
        from fx.event_models import PlatformStatus

        return PlatformStatus.model_validate_json(self._send("GET", "/system/status").content)

    # --- calling functions -----------------------------------------------------

    def gateway_metrics(self) -> str:
        """The Prometheus text of the gateway that answers (one of several behind a load balancer)."""
        return self._send("GET", "/metrics").text

    def invoke(
        self,
        name: str,
        event: Any,
        qualifier: str | None = None,
        async_: bool = False,
        by_reference_over: int | None = None,
    ) -> Any:
        """Lambda's Invoke API: the handler's result, or FunctionError. async_: the call is stored and run later
        (InvocationType Event); its call id is returned once the platform has stored it. by_reference_over: an
        event whose JSON is bigger is uploaded first (a blob, with the admin token) and the call names it, so it
        is not held to the gateway's request limit (synchronous calls only)."""
        request = _invoke_request(name, event, qualifier, async_)
        body: bytes = request["content"]
        if by_reference_over is not None and not async_ and len(body) > by_reference_over:
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            if not self.has_blob(name, digest):  # the same arguments as a recent call's are there already
                self.upload_blob(name, digest, body)
            request["content"] = b""
            request["headers"][BODY_REF] = digest
        return _invoke_answer(self._send(**request))

    def call(self, name: str, path: str = "/", method: str = "GET", **kwargs: Any) -> httpx.Response:
        """An HTTP-trigger call (/function/NAME/path); the function's answer is returned whatever its status."""
        url = f"/function/{_seg(name)}/{path.lstrip('/')}"
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    # --- plumbing --------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if r.status_code >= 400:
            raise _error(r)
        return r

    def _exists(self, url: str) -> bool:
        try:
            self._send("HEAD", url)
        except FxError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _put_function(self, spec: FunctionSpec, params: dict[str, str]) -> DeployResult:
        r = self._send("PUT", f"/system/functions/{_seg(spec.name)}", json=spec.model_dump(mode="json"), params=params)
        return DeployResult.model_validate_json(r.content)

    def _function(self, method: str, name: str, sub: str, **kwargs: Any) -> FunctionInfo:
        r = self._send(method, f"/system/functions/{_seg(name)}/{sub}", **kwargs)
        return FunctionInfo.model_validate_json(r.content)

    def _unreachable(self, exc: httpx.TransportError) -> FxError:
        return _unreachable(self.gateway, exc)


class AsyncClient(_Gateway):
    """The asyncio variant of Client for calling functions (the admin API is Client's); the same arguments."""

    _HTTP = httpx.AsyncClient
    _http: httpx.AsyncClient

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def invoke(self, name: str, event: Any, qualifier: str | None = None, async_: bool = False) -> Any:
        """As Client.invoke."""
        request = _invoke_request(name, event, qualifier, async_)
        try:
            r = await self._http.request(**request)
        except httpx.TransportError as exc:
            raise _unreachable(self.gateway, exc) from exc
        if r.status_code >= 400:
            raise _error(r)
        return _invoke_answer(r)

    async def call(self, name: str, path: str = "/", method: str = "GET", **kwargs: Any) -> httpx.Response:
        """As Client.call."""
        try:
            return await self._http.request(method, f"/function/{_seg(name)}/{path.lstrip('/')}", **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(self.gateway, exc) from exc


def _invoke_request(name: str, event: Any, qualifier: str | None, async_: bool) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if async_:
        headers["X-Amz-Invocation-Type"] = "Event"
    return {
        "method": "POST",
        "url": f"/2015-03-31/functions/{_seg(name)}/invocations",
        "content": json.dumps(event).encode(),
        "params": {"Qualifier": qualifier} if qualifier else None,
        "headers": headers,
    }


def _invoke_answer(r: httpx.Response) -> Any:
    if r.status_code == 202:
        return r.headers.get(CALL_ID)
    payload = _json_or_text(r)
    kind = r.headers.get(FUNCTION_ERROR_HEADER)
    if kind:
        raise FunctionError(kind, payload)
    return payload


def _unreachable(gateway: str, exc: httpx.TransportError) -> FxError:
    return unreachable(gateway, exc, timed_out=isinstance(exc, httpx.TimeoutException))


def silent(line: str) -> None:
    """Progress nobody reads: a program wants the results."""


def _seg(name: str) -> str:
    return quote(name, safe="")


def _json_or_text(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text


def _error(r: httpx.Response) -> FxError:
    return answer_error(r.status_code, r.content, r.reason_phrase)
