"""The JWT authorizer alone, against a local issuer (tests/jwt_issuer.py: real keys, a real JWKS over HTTP on
127.0.0.1): what API Gateway's JWT authorizer accepts and refuses, and how keys are fetched, cached and rotated."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from fx_gateway.api import metrics
from fx_gateway.api.authorizers.jwt import NO_TOKEN, JwtAuthorizer
from fx_gateway.api.decisions import Allow, Deny
from fx_gateway.api.request import ApiRequest
from fx_gateway.config import Settings

from tests.jwt_issuer import Issuer, serving
from tests.waiting import until


@dataclass
class Services:
    settings: Settings


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with serving() as running:
        yield running


SOURCE = "$request.header.Authorization"
_made: list[JwtAuthorizer] = []


@pytest.fixture(autouse=True)
def closed() -> Iterator[None]:
    """Every authorizer a test made is closed after it (its background refresh cancelled), as the gateway does
    when the API changes."""
    yield
    while _made:
        _made.pop().close()


def authorizer(issuer: Issuer, spec: dict | None = None, **settings) -> JwtAuthorizer:
    spec = spec or {
        "issuer": issuer.url,
        "audience": ["fx-api", "other"],
        "identity_source": "$request.header.Authorization",
    }
    made = JwtAuthorizer("keycloak", spec, Services(replace(Settings(), **settings)))
    _made.append(made)
    return made


def request(authorization: str | None) -> ApiRequest:
    headers = {b"authorization": authorization.encode()} if authorization is not None else {}
    return ApiRequest("shop", "GET /users", "GET", "/users", "", headers, "127.0.0.1", "shop.example.com")


async def decide(auth: JwtAuthorizer, token: str | None, scopes: list[str] | None = None) -> Allow | Deny:
    return await auth.authorize(request(None if token is None else f"Bearer {token}"), scopes or [])


def challenge(decision: Allow | Deny) -> str:
    assert isinstance(decision, Deny)
    return dict(decision.headers)[b"www-authenticate"].decode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_valid_token_reaches_the_handler_with_its_claims_as_strings(issuer):
    auth = authorizer(issuer)
    decision = await decide(auth, issuer.token(groups=["a", "b"], admin=True, profile={"x": 1}))
    assert isinstance(decision, Allow)
    claims = decision.v2["jwt"]["claims"]
    assert claims["sub"] == "alice" and claims["aud"] == "fx-api" and claims["scope"] == "read"
    assert claims["exp"].isdigit() and claims["groups"] == "[a b]" and claims["admin"] == "true"
    assert json.loads(claims["profile"]) == {"x": 1}
    assert decision.v2["jwt"]["scopes"] is None  # the route asks for none, as API Gateway then gives
    assert decision.v1 == {"claims": claims}


async def test_the_bearer_prefix_is_optional_and_any_case(issuer):
    auth = authorizer(issuer)
    token = issuer.token()
    for value in (token, f"bearer {token}", f"BEARER {token}"):
        assert isinstance(await auth.authorize(request(value), []), Allow)


async def test_no_token_is_401_with_a_bare_bearer_challenge(issuer):
    decision = await decide(authorizer(issuer), None)
    assert decision == Deny(401, "Unauthorized", ((b"www-authenticate", b"Bearer"),))
    assert issuer.fetches == 0  # refused before any key is needed


@pytest.mark.parametrize(
    ("claims", "description"),
    [
        ({"exp": int(time.time()) - 120}, "the token has expired"),
        ({"nbf": int(time.time()) + 600}, "the token is not valid yet"),
        ({"iat": int(time.time()) + 600}, "the token is not valid yet"),
        ({"aud": "someone-else"}, "the token does not have a valid audience"),
        ({"aud": ["a", "b"]}, "the token does not have a valid audience"),
        ({"aud": None, "client_id": "not-ours"}, "the token does not have a valid audience"),
        ({"aud": None}, "the token does not have a valid audience"),
        ({"iss": "http://127.0.0.1:1/realms/evil"}, "the token was not issued by the authorizer's issuer"),
        ({"exp": None}, "the token is not valid"),  # fx requires exp: a token that never expires is refused
    ],
)
async def test_refused_claims_are_401_invalid_token_naming_why(issuer, claims, description):
    decision = await decide(authorizer(issuer), issuer.token(**claims))
    assert isinstance(decision, Deny) and (decision.status, decision.message) == (401, "Unauthorized")
    assert challenge(decision) == f'Bearer error="invalid_token", error_description="{description}"'


async def test_times_within_the_clock_skew_pass(issuer):
    now = int(time.time())
    auth = authorizer(issuer, jwt_clock_skew=60)
    assert isinstance(await decide(auth, issuer.token(exp=now - 30, nbf=now + 30, iat=now + 30)), Allow)


async def test_client_id_stands_for_a_missing_aud_and_any_listed_audience_passes(issuer):
    auth = authorizer(issuer)
    assert isinstance(await decide(auth, issuer.token(aud=None, client_id="fx-api")), Allow)
    assert isinstance(await decide(auth, issuer.token(aud=["account", "other"])), Allow)
    # aud present wins: client_id is not looked at then, as on API Gateway
    assert isinstance(await decide(auth, issuer.token(aud="account", client_id="fx-api")), Deny)


async def test_a_forged_signature_is_refused(issuer):
    auth = authorizer(issuer)
    header, payload, _ = issuer.token().split(".")
    other = Issuer.new_key("k1")  # same kid, another key
    forged = issuer.token(key=other).split(".")[2]
    decision = await decide(auth, f"{header}.{payload}.{forged}")
    assert challenge(decision) == 'Bearer error="invalid_token", error_description="the token is not valid"'
    tampered = issuer.token(sub="mallory").split(".")[1]
    assert isinstance(await decide(auth, f"{header}.{tampered}.{issuer.token().split('.')[2]}"), Deny)


async def test_alg_none_is_refused(issuer):
    auth = authorizer(issuer)
    header = b64(json.dumps({"alg": "none", "kid": "k1", "typ": "JWT"}).encode())
    payload = b64(json.dumps(issuer.claims()).encode())
    assert isinstance(await decide(auth, f"{header}.{payload}."), Deny)
    assert issuer.fetches == 0  # refused from its header


async def test_hs256_signed_with_the_public_key_as_secret_is_refused(issuer):
    """The classic confusion: a verifier that took the alg from the token would check this HMAC with the issuer's
    public key, which the attacker knows."""
    auth = authorizer(issuer)
    assert isinstance(await decide(auth, issuer.token()), Allow)  # the key is held now
    public_pem = issuer.key.as_pem(private=False)
    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    payload = b64(json.dumps(issuer.claims(sub="mallory")).encode())
    signature = b64(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    decision = await decide(auth, f"{header}.{payload}.{signature}")
    assert isinstance(decision, Deny) and decision.status == 401


async def test_a_key_of_another_type_than_the_algorithm_is_refused(issuer):
    """An ES256 token whose kid names the issuer's RSA key: the algorithm must fit the key."""
    auth = authorizer(issuer)
    ec = Issuer.new_key("k1", "P-256")
    assert isinstance(await decide(auth, issuer.token(key=ec, alg="ES256")), Deny)


