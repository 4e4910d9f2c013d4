"""Lambda authorizers: a function decides who may call an API route (API Gateway's REQUEST authorizers).

The function gets the request's head as an authorizer event (payload 2.0 or 1.0, api/authorizers/events.py)
and answers either a simple response (`{"isAuthorized": bool, "context": {...}}`, payload 2.0 only) or an IAM
policy (`{"principalId", "policyDocument", "context"}`), evaluated against each request's method ARN.

Answers are cached by the values of the identity sources for `ttl` seconds, as API Gateway caches them: an IAM
policy is evaluated again for every request, so one cached policy may allow one route and deny another; a
simple response holds for every route of the authorizer. Requests that find the same identity being asked
about wait for that one call instead of making their own. A failed call is not cached.

Outcomes, as API Gateway answers them: a missing identity source, 401 without calling the function; denied,
403; the function failing, timing out or answering something unusable, 500 (logged, with the reason).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fx_gateway.api import metrics
from fx_gateway.api.authorizers import events as authorizer_events
from fx_gateway.api.authorizers.iam_policy import Policy, PolicyError
from fx_gateway.api.decisions import Allow, Deny
from fx_gateway.api.request import ApiRequest
from fx_gateway.api.services import ApiServices
from fx_gateway.tasks import spawn

log = logging.getLogger("fx_gateway")

UNAUTHORIZED = Deny(401, "Unauthorized")
FORBIDDEN = Deny(403, "Forbidden")
FAILED = Deny(500, "Internal Server Error")


class AuthorizerError(Exception):
    """The authorizer function failed, timed out, or answered what API Gateway would refuse."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One answer of the authorizer function: what it decides for every request of the same identity."""

    policy: Policy | None  # None: a simple response, decided by `authorized` alone
    authorized: bool  # a simple response's isAuthorized
    allow: Allow  # what the handler sees when the request is allowed

    def decide(self, request: ApiRequest) -> Allow | Deny:
        if self.policy is not None:
            allowed = self.policy.allows(authorizer_events.request_arn(request))
        else:
            allowed = self.authorized
        return self.allow if allowed else FORBIDDEN


def parse_response(body: bytes, simple: bool, payload: str) -> Verdict:
    """The function's answer as a Verdict; AuthorizerError naming what is wrong with it."""
    try:
        answer = json.loads(body)
    except ValueError:
        raise AuthorizerError(f"the answer is not JSON: {body[:80]!r}") from None
    if not isinstance(answer, dict):
        raise AuthorizerError(f"the answer must be a JSON object, not {type(answer).__name__}")
    context = answer.get("context") or {}
    if not isinstance(context, dict):
        raise AuthorizerError("context must be an object")
    if payload == "1.0" and not all(_scalar(value) for value in context.values()):
        raise AuthorizerError("context values must be strings, numbers or booleans (payload 1.0, as REST APIs)")
    # REST hands context values to the handler as strings ("true", "1"); payload 2.0 keeps their JSON types.
    flat = {key: value if isinstance(value, str) else json.dumps(value) for key, value in context.items()}
    if simple:
        authorized = answer.get("isAuthorized")
        if not isinstance(authorized, bool):
            raise AuthorizerError(f"isAuthorized must be true or false, not {authorized!r}")
        return Verdict(None, authorized, Allow(v2={"lambda": context}, v1=flat))
    principal = answer.get("principalId")
    if not isinstance(principal, str) or not principal:
        raise AuthorizerError("principalId must be a non-empty string")
    try:
        policy = Policy.parse(answer.get("policyDocument"))
    except PolicyError as exc:
        raise AuthorizerError(str(exc)) from None
    return Verdict(policy, False, Allow(v2={"lambda": context}, v1={**flat, "principalId": principal}))


def _key(identity: list[str]) -> bytes:
    """A digest: identities may be 32 KiB each. repr() of the list cannot confuse ["a,b"] with ["a", "b"]."""
    return hashlib.sha256(repr(identity).encode()).digest()


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


