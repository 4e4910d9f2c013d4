"""A chain on the real platform: examples/signup's create-user publishes users.created with FX_NATS_URL, and
welcome-mail, triggered by that subject, logs the mail."""

import json
import time
from pathlib import Path

import httpx

from tests.integration.conftest import RunningPlatform

SIGNUP = Path(__file__).resolve().parents[2] / "examples" / "signup"


def test_a_created_user_gets_a_welcome_mail(platform: RunningPlatform):
    deployed = platform.fx("deploy", cwd=SIGNUP)
    assert deployed.returncode == 0, deployed.stderr

    r = httpx.post(
        f"{platform.gateway_url}/function/create-user", json={"email": "ann@example.com", "name": "Ann"}, timeout=30
    )
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email"] == "ann@example.com" and user["id"]

    expected = f"welcome mail sent to ann@example.com (user {user['id']})"
    deadline = time.monotonic() + 15  # welcome-mail starts from zero on its first event
    logs = ""
    while expected not in logs and time.monotonic() < deadline:
        time.sleep(0.2)
        logs = platform.fx("logs", "welcome-mail").stdout
    assert expected in logs, f"welcome-mail's log:\n{logs}"
    assert logs.count(expected) == 1  # the one event ran the function once

    r = httpx.post(f"{platform.gateway_url}/function/create-user", content=b"not json", timeout=30)
    assert r.status_code == 400 and json.loads(r.text)["error"]
