"""Replica tokens: derived per version from the controller's key, given to its replicas, put in its route."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest
from fx.models import FunctionSpec
from fx.protocol import ActivationRequest
from fx_controller.backends.base import ReplicaSpec
from fx_controller.backends.kubernetes import manifests, nats_identities
from fx_controller.backends.local import replica_env
from fx_controller.replicas.tokens import KEY_FILE, ReplicaTokens, load_key

from tests.unit.controller.conftest import route_table
from tests.unit.controller.kube_fakes import CFG, DIGEST, NATS_CFG, FakeApi, settle

KEY = b"k" * 64


def test_a_token_is_stable_per_version_and_differs_between_versions_and_functions() -> None:
    tokens = ReplicaTokens(KEY)
    assert tokens.token("hello", 1) == ReplicaTokens(KEY).token("hello", 1)
    assert tokens.token("hello", 1) == hmac.new(KEY, b"hello/1", hashlib.sha256).hexdigest()
    assert len({tokens.token("hello", 1), tokens.token("hello", 2), tokens.token("hello1", 1)}) == 3
    assert ReplicaTokens(b"j" * 64).token("hello", 1) != tokens.token("hello", 1)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ReplicaTokens(b"short")


def test_the_key_file_is_made_once_and_only_its_owner_may_read_it(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    key = load_key(path)
    assert len(key) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == key


async def test_a_versions_replicas_and_route_carry_its_token(controller, deployed, backend, settings) -> None:
    await deployed("hello")
    assert (await controller.activator.activate(ActivationRequest("hello", "1"))).ok
    expected = ReplicaTokens(load_key(settings.state_dir / KEY_FILE)).token("hello", 1)
    assert backend.started[0].token == expected
    assert (await route_table(controller, "hello")).versions["1"].token == expected


def test_the_local_backend_gives_the_token_in_the_replica_environment(tmp_path: Path) -> None:
    spec = FunctionSpec(name="hello", artifact=DIGEST)
    replica = ReplicaSpec("r1", "hello", 1, DIGEST, spec, token="t" * 64)
    env = replica_env(replica, tmp_path / "a.zip", tmp_path, 100, "unix:/run/x.sock", {})
    assert env["FX_REPLICA_TOKEN"] == "t" * 64
    assert "FX_REPLICA_TOKEN" not in replica_env(
        ReplicaSpec("r1", "hello", 1, DIGEST, spec), tmp_path, tmp_path, 1, "", {}
    )


def test_a_kubernetes_deployment_carries_its_versions_token() -> None:
    spec = FunctionSpec(name="hello", artifact=DIGEST)
    container = manifests.deployment(CFG, "hello", 1, DIGEST, spec, "uid", "t" * 64)["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in container["containers"][0]["env"]}
    assert env["FX_REPLICA_TOKEN"] == "t" * 64


async def test_on_kubernetes_the_key_is_made_once_in_a_secret_and_outlives_the_state_dir(tmp_path: Path) -> None:
    api = FakeApi(cfg=NATS_CFG)
    await nats_identities.prepare_replica_token_key(api, tmp_path)
    first = load_key(tmp_path / KEY_FILE)
    assert (await api.read_secret("prod-nats-auth-replica-token"))["key"] == first.decode()
    fresh = tmp_path / "restarted"  # a new controller pod: an empty state dir
    fresh.mkdir()
    await nats_identities.prepare_replica_token_key(api, fresh)
    assert load_key(fresh / KEY_FILE) == first


async def test_a_pool_pods_assignment_carries_the_versions_token(pooled) -> None:
    _, backend, _, asked, _ = pooled
    replica = ReplicaSpec("r1", "hello", 1, DIGEST, FunctionSpec(name="hello", artifact=DIGEST), token="t" * 64)
    await backend.start_replica(replica)
    await settle()
    ((_, env),) = asked
    assert env["FX_REPLICA_TOKEN"] == "t" * 64
