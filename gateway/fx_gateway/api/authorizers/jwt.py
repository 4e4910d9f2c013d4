"""A JWT authorizer, as API Gateway HTTP APIs check JWTs: the token from the identity source (a "Bearer " prefix
dropped), its signature by the issuer's key of the token's kid (JWKS, authorizers/jwks.py) with an allowed algorithm
that fits the key, `iss` equal to the issuer, `aud` (or `client_id` when there is no `aud`) one of the audiences,
`exp`, `nbf` and `iat` within --jwt-clock-skew, and, on a route with scopes, one of them in the `scope` (or `scp`)
claim. joserfc does the JOSE work. A verified token is remembered (until it expires, --jwt-cache-entries tokens,
least recently used out first), so a caller's next requests cost a dictionary look-up, not a signature check."""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError
from joserfc.jws import JWSRegistry

from fx_gateway.api import metrics
from fx_gateway.api.authorizers import jwks
from fx_gateway.api.authorizers.jwks import Key
from fx_gateway.api.decisions import Allow, Deny
from fx_gateway.api.request import ApiRequest

if TYPE_CHECKING:  # services.py holds the authorizers' kinds
    from fx_gateway.api.services import ApiServices

# Asymmetric algorithms only: never "none", never HS* (whose "secret" would be the issuer's public key: the classic
# confusion). joserfc checks that the key of the token's kid is of the algorithm's type (and curve).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384")
_REGISTRY = JWSRegistry(algorithms=list(ALGORITHMS))
_SCOPE_CHARS = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def _unauthorized(description: str | None) -> Deny:
    challenge = f'Bearer error="invalid_token", error_description="{description}"' if description else "Bearer"
    return Deny(401, "Unauthorized", ((b"www-authenticate", challenge.encode()),))


NO_TOKEN = _unauthorized(None)
BAD_TOKEN = _unauthorized("the token is not valid")  # malformed, bad signature, unknown key, algorithm not allowed
EXPIRED = _unauthorized("the token has expired")
NOT_YET = _unauthorized("the token is not valid yet")
WRONG_ISSUER = _unauthorized("the token was not issued by the authorizer's issuer")
WRONG_AUDIENCE = _unauthorized("the token does not have a valid audience")  # API Gateway's own words


class _KeyNotHeld(Exception):
    def __init__(self, kid: str) -> None:
        self.kid = kid


@dataclass(frozen=True, slots=True)
class _Verified:
    """What a verified token allows, kept until it expires."""

    expires: float  # exp + the clock skew
    scopes: frozenset[str]
    allow: Allow  # for a route without scopes: requestContext.authorizer.jwt.scopes is null, as on API Gateway
    allow_scoped: Allow  # for a route with scopes: the token's scopes


