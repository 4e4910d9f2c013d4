"""fx.nats_auth: the authority's storage, the JWT claims and permissions, and a real nats-server trusting them."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import time
from pathlib import Path

import nacl.exceptions
import nacl.signing
import nats
import nats.errors
import nkeys
import pytest
from fx.nats_auth import (
    ALL,
    Authority,
    NatsAuthError,
    Permissions,
    Signer,
    decode_jwt,
    function_permissions,
    gateway_permissions,
    mint_function_creds,
    write_secret,
)

from tests.nats_server import nats_server


def jwt_of(creds: str) -> str:
    return creds.split("-----BEGIN NATS USER JWT-----\n", 1)[1].split("\n", 1)[0]


def verifies(token: str, public_key: str) -> bool:
    head, payload, sig = token.split(".")
    signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))[1:-2]  # prefix byte, key, CRC16
    try:
        nacl.signing.VerifyKey(raw).verify(f"{head}.{payload}".encode(), signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def test_an_authority_is_saved_as_private_files_and_loads_back(tmp_path: Path):
    directory = tmp_path / "nats-auth"
    authority = Authority.load_or_create(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    seeds = sorted(p.name for p in directory.glob("*.nk"))
    assert seeds == ["fx-account.nk", "fx-signing.nk", "operator.nk", "system-account.nk"]
    assert all(stat.S_IMODE((directory / name).stat().st_mode) == 0o600 for name in seeds)
    assert Authority.load_or_create(directory) == authority  # created once
    assert Authority.from_dict(authority.to_dict()) == authority
    assert Signer.load(directory) == authority.signer == Signer.from_dict(authority.signer.to_dict())
    assert authority.account_public.startswith("A") and authority.system_public != authority.account_public
    assert repr(authority) == "Authority()"  # no seed in logs


def test_a_damaged_authority_is_a_clear_error(tmp_path: Path):
    with pytest.raises(NatsAuthError, match="lacks signing"):
        Authority.from_dict({"operator": "x", "system": "y", "account": "z"})
    with pytest.raises(NatsAuthError, match="not an nkey seed"):
        Authority.from_dict({"operator": "SOX", "system": "y", "account": "z", "signing": "w"})
    with pytest.raises(NatsAuthError, match="cannot read the NATS signing key"):
        Signer.load(tmp_path)


def test_write_secret_replaces_a_read_only_file_with_the_mode_asked(tmp_path: Path):
    path = tmp_path / "nats.creds"
    write_secret(path, "one", 0o400)
    write_secret(path, "two", 0o400)
    assert path.read_text() == "two" and stat.S_IMODE(path.stat().st_mode) == 0o400
    assert [p.name for p in tmp_path.iterdir()] == ["nats.creds"]


def test_a_user_jwt_is_signed_by_the_signing_key_for_the_fx_account():
    authority = Authority.create()
    creds = authority.signer.mint("fx-controller", ALL)
    token = jwt_of(creds)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}
    claims = decode_jwt(token)
    signing_public = nkeys.from_seed(authority.signing.encode()).public_key.decode()
    assert claims["iss"] == signing_public and verifies(token, signing_public)
    assert claims["sub"].startswith("U") and claims["name"] == "fx-controller" and claims["jti"]
    nats_claims = claims["nats"]
    assert nats_claims["type"] == "user" and nats_claims["version"] == 2
    assert nats_claims["issuer_account"] == authority.account_public
    assert "pub" not in nats_claims and "sub" not in nats_claims and "exp" not in claims  # everything, no expiry
    seed = creds.split("-----BEGIN USER NKEY SEED-----\n", 1)[1].split("\n", 1)[0]
    assert nkeys.from_seed(seed.encode()).public_key.decode() == claims["sub"]


def test_a_functions_user_has_its_grant_its_inbox_replies_and_an_expiry():
    signer = Authority.create().signer
    before = time.time()
    claims = decode_jwt(jwt_of(mint_function_creds(signer, "create-user", 3, ["users.created"], ["orders.*"], 600)))
    assert claims["name"] == "fn/create-user/3"
    assert before + 600 - 1 <= claims["exp"] <= time.time() + 600
    assert claims["nats"]["pub"] == {"allow": ["users.created"]}
    assert claims["nats"]["sub"] == {"allow": ["orders.*", "_INBOX.fx-fn.create-user.>"]}
    assert claims["nats"]["resp"] == {"max": 1, "ttl": 0}


def test_an_empty_allow_list_denies_everything_rather_than_allowing_it():
    claims = function_permissions("quiet", publish=[], subscribe=[]).claims()
    assert claims["pub"] == {"deny": [">"]}  # NATS reads an absent allow-list as "everything"
    assert Permissions().claims()["sub"] == {"deny": [">"]}


def test_the_gateway_may_not_touch_fx_control_plane_subjects():
    perms = gateway_permissions()
    assert perms.publish == (">",) and perms.subscribe == (">",)  # triggers on any user subject
    followed = ("$KV.fx_routes.>", "$KV.fx_apis.>")  # read (watched), never written
    for subject in (*followed, "$KV.fx_functions.>", "$KV.fx_secrets.>", "$O.fx_artifacts.>", "$O.fx_blobs.>"):
        assert subject in perms.publish_deny
    assert not any("KV_fx_apis" in s or "KV_fx_routes" in s for s in perms.publish_deny)
    assert not any("OBJ_fx_blobs" in s for s in perms.publish_deny)  # read, to send blobs as bodies
    for stream in ("KV_fx_functions", "KV_fx_secrets", "OBJ_fx_artifacts"):
        assert f"$JS.API.*.*.{stream}" in perms.publish_deny  # STREAM.INFO, DIRECT.GET, CONSUMER.CREATE, ...
        assert f"$JS.API.*.*.*.{stream}" in perms.publish_deny  # STREAM.MSG.GET, CONSUMER.MSG.NEXT, ...
    for op in ("CREATE", "UPDATE", "DELETE", "PURGE"):  # a stream it made could mirror fx_functions
        assert f"$JS.API.STREAM.{op}.*" in perms.publish_deny
    assert {"fx.>", "_INBOX.fx-controller.>", "_INBOX.fx-fn.>"} <= set(perms.subscribe_deny)
    assert "_INBOX.fx-controller.>" in perms.publish_deny  # no forged answers to the controller's requests


def test_the_server_config_trusts_the_operator_and_preloads_both_accounts():
    authority = Authority.create()
    config = authority.server_config()
    assert f"system_account: {authority.system_public}\n" in config and "resolver: MEMORY\n" in config
    operator_jwt = config.split("operator: ", 1)[1].split("\n", 1)[0]
    operator = decode_jwt(operator_jwt)
    assert operator["nats"]["type"] == "operator" and operator["iss"] == operator["sub"]
    assert operator["nats"]["system_account"] == authority.system_public
    accounts = authority.account_jwts()
    assert set(accounts) == {authority.system_public, authority.account_public}
    for public, token in accounts.items():
        assert f"  {public}: {token}" in config and verifies(token, operator["sub"])
    fx = decode_jwt(accounts[authority.account_public])["nats"]
    assert fx["limits"]["disk_storage"] == -1 and fx["limits"]["mem_storage"] == -1  # JetStream on
    assert fx["signing_keys"] == [nkeys.from_seed(authority.signing.encode()).public_key.decode()]
    assert "disk_storage" not in decode_jwt(accounts[authority.system_public])["nats"]["limits"]


async def test_nats_server_accepts_minted_users_within_their_permissions_and_nobody_else(tmp_path: Path):
    authority = Authority.create()
    (tmp_path / "server.conf").write_text(authority.server_config())
    creds = {}
    for name, text in (
        ("admin", authority.signer.mint("admin")),
        ("fn", mint_function_creds(authority.signer, "f", 1, ["users.created"], [], 60)),
        ("expired", mint_function_creds(authority.signer, "f", 1, ["users.created"], [], -10)),
        ("stranger", Authority.create().signer.mint("stranger")),
    ):
        creds[name] = tmp_path / f"{name}.creds"
        write_secret(creds[name], text)
    violations: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        violations.append(exc)

    with nats_server(tmp_path / "store", tmp_path / "server.conf") as url:
        for refused in (None, creds["expired"], creds["stranger"]):
            with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
                await nats.connect(
                    url, user_credentials=str(refused) if refused else None, allow_reconnect=False, connect_timeout=2
                )
        admin = await nats.connect(url, user_credentials=str(creds["admin"]))
        kv = await admin.jetstream().create_key_value(bucket="fx_functions")  # JetStream is on for the fx account
        await kv.put("victim", b"DB_PASSWORD=x")
        got = await admin.subscribe("users.created")
        fn = await nats.connect(
            url, user_credentials=str(creds["fn"]), inbox_prefix="_INBOX.fx-fn.f", error_cb=on_error
        )
        await fn.publish("users.created", b"ann")
        assert (await got.next_msg(timeout=2)).data == b"ann"
        await fn.publish("fx.activate", b"{}")
        await fn.flush()
        await asyncio.sleep(0.1)
        assert any("permissions violation" in str(e).lower() and "fx.activate" in str(e) for e in violations)
        await fn.close()
        await admin.close()
    assert (tmp_path / "store" / "jetstream" / authority.account_public).is_dir()  # the fx account's own store


def test_the_gateway_reads_api_keys_but_writes_neither_them_nor_their_usage():
    perms = gateway_permissions()
    assert {"$KV.fx_api_keys.>", "$KV.fx_api_usage.>"} <= set(perms.publish_deny)
    assert not any("KV_fx_api_keys" in s for s in perms.publish_deny)  # watched, to check x-api-key
    assert "$JS.API.*.*.KV_fx_api_usage" in perms.publish_deny  # the counts are the controller's alone