class LambdaAuthorizer:
    def __init__(
        self, name: str, spec: dict[str, Any], services: ApiServices, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`spec`: the wire JSON's `lambda` object (`function`, `payload`, `simple_responses`,
        `identity_source`, `ttl`)."""
        settings = services.settings
        self.name = name
        self.function: str = spec["function"]
        self.payload: str = spec["payload"]
        self.simple = bool(spec["simple_responses"])
        self.sources: list[str] = list(spec["identity_source"])
        # API Gateway caches only what it can key: without identity sources every request asks the function.
        self.ttl = float(spec["ttl"]) if self.sources and settings.authorizer_cache_entries > 0 else 0.0
        self.services = services
        self.timeout = settings.authorizer_timeout
        self.max_bytes = settings.authorizer_max_bytes
        self.max_entries = settings.authorizer_cache_entries
        self.clock = clock
        # digest of the identity values -> (expiry, verdict). The TTL is the same for every entry, so insertion
        # order is expiry order: the oldest entry is both the first to expire and the one evicted when full, and
        # an identity asked about again had its expired entry dropped from the front before it is stored anew.
        self._cache: OrderedDict[bytes, tuple[float, Verdict]] = OrderedDict()
        self._asking: dict[bytes, asyncio.Task[Verdict | AuthorizerError]] = {}
        self._closed = False

    def decided(self, request: ApiRequest, scopes: list[str]) -> Allow | Deny | None:
        """The decision if it is known without calling the function (no identity, or a cached answer), else None:
        the front door's hot path, answered in the request's own loop turn."""
        identity = request.identity(self.sources)
        if identity is None:
            metrics.denied(request.api, request.route_key, "unauthorized")
            return UNAUTHORIZED
        if self.ttl <= 0:
            return None
        cached = self._cache.get(_key(identity))
        return self._judge(request, cached[1]) if cached is not None and cached[0] > self.clock() else None

    async def authorize(self, request: ApiRequest, scopes: list[str]) -> Allow | Deny:
        """`scopes` are a JWT authorizer's; a Lambda authorizer decides on the whole request."""
        decision = self.decided(request, scopes)
        if decision is not None:
            return decision
        identity = request.identity(self.sources) or []
        outcome = await (self._ask(request, identity) if self.ttl <= 0 else self._shared(request, identity))
        if isinstance(outcome, AuthorizerError):
            metrics.denied(request.api, request.route_key, "authorizer_error")
            return FAILED
        return self._judge(request, outcome)

    def close(self) -> None:
        """The API changed or went: forget the cache. Calls under way still answer the requests waiting for
        them (within the timeout), and store nothing."""
        self._closed = True
        self._cache.clear()

    def _judge(self, request: ApiRequest, verdict: Verdict) -> Allow | Deny:
        decision = verdict.decide(request)
        if decision is FORBIDDEN:
            metrics.denied(request.api, request.route_key, "forbidden")
        return decision

    async def _shared(self, request: ApiRequest, identity: list[str]) -> Verdict | AuthorizerError:
        """The one call in flight for this identity, made if there is none."""
        key = _key(identity)
        task = self._asking.get(key)
        if task is None:
            task = self._asking[key] = spawn(self._ask_and_keep(key, request, identity))
        # Shielded: a caller that hangs up does not cancel the call the others wait for.
        return await asyncio.shield(task)

    async def _ask_and_keep(self, key: bytes, request: ApiRequest, identity: list[str]) -> Verdict | AuthorizerError:
        try:
            outcome = await self._ask(request, identity)
        finally:
            del self._asking[key]
        if isinstance(outcome, Verdict) and not self._closed:
            self._keep(key, outcome)
        return outcome

    def _keep(self, key: bytes, verdict: Verdict) -> None:
        now = self.clock()
        cache = self._cache
        while cache and (len(cache) >= self.max_entries or next(iter(cache.values()))[0] <= now):
            cache.popitem(last=False)
        cache[key] = (now + self.ttl, verdict)

    async def _ask(self, request: ApiRequest, identity: list[str]) -> Verdict | AuthorizerError:
        """Call the function; an error is returned, not raised: it is an outcome shared by every waiter."""
        build = authorizer_events.event_v2 if self.payload == "2.0" else authorizer_events.event_v1
        event = json.dumps(build(request, identity)).encode()
        result = await self.services.invoke(self.function, event, self.timeout)  # bounded by the timeout
        try:
            if result.function_error is not None:
                raise AuthorizerError(f"the function failed: {result.body[:200]!r}")
            if result.by_gateway and result.status == 504:  # the invoke's timeout, or a hold's, or the function's
                raise AuthorizerError(
                    f"no answer in time ({result.body[:200]!r}; --authorizer-timeout {self.timeout:g})"
                )
            if result.status != 200:
                who = "the gateway could not call it" if result.by_gateway else "its call failed"
                raise AuthorizerError(f"{who} ({result.status}): {result.body[:200]!r}")
            if len(result.body) > self.max_bytes:
                raise AuthorizerError(
                    f"the answer is {len(result.body)} bytes, more than --authorizer-max-bytes {self.max_bytes}"
                )
            return parse_response(result.body, self.simple, self.payload)
        except AuthorizerError as exc:
            error = exc
        log.warning(
            "API %s: Lambda authorizer %s (function %s) answered 500 to %s %s: %s",
            request.api,
            self.name,
            self.function,
            request.method,
            request.path,
            error,
        )
        return error
