"""One issuer's signing keys (its JWKS), for the JWT authorizers: fetched on first use, refreshed in the background
every --jwks-refresh s, and at once (at most every --jwks-min-interval s) when a token names a key not held, so a
rotated key is picked up without a restart. A request whose key is held never waits; an issuer that is down keeps
the keys it published last, and is logged once per refresh interval. One issuer's keys serve every authorizer of
the gateway that trusts it (`acquire`), and outlive an API's change.

The gateway has no HTTP client of its own for this (its upstream code serves callers' requests); the two small GETs
of a fetch (OIDC discovery, then the key set) are the stdlib's urllib in a worker thread, off the event loop."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from fx_gateway.config import Settings
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

Key = RSAKey | ECKey
_KEY_TYPES: dict[str, type[RSAKey] | type[ECKey]] = {"RSA": RSAKey, "EC": ECKey}
_held: dict[tuple[str, str | None], Jwks] = {}  # (issuer, jwks_uri) -> its keys, for every authorizer trusting it


class JwksError(Exception):
    """The issuer's keys could not be had (unreachable, not JSON, too large...): the message says which."""


def acquire(issuer: str, jwks_uri: str | None, settings: Settings, on_removed: Callable[[], None]) -> Jwks:
    """The keys of that issuer, shared by every authorizer of this gateway that trusts it. An API's change remakes
    its authorizers (closing the old ones first, in the same loop turn): the new ones find the keys held, so a
    deploy costs no fetch, and none of the issuer's callers is refused if the issuer is down just then.
    `on_removed` is called when a key the issuer published before is gone (what it verified is not trusted)."""
    place = (issuer.rstrip("/"), jwks_uri)
    jwks = _held.get(place)
    if jwks is None:
        jwks = _held[place] = Jwks(place, settings)
    jwks.listeners.append(on_removed)
    return jwks


class Jwks:
    def __init__(self, place: tuple[str, str | None], settings: Settings) -> None:
        self.place = place
        self.issuer, self.configured_uri = place  # configured_uri None: from the OIDC discovery document
        self.settings = settings
        self.listeners: list[Callable[[], None]] = []  # the authorizers holding these keys
        self.keys: dict[str, Key] = {}
        self._fetch: asyncio.Task[None] | None = None  # the one fetch under way; every waiter shares it
        self._last_fetch = -float("inf")  # monotonic time the last fetch began
        self._logged_failure = -float("inf")  # monotonic time an unavailable issuer was last logged
        self._refresher: asyncio.Task[None] | None = None

    def get(self, kid: str) -> Key | None:
        """The key of that id, if held: no I/O. The first call starts the background refresh."""
        if self._refresher is None:
            self._refresher = spawn(self._refresh_every())
        return self.keys.get(kid)

    async def fetch_for(self, kid: str) -> Key | None:
        """The key of that id after fetching the key set again, if none was fetched in the last
        --jwks-min-interval s (a flood of tokens naming unknown keys costs the issuer one request per interval);
        None if it is still unknown or the issuer cannot be reached within --jwks-timeout."""
        if self._fetch is None and time.monotonic() - self._last_fetch >= self.settings.jwks_min_interval:
            self._fetch = spawn(self._refresh())
        if self._fetch is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._fetch), self.settings.jwks_timeout)
            except TimeoutError:
                return None
        return self.keys.get(kid)

    def release(self, on_removed: Callable[[], None]) -> None:
        """An authorizer is done with these keys; the last one's leaving ends the background work, after the
        current loop turn (an authorizer made again in it takes them over)."""
        if on_removed in self.listeners:
            self.listeners.remove(on_removed)
        if self.listeners:
            return
        try:
            asyncio.get_running_loop().call_soon(self._drop_if_unused)
        except RuntimeError:  # no loop: nothing can take them over
            self._drop_if_unused()

    def _drop_if_unused(self) -> None:
        if self.listeners or _held.get(self.place) is not self:
            return
        del _held[self.place]
        for task in (self._refresher, self._fetch):
            if task is not None:
                task.cancel()

    async def _refresh_every(self) -> None:
        while True:
            if self._fetch is None:
                self._fetch = spawn(self._refresh())
            await asyncio.shield(self._fetch)
            await asyncio.sleep(self.settings.jwks_refresh)

    async def _refresh(self) -> None:
        self._last_fetch = time.monotonic()
        try:
            keys = await asyncio.wait_for(asyncio.to_thread(self._download), self.settings.jwks_timeout)
        except (JwksError, TimeoutError) as exc:
            why = str(exc) or f"no answer within {self.settings.jwks_timeout:g} s"
            if time.monotonic() - self._logged_failure >= self.settings.jwks_refresh:
                self._logged_failure = time.monotonic()
                log.warning(
                    "JWT issuer %s: keys unavailable (%s); %d held keys still verify", self.issuer, why, len(self.keys)
                )
            return
        finally:
            self._fetch = None
        if self._logged_failure > -float("inf"):
            self._logged_failure = -float("inf")
            log.info("JWT issuer %s: keys available again (%d)", self.issuer, len(keys))
        removed = self.keys.keys() - keys.keys()
        self.keys = keys
        if removed:
            for listener in self.listeners:
                listener()

    def _download(self) -> dict[str, Key]:
        """Runs in a worker thread: the discovery document (unless jwks_uri is configured), then the key set."""
        uri = self.configured_uri
        if uri is None:
            discovery = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            uri = discovery.get("jwks_uri")
            if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
                raise JwksError(f"the discovery document of {self.issuer} has no http(s) jwks_uri")
        entries = self._get_json(uri).get("keys")
        if not isinstance(entries, list):
            raise JwksError(f"{uri}: no 'keys' list")
        return dict(filter(None, map(_signing_key, entries)))

    def _get_json(self, url: str) -> dict[str, Any]:
        limit = self.settings.jwks_max_bytes
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.settings.jwks_timeout) as response:
                body = response.read(limit + 1)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:  # not HTTP, cut short
            raise JwksError(f"{url}: {exc}") from None
        if len(body) > limit:
            raise JwksError(f"{url}: larger than --jwks-max-bytes ({limit})")
        try:
            document = json.loads(body)
        except ValueError:
            raise JwksError(f"{url}: not JSON") from None
        if not isinstance(document, dict):
            raise JwksError(f"{url}: not a JSON object")
        return document


def _signing_key(entry: object) -> tuple[str, Key] | None:
    """(kid, key) of a JWKS entry that can verify signatures; None for the others (encryption keys, key types no
    allowed algorithm uses, entries without a kid: API Gateway too finds the key by the token's kid)."""
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or not isinstance(entry.get("kid"), str):
        return None
    key_type = _KEY_TYPES.get(entry.get("kty"))  # type: ignore[arg-type]
    if key_type is None:
        return None
    try:
        return entry["kid"], key_type.import_key(entry)
    except (JoseError, ValueError, TypeError):
        return None