class JwtAuthorizer:
    def __init__(self, name: str, spec: dict[str, Any], services: ApiServices) -> None:
        self.name = name
        settings = services.settings
        self.issuer: str = spec["issuer"]
        self.audience = frozenset(spec["audience"])
        self.sources = [spec["identity_source"]]  # one, as API Gateway's JWT authorizers have
        self.skew = int(settings.jwt_clock_skew)
        self.cache_entries = settings.jwt_cache_entries
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self.jwks = jwks.acquire(self.issuer, spec.get("jwks_uri"), settings, on_removed=self._cache.clear)
        self._claims = jwt.JWTClaimsRegistry(
            leeway=self.skew, iss={"essential": True, "value": self.issuer}, exp={"essential": True}
        )

    def decided(self, request: ApiRequest, scopes: list[str]) -> Allow | Deny | None:
        """The decision without awaiting anything: the front door's hot path (a remembered token, or one whose key
        is held). None when the token names a key not held: `authorize` then fetches the issuer's keys."""
        outcome = self._check(request, scopes)
        return None if isinstance(outcome, _KeyNotHeld) else outcome

    async def authorize(self, request: ApiRequest, scopes: list[str]) -> Allow | Deny:
        outcome = self._check(request, scopes)
        if isinstance(outcome, _KeyNotHeld):
            await self.jwks.fetch_for(outcome.kid)
            outcome = self._check(request, scopes)
            if isinstance(outcome, _KeyNotHeld):
                outcome = _counted(request, BAD_TOKEN)
        return outcome

    def close(self) -> None:
        self.jwks.release(self._cache.clear)

    def _check(self, request: ApiRequest, scopes: list[str]) -> Allow | Deny | _KeyNotHeld:
        values = request.identity(self.sources)
        if values is None:
            return _counted(request, NO_TOKEN)
        token = values[0]
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        verified = self._cache.get(token)
        if verified is not None and verified.expires <= time.time():
            del self._cache[token]
            verified = None
        if verified is None:
            try:
                verified = self._verify(token)
            except _KeyNotHeld as not_held:
                return not_held
            if isinstance(verified, Deny):
                return _counted(request, verified)
        else:
            self._cache.move_to_end(token)
        if not scopes:
            return verified.allow
        if verified.scopes.isdisjoint(scopes):
            return _counted(request, _forbidden(scopes))
        return verified.allow_scoped

    def _verify(self, token: str) -> _Verified | Deny:
        """Check the token with the keys held (no I/O); _KeyNotHeld if its kid names none of them."""
        if token.count(".") != 2:  # a JWS in compact form; a JWE (5 parts) is not a signed token
            return BAD_TOKEN
        try:
            claims = jwt.decode(token, self._key, registry=_REGISTRY).claims
        except _KeyNotHeld:
            raise
        except (JoseError, ValueError, TypeError, KeyError):
            return BAD_TOKEN
        try:
            self._claims.validate(claims)
        except ExpiredTokenError:
            return EXPIRED
        except (InvalidClaimError, MissingClaimError) as exc:
            if exc.claim in ("nbf", "iat"):
                return NOT_YET
            return WRONG_ISSUER if exc.claim == "iss" else BAD_TOKEN
        if not self._audience_ok(claims):
            return WRONG_AUDIENCE
        verified = _allowance(claims, self.skew)
        if self.cache_entries > 0:
            self._cache[token] = verified
            if len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
        return verified

    def _key(self, token: Any) -> Key:
        kid = token.headers().get("kid")
        if not isinstance(kid, str):
            raise ValueError("the token names no key (kid)")
        key = self.jwks.get(kid)
        if key is None:
            raise _KeyNotHeld(kid)
        return key

    def _audience_ok(self, claims: dict[str, Any]) -> bool:
        """`aud` must name one of the audiences; a token without `aud` is judged by `client_id`, as API Gateway
        does (Cognito's access tokens carry no aud)."""
        aud = claims["aud"] if "aud" in claims else claims.get("client_id")
        if isinstance(aud, str):
            return aud in self.audience
        return isinstance(aud, list) and any(isinstance(a, str) and a in self.audience for a in aud)


def _counted(request: ApiRequest, deny: Deny) -> Deny:
    metrics.denied(request.api, request.route_key, "unauthorized" if deny.status == 401 else "forbidden")
    return deny


def _forbidden(scopes: list[str]) -> Deny:
    # RFC 6750's scope characters only (no quote, backslash or non-ASCII), so the header stays well-formed
    named = " ".join(scope for scope in scopes if _SCOPE_CHARS.fullmatch(scope))
    challenge = f'Bearer error="insufficient_scope", scope="{named}"'
    return Deny(403, "Forbidden", ((b"www-authenticate", challenge.encode()),))


def _token_scopes(claims: dict[str, Any]) -> list[str]:
    """The `scope` claim (space-separated), or else `scp` (space-separated, or a list, as Okta and Azure give it)."""
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [s for s in value if isinstance(s, str)]
    return []


def _allowance(claims: dict[str, Any], skew: int) -> _Verified:
    """What the handler sees: every claim as a string, as API Gateway gives them (numbers in decimal, lists as
    [a b], objects as JSON), in requestContext.authorizer.jwt.claims (2.0) and requestContext.authorizer.claims
    (1.0, as a REST API's Cognito authorizer gives them)."""
    strings = {name: _as_string(value) for name, value in claims.items()}
    scopes = _token_scopes(claims)
    return _Verified(
        expires=float(claims["exp"]) + skew,
        scopes=frozenset(scopes),
        allow=Allow(v2={"jwt": {"claims": strings, "scopes": None}}, v1={"claims": strings}),
        allow_scoped=Allow(v2={"jwt": {"claims": strings, "scopes": scopes}}, v1={"claims": strings}),
    )


def _as_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + " ".join(_as_string(item) for item in value) + "]"
    return json.dumps(value, separators=(",", ":"))
