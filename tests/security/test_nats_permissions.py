"""NATS identities on the real platform: a function with a grant can do what it was granted and nothing of fx's
control plane; a function without one gets no NATS at all; nobody connects anonymously; the gateway cannot
forge route tables or blobs, answer activations or read the function store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from fx.nats_auth import Authority, mint_function_creds, write_secret
from fx.protocol import RouteTable, VersionRoute
from fx_controller.backends.local_sandbox import run_dir

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
    # The listener reports through its private directory: the sandbox lets a function write nowhere else.
    out = run_dir(platform.state_dir) / "listener" / "listener.out"
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
            ("pub", "$JS.API.STREAM.MSG.GET.KV_fx_secrets", b"{}"),
            ("pub", "$JS.API.STREAM.MSG.GET.KV_fx_credentials", b"{}"),  # the Lambda API's access keys
            ("pub", "$JS.API.DIRECT.GET.KV_fx_credentials", b"{}"),
            ("pub", "$KV.fx_api_keys.forged", b"{}"),  # API keys: followed (their sha256), never written
            ("pub", "$JS.API.STREAM.MSG.GET.KV_fx_api_usage", b"{}"),  # quotas' counts: the controller's alone
            ("pub", "$KV.fx_api_usage.forged", b"0"),
            ("sub", "fx.apikeys.usage", b""),  # no forged totals or N for the other gateways
            ("pub", "$JS.API.STREAM.PURGE.KV_fx_routes", b"{}"),
            ("pub", "$JS.API.STREAM.CREATE.EVIL", b'{"name": "EVIL", "mirror": {"name": "KV_fx_functions"}}'),
            ("pub", "$JS.API.STREAM.DELETE.FX_ASYNC", b""),
            ("pub", "$O.fx_blobs.M.aGVsbG8", b"{}"),  # a blob's metadata: read to send it, never written
            ("pub", "$O.fx_blobs.C.forged", b"forged body"),
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


def test_the_gateway_cannot_be_made_to_write_a_route_table_for_a_caller(platform, make_function, tmp_path):
    """The gateway publishes results where callers say (an async call's X-Fx-Callback-Subject, a NATS trigger
    message's reply subject): pointed at $KV.fx_routes.<victim> with a forged table, NATS refuses the write."""
    deploy(platform, make_function, "victim", "return {'statusCode': 200, 'body': 'victim'}")
    assert httpx.get(f"{platform.gateway_url}/function/victim", timeout=30).text == "victim"
    # Each marks that it ran in its private directory: the sandbox lets a function write nowhere else.
    ran = {name: run_dir(platform.state_dir) / name / "ran" for name in ("echo", "relay")}
    deploy(
        platform,
        make_function,
        "echo",
        f"open({str(ran['echo'])!r}, 'w').close(); return {{'statusCode': 200, 'body': event['body']}}",
    )
    deploy(
        platform,
        make_function,
        "relay",
        f"open({str(ran['relay'])!r}, 'w').close(); return json.loads(event['data'])",
        {"triggers": [{"nats": "users.created"}]},
    )
    forged = RouteTable("victim", 2**62, {"1": 100}, {"1": VersionRoute(["127.0.0.1:9"], 0)}).to_json()

    r = httpx.post(
        f"{platform.gateway_url}/async-function/echo/",
        content=forged,
        headers={"X-Fx-Callback-Subject": "$KV.fx_routes.victim"},
        timeout=30,
    )
    assert r.status_code in (202, 400), r.text  # 400: the gateway refuses such a subject before NATS does

    creds = tmp_path / "attacker.creds"
    signer = Authority.load(platform.state_dir / "nats-auth").signer
    write_secret(creds, mint_function_creds(signer, "attacker", 1, ["users.created"], [], 60))

    async def publish_as_a_granted_function() -> None:
        nc = await nats.connect(platform._platform.nats_url, user_credentials=str(creds))
        await nc.publish("users.created", forged, reply="$KV.fx_routes.victim")
        await nc.close()

    asyncio.run(publish_as_a_granted_function())
    deadline = time.monotonic() + 20
    expected = [ran["relay"]] + ([ran["echo"]] if r.status_code == 202 else [])
    while not all(p.exists() for p in expected) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(p.exists() for p in expected), "the functions did not run"
    time.sleep(1)  # their results went out (or were refused) right after

    async def victims_table() -> RouteTable:
        nc = await platform.nats()
        entry = await (await nc.jetstream().key_value("fx_routes")).get("victim")
        await nc.close()
        return RouteTable.from_json(entry.value)

    table = asyncio.run(victims_table())
    assert table.revision < 2**62 and "127.0.0.1:9" not in json.dumps(table.to_json().decode())
    assert httpx.get(f"{platform.gateway_url}/function/victim", timeout=30).text == "victim"
