"""FunctionCreds: NATS credentials only for a granted version, private files, renewed while replicas live."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import nats
import pytest
from fx.models import FunctionSpec
from fx.nats_auth import Authority, decode_jwt, write_secret
from fx_controller.backends.base import ReplicaSpec
from fx_controller.backends.local_nats import FunctionCreds

from tests.nats_server import nats_server
from tests.waiting import until

DIGEST = "sha256:" + "0" * 64


def replica(rid: str = "r1", version: int = 1, **spec) -> ReplicaSpec:
    return ReplicaSpec(rid, "create-user", version, DIGEST, FunctionSpec(name="create-user", artifact=DIGEST, **spec))


def claims(path: Path) -> dict:
    return decode_jwt(path.read_text().split("-----BEGIN NATS USER JWT-----\n", 1)[1].split("\n", 1)[0])


def test_an_ungranted_replica_gets_no_nats_at_all(tmp_path: Path):
    creds = FunctionCreds(tmp_path / "fn", "nats://127.0.0.1:4222", Authority.create().signer, 60)
    assert creds.env(replica()) == {}
    assert not (tmp_path / "fn").exists()


def test_a_granted_version_gets_a_private_creds_file_of_its_grant(tmp_path: Path):
    creds = FunctionCreds(tmp_path / "fn", "nats://127.0.0.1:4222", Authority.create().signer, 60)
    env = creds.env(replica(nats={"publish": ["users.created"]}))
    path = Path(env.pop("FX_NATS_CREDS"))
    assert env == {"FX_NATS_URL": "nats://127.0.0.1:4222", "FX_NATS_INBOX_PREFIX": "_INBOX.fx-fn.create-user"}
    assert path == tmp_path / "fn" / "create-user" / "nats-v1.creds"
    assert stat.S_IMODE(path.stat().st_mode) == 0o400 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert claims(path)["nats"]["pub"] == {"allow": ["users.created"]}
    other = Path(creds.env(replica("r2", 2, nats={"subscribe": ["orders.*"]}))["FX_NATS_CREDS"])
    assert other != path and claims(other)["nats"]["pub"] == {"deny": [">"]}  # each version its own grant


def test_the_file_belongs_to_the_uid_the_function_runs_as(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("giving a file to another uid needs root")
    nobody = (65534, 65534)
    signer = Authority.create().signer
    creds = FunctionCreds(tmp_path / "fn", "nats://n:4222", signer, 60, owner_of={"create-user": nobody}.get)
    path = Path(creds.env(replica(nats={"publish": ["a.b"]}))["FX_NATS_CREDS"])
    assert (path.stat().st_uid, path.stat().st_gid) == nobody


def test_without_a_signer_a_granted_replica_gets_the_url_but_no_creds(tmp_path: Path):
    env = FunctionCreds(tmp_path / "fn", "nats://n:4222", None, 60).env(replica(nats={"publish": ["a.b"]}))
    assert env == {"FX_NATS_URL": "nats://n:4222", "FX_NATS_INBOX_PREFIX": "_INBOX.fx-fn.create-user"}


async def test_live_replicas_creds_are_renewed_and_a_gone_ones_are_not(tmp_path: Path):
    creds = FunctionCreds(tmp_path / "fn", "nats://127.0.0.1:4222", Authority.create().signer, 0.3)
    live = Path(creds.env(replica("r1", 1, nats={"publish": ["a.b"]}))["FX_NATS_CREDS"])
    gone = Path(creds.env(replica("r2", 2, nats={"publish": ["a.b"]}))["FX_NATS_CREDS"])
    creds.forget("r2")
    first_live, first_gone = claims(live), claims(gone)
    await asyncio.sleep(1)  # JWT times are whole seconds
    creds.start()
    await asyncio.sleep(0.25)
    await creds.close()
    renewed = claims(live)
    assert renewed["iat"] > first_live["iat"] and renewed["exp"] > first_live["exp"]
    assert renewed["sub"] == first_live["sub"]  # the same user: its seed in the file still matches
    assert claims(gone) == first_gone


async def test_at_expiry_a_connection_ends_and_the_renewed_file_connects_again(tmp_path: Path):
    """nats-server ends a connection when its JWT expires (nats-py closes it for good); the file, renewed while
    the replica lives, still connects: a handler that keeps a client reconnects when it finds it closed."""
    authority = Authority.create()
    (tmp_path / "server.conf").write_text(authority.server_config())
    admin_creds = tmp_path / "admin.creds"
    write_secret(admin_creds, authority.signer.mint("admin"))
    with nats_server(tmp_path / "store", tmp_path / "server.conf") as url:
        creds = FunctionCreds(tmp_path / "fn", url, authority.signer, 2)
        path = creds.env(replica(nats={"publish": ["users.created"]}))["FX_NATS_CREDS"]
        creds.start()
        admin = await nats.connect(url, user_credentials=str(admin_creds))
        sub = await admin.subscribe("users.created")
        first = await nats.connect(url, user_credentials=path)
        await until(lambda: first.is_closed, timeout=6)  # its JWT expired after 2 s
        again = await nats.connect(url, user_credentials=path)
        await again.publish("users.created", b"still here")
        assert (await sub.next_msg(timeout=2)).data == b"still here"
        await again.close()
        await admin.close()
        await creds.close()
