"""JWT authorizers on the real platform, with tokens from a real Keycloak (tests/keycloak.py): an API deployed with
`fx deploy` from an fx.yaml whose authorizers trust Keycloak's realms; tokens from Keycloak's token endpoint, as a
client application gets them. One Keycloak and one platform serve the module.

The platform runs with --jwt-clock-skew 0 (a 2 s token expires in 2 s, not 62) and --jwks-min-interval 1 (a rotated
key is looked for within a second of the first token that names it)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.keycloak import Keycloak, Realm, distribution
from tests.waiting import wait_for

from .conftest import RunningPlatform

ECHO = """
import json


def handler(event, context):
    return {"statusCode": 200, "body": json.dumps(event["requestContext"].get("authorizer"))}
"""


class Realms:
    """What the tests use of Keycloak: the realm `fx` (clients for the API's audience, for another, and one whose
    tokens live 2 s; the user alice) and the realm `rotating`, whose key the rotation test changes."""

    def __init__(self, keycloak: Keycloak) -> None:
        self.fx = keycloak.realm("fx", ["users:read", "users:write"])
        self.app = self.fx.client("fx-app", audience="fx-api")
        self.stranger = self.fx.client("stranger", audience="other-api")
        self.brief = self.fx.client("brief", audience="fx-api", lifespan=2)
        self.alice = self.fx.user("alice")
        self.rotating = keycloak.realm("rotating", [])
        self.rotating_app = self.rotating.client("fx-app", audience="fx-api")

    def user_token(self, scope: str = "") -> str:
        return self.app.token(scope, username="alice", password=self.alice)


@pytest.fixture(scope="module")
def realms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realms]:
    keycloak = Keycloak(distribution(), tmp_path_factory.mktemp("keycloak") / "keycloak.log")
    try:
        yield Realms(keycloak)
    finally:
        keycloak.stop()


@pytest.fixture(scope="module")
def gateway(realms: Realms, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("api-jwt")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FX_JWT_CLOCK_SKEW", "0")
        env.setenv("FX_JWKS_MIN_INTERVAL", "1")
        platform = RunningPlatform(root / "state", root / "fx-config.json")
    try:
        deploy(platform, root / "shop", realms.fx, realms.rotating)
        yield platform.gateway_url
    finally:
        platform.stop()


def deploy(platform: RunningPlatform, project: Path, realm: Realm, rotating: Realm) -> None:
    """The project a user writes: a function, and an API whose routes need Keycloak's tokens."""
    project.mkdir()
    (project / "echo.py").write_text(ECHO)
    manifest = {
        "functions": {"echo": {"handler": "echo.handler"}},
        "apis": {
            "shop": {
                "authorizers": {
                    "keycloak": {"jwt": {"issuer": realm.issuer, "audience": ["fx-api"]}},
                    "rotating": {"jwt": {"issuer": rotating.issuer, "audience": ["fx-api"]}},
                },
                "routes": {
                    "GET /me": {"function": "echo", "auth": "keycloak"},
                    "GET /v1/me": {"function": "echo", "auth": "keycloak", "payload": "1.0"},
                    "POST /users": {"function": "echo", "auth": "keycloak", "scopes": ["users:write", "users:admin"]},
                    "GET /rotating": {"function": "echo", "auth": "rotating"},
                    "GET /open": {"function": "echo"},
                },
            }
        },
    }
    (project / "fx.yaml").write_text(yaml.safe_dump(manifest))
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr + deployed.stdout
    url = f"{platform.gateway_url}/open"
    wait_for(lambda: httpx.get(url, timeout=30).status_code == 200, 60, "the API's routes to be served")


def call(gateway: str, path: str, token: str | None, method: str = "GET") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.request(method, f"{gateway}{path}", headers=headers, timeout=30)


def header(token: str) -> dict:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def challenge(answer: httpx.Response) -> str:
    return answer.headers["www-authenticate"]


def test_a_keycloak_token_reaches_the_handler_with_its_claims(realms, gateway):
    token = realms.user_token()
    answer = call(gateway, "/me", token)
    assert answer.status_code == 200, answer.text
    jwt = answer.json()["jwt"]
    assert jwt["claims"]["preferred_username"] == "alice" and jwt["claims"]["aud"] == "fx-api"
    assert jwt["claims"]["iss"] == realms.fx.issuer and jwt["claims"]["exp"].isdigit()
    assert jwt["scopes"] is None  # the route asks for none
    v1 = call(gateway, "/v1/me", token)
    assert v1.status_code == 200, v1.text
    assert v1.json()["claims"]["preferred_username"] == "alice"


def test_no_token_or_a_broken_one_is_401(realms, gateway):
    answer = call(gateway, "/me", None)
    assert (answer.status_code, answer.json(), challenge(answer)) == (401, {"message": "Unauthorized"}, "Bearer")
    assert call(gateway, "/me", "not-a-jwt").status_code == 401
    forged = realms.user_token().rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    answer = call(gateway, "/me", forged)
    assert answer.status_code == 401 and 'error="invalid_token"' in challenge(answer)


def test_a_token_for_another_audience_is_401(realms, gateway):
    answer = call(gateway, "/me", realms.stranger.token())
    assert answer.status_code == 401 and answer.json() == {"message": "Unauthorized"}
    assert (
        challenge(answer)
        == 'Bearer error="invalid_token", error_description="the token does not have a valid audience"'
    )


def test_a_route_with_scopes_needs_one_of_them(realms, gateway):
    allowed = call(gateway, "/users", realms.user_token("users:write"), "POST")
    assert allowed.status_code == 200, allowed.text
    assert "users:write" in allowed.json()["jwt"]["scopes"]
    refused = call(gateway, "/users", realms.user_token("users:read"), "POST")
    assert (refused.status_code, refused.json()) == (403, {"message": "Forbidden"})
    assert challenge(refused) == 'Bearer error="insufficient_scope", scope="users:write users:admin"'
    assert call(gateway, "/me", realms.user_token("users:read")).status_code == 200  # no scopes on that route


def test_an_expired_token_is_401(realms, gateway):
    token = realms.brief.token()  # lives 2 s
    # It may still be valid for its first moments; then the gateway must refuse it, remembered or not.
    expired = wait_for(
        lambda: (answer := call(gateway, "/me", token)).status_code == 401 and answer,
        60,
        "the gateway to refuse a token past its exp",
        interval=0.5,
    )
    assert challenge(expired) == 'Bearer error="invalid_token", error_description="the token has expired"'


def test_a_rotated_key_is_picked_up_without_a_restart(realms, gateway):
    before = realms.rotating_app.token()
    assert call(gateway, "/rotating", before).status_code == 200
    old_kids = realms.rotating.kids()
    realms.rotating.rotate_keys()
    after = realms.rotating_app.token()
    assert header(after)["kid"] not in old_kids  # signed by the new key
    wait_for(
        lambda: call(gateway, "/rotating", after).status_code == 200,
        60,
        "the gateway to accept a token signed by Keycloak's new key",
        interval=0.5,
    )
    # The old key left the realm's JWKS when the gateway fetched it for the new one: what it signed is refused.
    assert call(gateway, "/rotating", before).status_code == 401
