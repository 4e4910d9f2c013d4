"""API keys on API routes: a route with `api_key: true` needs an `x-api-key` header holding a key of its API.

The controller publishes the keys in KV fx_api_keys (fx.api_key_models.ApiKeyRecord as JSON), each with the sha256
of its value, never the value; the gateway follows the bucket as it follows the route tables and looks a
presented key up by its sha256. A missing, unknown or other API's key gets API Gateway's 403 {"message":
"Forbidden"}, whichever it was, so a caller learns nothing of which keys exist.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from hashlib import sha256

from fx import kv_watch, nats_client
from fx.protocol import KV_API_KEYS

from fx_gateway.api.decisions import Deny
from fx_gateway.api.metrics import denied
from fx_gateway.api.request import ApiRequest
from fx_gateway.config import Settings
from fx_gateway.nats_link import NatsLink
from fx_gateway.route_feed import follow_bucket

log = logging.getLogger("fx_gateway")

FORBIDDEN = Deny(403, "Forbidden")
HEADER = b"x-api-key"


@dataclass(frozen=True, slots=True, eq=False)
class ApiKey:
    id: str
    name: str
    api: str
    digest: bytes  # sha256 of the key's value
    rate: float | None  # requests per second, all gateways together
    burst: int | None
    quota: int | None  # requests per period, all gateways together
    period: str  # "day" or "month" (UTC)


def parse(text: bytes | str) -> ApiKey:
    """A key from its KV record. Raises ValueError naming what is wrong."""
    try:
        wire = json.loads(text)
        quota = wire.get("quota") or {}
        key = ApiKey(
            id=str(wire["id"]),
            name=str(wire["name"]),
            api=str(wire["api"]),
            digest=bytes.fromhex(wire["sha256"]),
            rate=float(wire["rate"]) if wire.get("rate") is not None else None,
            burst=int(wire["burst"]) if wire.get("burst") is not None else None,
            quota=int(quota["limit"]) if quota else None,
            period=str(quota.get("period", "day")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed API key record ({type(exc).__name__}: {exc})") from None
    if len(key.digest) != 32 or key.period not in ("day", "month") or (key.rate is not None and key.rate <= 0):
        raise ValueError("malformed API key record (sha256, quota period or rate)")
    return key


class ApiKeys:
    def __init__(self, settings: Settings, link: NatsLink) -> None:
        self.link = link
        self.by_digest: dict[bytes, ApiKey] = {}
        self.by_id: dict[str, ApiKey] = {}
        self._by_name: dict[str, ApiKey] = {}  # the KV key, for changes and removals
        self.loaded = False  # the initial keys are in

    def check(self, request: ApiRequest) -> Deny | str:
        """The id of the request's key if it is one of the request's API; else 403."""
        value = request.headers.get(HEADER)
        if value is not None:
            key = self.by_digest.get(sha256(value).digest())
            if key is not None and key.api == request.api:
                return key.id
        denied(request.api, request.route_key, "no_api_key")
        return FORBIDDEN

    def get(self, key_id: str) -> ApiKey | None:
        return self.by_id.get(key_id)

    def apply(self, name: str, value: bytes) -> None:
        try:
            key = parse(value)
        except ValueError as exc:
            log.error("API key %r unreadable, ignored: %s", name, exc)
            return
        self.remove(name)
        self._by_name[name] = self.by_id[key.id] = self.by_digest[key.digest] = key

    def remove(self, name: str) -> None:
        key = self._by_name.pop(name, None)
        if key is not None:
            self.by_id.pop(key.id, None)
            self.by_digest.pop(key.digest, None)

    async def watch(self, nc: nats_client.Client) -> None:
        """Follow KV fx_api_keys (again after every NATS reconnect, the keys held serving meanwhile)."""
        async for entry in kv_watch.follow(nc, lambda: follow_bucket(self.link, nc, KV_API_KEYS)):
            if entry is None:
                if not self.loaded:
                    self.loaded = True
                    log.info("API keys loaded: %d", len(self._by_name))
            elif entry.operation in kv_watch.DELETED:
                self.remove(entry.key)
            else:
                self.apply(entry.key, entry.value)