@pytest.mark.parametrize(
    ("kind", "alg"), [("RSA", "RS384"), ("RSA", "RS512"), ("RSA", "PS256"), ("P-256", "ES256"), ("P-384", "ES384")]
)
async def test_every_allowed_algorithm_verifies(issuer, kind, alg):
    key = Issuer.new_key("k2", kind)
    issuer.keys.append(key)
    assert isinstance(await decide(authorizer(issuer), issuer.token(key=key, alg=alg)), Allow)


async def test_malformed_tokens_are_401(issuer):
    auth = authorizer(issuer)
    for token in ("abc", "a.b.c", "a.b.c.d.e", issuer.token() + "x", "Bearer"):
        assert isinstance(await decide(auth, token), Deny)


async def test_a_route_with_scopes_needs_one_of_them(issuer):
    auth = authorizer(issuer)
    token = issuer.token(scope="users:read users:write")
    allowed = await decide(auth, token, ["users:admin", "users:write"])
    assert isinstance(allowed, Allow) and allowed.v2["jwt"]["scopes"] == ["users:read", "users:write"]
    decision = await decide(auth, token, ["users:admin"])
    assert isinstance(decision, Deny) and (decision.status, decision.message) == (403, "Forbidden")
    assert challenge(decision) == 'Bearer error="insufficient_scope", scope="users:admin"'
    odd = await decide(auth, token, ['say"hi', "naïve", "users:admin"])  # no quote or non-ASCII in the header
    assert challenge(odd) == 'Bearer error="insufficient_scope", scope="users:admin"'
    assert isinstance(await decide(auth, issuer.token(scope=None, scp=["users:admin"]), ["users:admin"]), Allow)
    assert isinstance(await decide(auth, issuer.token(scope=None), ["users:admin"]), Deny)


