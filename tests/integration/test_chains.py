"""A chain on the real platform: examples/signup's create-user publishes users.created with FX_NATS_URL, and
welcome-mail, triggered by that subject, logs the mail."""

import json
from pathlib import Path

import httpx

from tests.integration.conftest import RunningPlatform
from tests.waiting import wait_for

SIGNUP = Path(__file__).resolve().parents[2] / "examples" / "signup"


def test_a_created_user_gets_a_welcome_mail(platform: RunningPlatform):
    deployed = platform.fx("deploy", cwd=SIGNUP)
    assert deployed.returncode == 0, deployed.stderr

    def create(email: str, name: str) -> str:
        r = httpx.post(f"{platform.gateway_url}/function/create-user", json={"email": email, "name": name}, timeout=30)
        assert r.status_code == 201, r.text
        user = r.json()
        assert user["email"] == email and user["id"]
        return f"welcome mail sent to {email} (user {user['id']})"

    def logs() -> str:
        return platform.fx("logs", "welcome-mail").stdout

    ann = create("ann@example.com", "Ann")
    wait_for(lambda: ann in logs(), 15, "Ann's welcome mail")  # welcome-mail starts from zero on its first event
    # A sentinel: NATS delivers Bob's event after any copy of Ann's, so once his mail is sent, hers would be too.
    bob = create("bob@example.com", "Bob")
    wait_for(lambda: bob in logs(), 15, "Bob's welcome mail")
    seen = logs()
    assert seen.count(ann) == 1 and seen.count(bob) == 1, f"an event ran the function twice:\n{seen}"

    r = httpx.post(f"{platform.gateway_url}/function/create-user", content=b"not json", timeout=30)
    assert r.status_code == 400 and json.loads(r.text)["error"]
