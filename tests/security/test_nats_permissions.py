"""NATS identities on the real platform: a function with a grant can do what it was granted and nothing of fx's
control plane; a function without one gets no NATS at all; nobody connects anonymously; the gateway cannot
forge route tables, answer activations or read the function store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest

from tests.integration.conftest import RunningPlatform
from tests.security import nats_attacks


def deploy(platform: RunningPlatform, make_function, name: str, body: str, config: dict | None = None) -> None:
    project = make_function(name, body, imports="import json, os", config=config)
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr


def test_a_granted_function_gets_its_grant_and_none_of_fx_subjects(platform: RunningPlatform, make_function, tmp_path):
    deploy(
        platform,
        make_function,
        "victim",
        "return {'statusCode': 200, 'body': 'victim ' + os.environ['DB_PASSWORD'][:2]}",
        {"env": {"DB_PASSWORD": "s3cret"}},
    )
    out = tmp_path / "listener.out"
    deploy(
        platform,
        make_function,
        "listener",
        f"open({str(out)!r}, 'a').write(json.dumps(event) + '\\n')",
        {"triggers": [{"nats": "users.created"}]},
    )
    project = make_function("attacker", "pass", config={"timeout": 30, "nats": {"publish": ["users.created"]}})
    (project / "handler.py").write_text(Path(nats_attacks.__file__).read_text())
    assert platform.fx("deploy", cwd=project).returncode == 0

    r = httpx.post(f"{platform.gateway_url}/function/attacker", timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()
    granted = results.pop("pub users.created")
    assert results and all(outcome == "denied" for outcome in results.values()), json.dumps(results, indent=1)

    assert granted == "ok"  # the granted publish works and triggers the listener
    deadline = time.monotonic() + 15
    while not (out.exists() and "ann@example.com" in out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.exists() and "ann@example.com" in out.read_text()

    # the victim's route table was not forged: its cold call still reaches the victim
    assert httpx.get(f"{platform.gateway_url}/function/victim", timeout=30).text == "victim s3"


def test_a_function_without_a_grant_gets_no_nats(platform: RunningPlatform, make_function):
    deploy(
        platform,
        make_function,
        "plain",
        "return {'statusCode': 200, 'body': json.dumps(sorted(k for k in os.environ if k.startswith('FX_NATS')))}",
    )
    r = httpx.get(f"{platform.gateway_url}/function/plain", timeout=30)
    assert r.status_code == 200 and r.json() == []
    assert not (platform.state_dir / "fn" / "plain").exists()  # and no credentials were minted for it


def test_nats_refuses_anonymous_connections(platform: RunningPlatform):
    async def anonymous() -> None:
        await nats.connect(platform._platform.nats_url, allow_reconnect=False, connect_timeout=2)

    with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
        asyncio.run(anonymous())


def test_the_gateway_reads_route_tables_and_cannot_forge_them_or_serve_activations(
    platform: RunningPlatform, make_function
):
    deploy(platform, make_function, "victim", "return {'statusCode': 200, 'body': 'victim'}", {"env": {"K": "v"}})
    creds = Path(platform.state_dir) / "nats-auth" / "gateway.creds"

    async def as_gateway() -> dict[str, str]:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        nc = await nats.connect(platform._platform.nats_url, user_credentials=str(creds), error_cb=on_error)
        table = await (await nc.jetstream().key_value("fx_routes")).get("victim")  # reading route tables: allowed
        results = {"read fx_routes": "ok" if json.loads(table.value)["function"] == "victim" else "?"}
        attacks = [
            ("pub", "$KV.fx_routes.victim", b"{}"),
            ("pub", "$JS.API.STREAM.MSG.GET.KV_fx_functions", b"{}"),
            ("pub", "$JS.API.DIRECT.GET.KV_fx_functions", b"{}"),
            ("pub", "$KV.fx_secrets.x", b"{}"),
            ("pub", "$JS.API.STREAM.PURGE.KV_fx_routes", b"{}"),
            ("sub", "fx.activate", b""),
            ("sub", "_INBOX.fx-controller.>", b""),
            ("sub", "_INBOX.fx-fn.victim.>", b""),
        ]
        results.update(await nats_attacks.attempts(nc, errors, attacks))
        await nc.close()
        return results

    results = asyncio.run(as_gateway())
    assert results.pop("read fx_routes") == "ok"
    assert all(outcome == "denied" for outcome in results.values()), json.dumps(results, indent=1)
