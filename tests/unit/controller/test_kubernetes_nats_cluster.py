"""NATS as a JetStream cluster on Kubernetes: the leader renders the servers' cluster block, with a route password."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fx_controller.backends.kubernetes import nats_identities
from fx_controller.backends.kubernetes.config import KubeConfig

from .kube_fakes import NATS_CFG, FakeApi

ROUTES = ("fx-nats-0.fx-nats-cluster.fx.svc:6222", "fx-nats-1.fx-nats-cluster.fx.svc:6222")


def test_the_routes_come_from_the_environment() -> None:
    env = {"FX_K8S_NATS_ROUTES": f" {ROUTES[0]}, {ROUTES[1]},"}
    assert KubeConfig.from_env(env).nats_routes == ROUTES
    assert KubeConfig.from_env({}).nats_routes == ()


async def test_a_cluster_config_has_password_protected_routes(tmp_path: Path) -> None:
    api = FakeApi(cfg=dataclasses.replace(NATS_CFG, nats_routes=ROUTES))
    await nats_identities.prepare_platform(api, tmp_path)
    stored = await api.read_secret("prod-nats-auth")
    password = stored[nats_identities.ROUTE_KEY]
    assert len(password) >= 32
    conf = stored["nats.conf"]
    assert "resolver: MEMORY" in conf and "cluster {" in conf and "listen: 0.0.0.0:6222" in conf
    assert f"password: {password}" in conf  # a route must present it to be accepted
    for route in ROUTES:
        assert f"nats-route://fx-route:{password}@{route}" in conf


async def test_a_later_leader_renders_the_config_for_the_servers_it_is_given(tmp_path: Path) -> None:
    single = FakeApi(cfg=NATS_CFG)
    await nats_identities.prepare_platform(single, tmp_path / "a")
    before = await single.read_secret("prod-nats-auth")
    assert "cluster {" not in before["nats.conf"]
    # `helm upgrade --set nats.cluster.enabled=true`: the same authority, now with routes; and back.
    clustered = FakeApi(cfg=dataclasses.replace(NATS_CFG, nats_routes=ROUTES))
    clustered.secrets = single.secrets
    await nats_identities.prepare_platform(clustered, tmp_path / "b")
    after = await clustered.read_secret("prod-nats-auth")
    assert "cluster {" in after["nats.conf"] and after["nats.conf"].startswith(before["nats.conf"])
    assert after[nats_identities.ROUTE_KEY] == before[nats_identities.ROUTE_KEY]  # made once
    back = FakeApi(cfg=NATS_CFG)
    back.secrets = clustered.secrets
    await nats_identities.prepare_platform(back, tmp_path / "c")
    assert (await back.read_secret("prod-nats-auth"))["nats.conf"] == before["nats.conf"]