async def test_keys_are_fetched_once_and_a_verified_token_is_remembered_until_it_expires(issuer):
    auth = authorizer(issuer)
    token = issuer.token(exp=int(time.time()) + 2)
    for _ in range(5):
        assert isinstance(await decide(auth, token), Allow)
    assert (issuer.discoveries, issuer.fetches) == (1, 1)
    assert len(auth._cache) == 1
    short = authorizer(issuer, jwt_clock_skew=0)
    assert isinstance(await decide(short, token), Allow)

    async def refused() -> bool:
        return isinstance(await decide(short, token), Deny)

    await until(refused, 30, "the remembered token to expire with the token")
    assert challenge(await decide(short, token)).endswith('"the token has expired"')
    assert len(short._cache) == 0


async def test_the_token_cache_is_bounded(issuer):
    auth = authorizer(issuer, jwt_cache_entries=3)
    for n in range(10):
        assert isinstance(await decide(auth, issuer.token(sub=f"user{n}")), Allow)
    assert len(auth._cache) == 3
    uncached = authorizer(issuer, jwt_cache_entries=0)
    assert isinstance(await decide(uncached, issuer.token()), Allow) and len(uncached._cache) == 0


async def test_a_rotated_key_is_fetched_when_a_token_names_it_and_the_old_one_stops_verifying(issuer):
    auth = authorizer(issuer, jwks_min_interval=0)
    old = issuer.token()
    assert isinstance(await decide(auth, old), Allow)
    issuer.rotate("k2")
    assert isinstance(await decide(auth, issuer.token()), Allow)
    assert issuer.fetches == 2
    assert isinstance(await decide(auth, old), Deny)  # its key left the JWKS: the remembered token is forgotten


async def test_unknown_keys_cause_at_most_one_fetch_per_min_interval(issuer):
    auth = authorizer(issuer, jwks_min_interval=3600)
    assert isinstance(await decide(auth, issuer.token()), Allow)
    stranger = Issuer.new_key("k-unknown")
    for n in range(20):
        assert isinstance(await decide(auth, issuer.token(key=stranger, sub=f"u{n}")), Deny)
    assert issuer.fetches == 1


async def test_an_issuer_that_is_down_answers_401_and_is_logged_once(issuer, caplog):
    issuer.down = True
    auth = authorizer(issuer, jwks_min_interval=0)
    with caplog.at_level(logging.WARNING, logger="fx_gateway"):
        for _ in range(3):
            decision = await decide(auth, issuer.token())
            assert isinstance(decision, Deny) and decision.status == 401
    warnings = [r for r in caplog.records if "keys unavailable" in r.getMessage()]
    assert len(warnings) == 1 and issuer.url in warnings[0].getMessage()
    issuer.down = False
    assert isinstance(await decide(auth, issuer.token()), Allow)


async def test_keys_held_keep_verifying_while_the_issuer_is_down(issuer):
    auth = authorizer(issuer, jwks_min_interval=0, jwt_cache_entries=0)
    assert isinstance(await decide(auth, issuer.token()), Allow)
    issuer.down = True
    await auth.jwks.fetch_for("k1")  # the refresh fails: the keys it had stay
    assert isinstance(await decide(auth, issuer.token(sub="bob")), Allow)


