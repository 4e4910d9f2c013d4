"""The kubernetes backend's side of secrets: one Secret per fx secret, taken in by the Deployments of the versions
naming it (envFrom), the values never in the Function mirror; the copies follow the store, and the errors of a
refused write name no value."""

from __future__ import annotations

import base64

import pytest
from fx.models import FunctionSpec
from fx_controller.backends.base import ReplicaEvent, ReplicaSpec
from fx_controller.backends.kubernetes import manifests
from fx_controller.backends.kubernetes.config import KubeConfig
from fx_controller.backends.kubernetes.secrets import KubeSecrets, SecretCopyError
from kubernetes.client.exceptions import ApiException

from .kube_fakes import settle

CFG = KubeConfig(namespace="fx", instance="prod")
DIGEST = "sha256:" + "ab" * 32
VALUE = "hunter2-do-not-show"


class FakeSecretApi:
    def __init__(self) -> None:
        self.cfg = CFG
        self.secrets: dict[str, dict] = {"prod-secret-gone": {}, "prod-secret-db": {}}
        self.refuse: int | None = None

    async def apply_secret(self, body: dict) -> None:
        if self.refuse:
            raise ApiException(status=self.refuse, reason="Forbidden")
        self.secrets[body["metadata"]["name"]] = body

    async def delete_secret(self, name: str) -> None:
        self.secrets.pop(name, None)

    async def secret_names(self, selector: str) -> list[str]:
        assert selector.split(",") == [
            "app.kubernetes.io/name=fx",
            "app.kubernetes.io/instance=prod",
            "app.kubernetes.io/component=secret",
        ]
        return list(self.secrets)


def test_an_fx_secret_is_a_labelled_opaque_secret_of_its_release() -> None:
    body = manifests.secret(CFG, "db", {"DB_PASSWORD": VALUE})
    assert body["metadata"]["name"] == "prod-secret-db" and body["metadata"]["namespace"] == "fx"
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/name": "fx",
        "app.kubernetes.io/instance": "prod",
        "app.kubernetes.io/component": "secret",
        "fx.dev/secret": "db",
    }
    assert body["type"] == "Opaque" and base64.b64decode(body["data"]["DB_PASSWORD"]).decode() == VALUE


def test_a_version_takes_its_secrets_from_their_secrets_and_holds_no_value() -> None:
    spec = FunctionSpec(name="hello", artifact=DIGEST, secrets=["db", "stripe"], env={"MODE": "prod"})
    d = manifests.deployment(CFG, "hello", 1, DIGEST, spec, "uid-1")
    (c,) = d["spec"]["template"]["spec"]["containers"]
    assert c["envFrom"] == [{"secretRef": {"name": "prod-secret-db"}}, {"secretRef": {"name": "prod-secret-stripe"}}]
    assert {e["name"] for e in c["env"]} >= {"MODE", "_HANDLER"}
    # The Function resource mirrors the spec: the secrets' names, nothing more.
    assert manifests.function_resource(CFG, spec)["spec"]["secrets"] == ["db", "stripe"]
    # A version with no secrets has no envFrom at all.
    plain = manifests.deployment(CFG, "hello", 2, DIGEST, FunctionSpec(name="hello", artifact=DIGEST), "uid-1")
    assert "envFrom" not in plain["spec"]["template"]["spec"]["containers"][0]


async def test_the_copies_follow_the_store_and_stale_ones_go() -> None:
    api = FakeSecretApi()
    mirror = KubeSecrets(api)
    await mirror.sync({"db": {"DB_PASSWORD": VALUE}, "stripe": {"API_KEY": "k"}})
    assert set(api.secrets) == {"prod-secret-db", "prod-secret-stripe"}  # prod-secret-gone had no fx secret
    await mirror.put("db", {"DB_USER": "app"})
    assert list(api.secrets["prod-secret-db"]["data"]) == ["DB_USER"]  # replaced as a whole
    await mirror.delete("stripe")
    assert set(api.secrets) == {"prod-secret-db"}


async def test_a_refused_write_names_the_secret_and_status_but_no_value() -> None:
    api = FakeSecretApi()
    api.refuse = 403
    with pytest.raises(SecretCopyError) as refused:
        await KubeSecrets(api).put("db", {"DB_PASSWORD": VALUE})
    assert str(refused.value) == "Kubernetes answered 403 Forbidden for the Secret of 'db'"
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


async def test_a_pool_pod_gets_its_secrets_in_the_specialization(pooled) -> None:
    _, backend, events, asked, _ = pooled
    using_db = FunctionSpec(name="hello", artifact=DIGEST, secrets=["db"])
    await backend.start_replica(ReplicaSpec("r1", "hello", 1, DIGEST, using_db, secret_env={"DB_PASSWORD": "pw"}))
    await settle()
    ((_, env),) = asked  # a pool pod has no envFrom: the values come with the environment it is given
    assert env["DB_PASSWORD"] == "pw" and env["_HANDLER"] == "handler.handler"
    assert events == [ReplicaEvent("r1", "ready", endpoint="10.244.0.20:8080")]
