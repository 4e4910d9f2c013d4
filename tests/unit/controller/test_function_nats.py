"""FunctionCreds: NATS credentials only for a granted version, private files, renewed while replicas live."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from fx.models import FunctionSpec
from fx.nats_auth import Authority, decode_jwt
from fx_controller.backends.base import ReplicaSpec
from fx_controller.function_nats import FunctionCreds

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


def test_without_a_signer_a_granted_replica_gets_the_url_but_no_creds(tmp_path: Path):
    env = FunctionCreds(tmp_path / "fn", "nats://n:4222", None, 60).env(replica(nats={"publish": ["a.b"]}))
    assert env == {"FX_NATS_URL": "nats://n:4222", "FX_NATS_INBOX_PREFIX": "_INBOX.fx-fn.create-user"}


async def test_live_replicas_creds_are_renewed_and_a_gone_ones_are_not(tmp_path: Path):
    creds = FunctionCreds(tmp_path / "fn", "nats://127.0.0.1:4222", Authority.create().signer, 0.3)
    live = Path(creds.env(replica("r1", 1, nats={"publish": ["a.b"]}))["FX_NATS_CREDS"])
    gone = Path(creds.env(replica("r2", 2, nats={"publish": ["a.b"]}))["FX_NATS_CREDS"])
    creds.forget("r2")
    first_live, first_gone = claims(live)["sub"], claims(gone)["sub"]
    creds.start()
    await asyncio.sleep(0.25)
    await creds.close()
    assert claims(live)["sub"] != first_live and claims(gone)["sub"] == first_gone