async def test_a_configured_jwks_uri_skips_discovery(issuer):
    spec = {"issuer": issuer.url, "audience": ["fx-api"], "jwks_uri": f"{issuer.url}/jwks"}
    auth = authorizer(issuer, spec | {"identity_source": SOURCE})
    assert isinstance(await decide(auth, issuer.token()), Allow)
    assert (issuer.discoveries, issuer.fetches) == (0, 1)


async def test_an_oversized_key_set_is_refused(issuer):
    auth = authorizer(issuer, jwks_max_bytes=100)
    assert isinstance(await decide(auth, issuer.token()), Deny)


async def test_the_identity_source_may_be_another_header(issuer):
    auth = authorizer(
        issuer, {"issuer": issuer.url, "audience": ["fx-api"], "identity_source": "$request.header.X-Token"}
    )
    req = request(None)
    req.headers[b"x-token"] = issuer.token().encode()
    assert isinstance(await auth.authorize(req, []), Allow)
    assert isinstance(await auth.authorize(request(f"Bearer {issuer.token()}"), []), Deny)


async def test_decided_answers_from_held_keys_without_waiting_and_leaves_unknown_keys_to_authorize(issuer):
    auth = authorizer(issuer)
    assert auth.decided(request(f"Bearer {issuer.token()}"), []) is None  # no key held yet: nothing fetched here
    assert issuer.fetches == 0
    assert isinstance(await decide(auth, issuer.token()), Allow)  # authorize fetched the keys
    fresh = issuer.token(sub="bob")  # not remembered: verified in the call, with the held key
    assert isinstance(auth.decided(request(f"Bearer {fresh}"), []), Allow)
    assert isinstance(auth.decided(request(f"Bearer {fresh}"), ["admin"]), Deny)
    assert auth.decided(request(None), []) == NO_TOKEN


async def test_refusals_are_counted_by_reason(issuer):
    auth = authorizer(issuer)
    before = dict(metrics._denials)
    await decide(auth, None)
    await decide(auth, issuer.token(aud="nope"))
    await decide(auth, issuer.token(), ["admin"])
    grown = {key: count - before.get(key, 0) for key, count in metrics._denials.items() if count != before.get(key)}
    assert grown == {("shop", "GET /users", "unauthorized"): 2, ("shop", "GET /users", "forbidden"): 1}


async def test_an_issuer_that_never_answers_costs_a_request_one_fetch_timeout(issuer):
    """A listener that accepts and says nothing: the request waits --jwks-timeout, then 401; it is not held."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        auth = authorizer(issuer, {"issuer": url, "audience": ["fx-api"], "identity_source": SOURCE}, jwks_timeout=0.5)
        decision = await decide(auth, issuer.token(iss=url))
        assert isinstance(decision, Deny) and decision.status == 401


async def test_an_issuer_that_answers_something_not_http_is_401_and_logged(issuer, caplog):
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}"

        def babble() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"HELLO THERE\r\n\r\n")

        thread = threading.Thread(target=babble, daemon=True)
        thread.start()
        auth = authorizer(issuer, {"issuer": url, "audience": ["fx-api"], "identity_source": SOURCE})
        with caplog.at_level(logging.WARNING, logger="fx_gateway"):
            decision = await decide(auth, issuer.token(iss=url))
        thread.join()
    assert isinstance(decision, Deny) and decision.status == 401
    assert any("keys unavailable" in record.getMessage() for record in caplog.records)


async def test_an_apis_change_keeps_the_issuers_keys(issuer):
    """The gateway closes an API's authorizers and makes them again in one loop turn: the new ones find the keys
    held, so a deploy while the issuer is down refuses no one. Once no authorizer trusts the issuer, they go."""
    first = authorizer(issuer)
    assert isinstance(await decide(first, issuer.token()), Allow)
    issuer.down = True
    first.close()
    second = authorizer(issuer)
    assert isinstance(second.decided(request(f"Bearer {issuer.token(sub='bob')}"), []), Allow)
    assert issuer.fetches == 1
    second.close()
    await asyncio.sleep(0)  # the loop turn in which another authorizer could have taken them over
    issuer.down = False
    third = authorizer(issuer)
    assert third.decided(request(f"Bearer {issuer.token()}"), []) is None  # nothing held: authorize fetches
    assert isinstance(await decide(third, issuer.token()), Allow) and issuer.fetches == 2
