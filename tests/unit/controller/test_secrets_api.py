"""/system/secrets and the rules tying secrets to deploys and replica starts, on a real nats-server with a
scripted backend: values go in and reach ReplicaSpec.secret_env, and come back in no answer."""

from __future__ import annotations

import pytest
from fx.models import FunctionSpec, SecretSpec
from fx.protocol import ActivationRequest
from fx_controller.controller import Controller

from .conftest import FakeBackend, until

VALUE = "hunter2-do-not-show"


class FakeMirror:
    """A backend's copies of the secrets (the kubernetes backend's Secrets), recording what it was asked."""

    def __init__(self) -> None:
        self.copies: dict[str, dict[str, str]] = {"stale": {"A": "b"}}
        self.fail = False

    async def put(self, name: str, values: dict[str, str]) -> None:
        if self.fail:
            raise RuntimeError("Kubernetes answered 403 Forbidden")
        self.copies[name] = dict(values)

    async def delete(self, name: str) -> None:
        self.copies.pop(name, None)

    async def sync(self, secrets: dict[str, dict[str, str]]) -> None:
        self.copies = {name: dict(values) for name, values in secrets.items()}


async def test_a_secret_is_set_listed_and_removed_and_no_answer_holds_a_value(admin):
    r = await admin.put("/system/secrets/db", json={"values": {"DB_PASSWORD": VALUE, "DB_USER": "app"}})
    assert r.status_code == 200, r.text
    assert r.json()["keys"] == ["DB_PASSWORD", "DB_USER"] and r.json()["used_by"] == []
    answers = [r.text]
    for path in ("/system/secrets", "/system/secrets/db", "/system/openapi.json"):
        answers.append((await admin.get(path)).text)
    assert (await admin.get("/system/secrets")).json()[0]["name"] == "db"
    assert not [a for a in answers if VALUE in a]
    # Replacing: the secret becomes exactly the keys given.
    r = await admin.put("/system/secrets/db", json={"values": {"DB_PASSWORD": "new"}})
    assert r.json()["keys"] == ["DB_PASSWORD"]
    assert (await admin.delete("/system/secrets/db")).status_code == 204
    r = await admin.get("/system/secrets/db")
    assert r.status_code == 404 and r.json()["error"]["code"] == "SecretNotFound"
    assert (await admin.delete("/system/secrets/db")).status_code == 404


@pytest.mark.parametrize(
    ("path", "values", "field"),
    [
        ("/system/secrets/db%0A", {"A": "b"}, "name"),
        ("/system/secrets/DB", {"A": "b"}, "name"),
        ("/system/secrets/db", {"A\n": VALUE}, "values"),
        ("/system/secrets/db", {"_HANDLER": VALUE}, "values"),
        ("/system/secrets/db", {"FX_NATS_URL": VALUE}, "values"),
        ("/system/secrets/db", {"A": VALUE + "\0"}, "values"),
        ("/system/secrets/db", {}, "values"),
        ("/system/secrets/db", {"A": VALUE * 5000}, "values"),  # over the 64 KiB default
    ],
)
async def test_a_bad_secret_is_refused_naming_the_field_and_never_the_value(admin, path, values, field):
    r = await admin.put(path, json={"values": values})
    assert r.status_code == 400 and r.json()["error"]["field"] == field, r.text
    assert VALUE not in r.text
    assert (await admin.get("/system/secrets")).json() == []


async def test_a_deploy_needs_its_secrets_and_no_key_twice(admin, deployed, controller: Controller):
    await admin.put("/system/secrets/db", json={"values": {"DB_PASSWORD": VALUE}})
    await admin.put("/system/secrets/other", json={"values": {"DB_PASSWORD": "x"}})
    data = (await deployed("seed")).get("digest")
    cases = [
        ({"secrets": ["db", "nope"]}, "SecretNotFound", "secrets.1"),
        ({"secrets": ["db"], "env": {"DB_PASSWORD": "plain"}}, "SecretKeyConflict", "secrets"),
        ({"secrets": ["db", "other"]}, "SecretKeyConflict", "secrets"),
    ]
    for extra, code, field in cases:
        r = await admin.put("/system/functions/app", json={"name": "app", "artifact": data, **extra})
        assert r.status_code == 400, r.text
        assert (r.json()["error"]["code"], r.json()["error"]["field"]) == (code, field)
        assert VALUE not in r.text
    assert controller.store.get("app") is None  # nothing deployed


async def test_a_replica_gets_the_values_current_at_its_start(admin, deployed, controller, backend: FakeBackend):
    await admin.put("/system/secrets/db", json={"values": {"DB_PASSWORD": VALUE}})
    await deployed("app", secrets=["db"], env={"MODE": "prod"})
    assert (await controller.activator.activate(ActivationRequest("app", "1"))).ok
    (started,) = backend.started
    assert started.secret_env == {"DB_PASSWORD": VALUE} and started.spec.env == {"MODE": "prod"}
    assert VALUE not in repr(started)  # a ReplicaSpec in a log line shows no value
    # The function record (KV fx_functions, fx describe) holds the secret's name only.
    assert controller.store.get("app").latest.spec.secrets == ["db"]
    assert VALUE not in controller.store.get("app").model_dump_json()


async def test_a_secret_in_use_is_kept_and_a_colliding_key_refused(admin, deployed, controller: Controller):
    await admin.put("/system/secrets/db", json={"values": {"DB_PASSWORD": VALUE}})
    no_hold = {"scale": {"keep_warm": 0, "idle_timeout": 0.1}}  # a version that loses its traffic keeps no replica
    await deployed("app", secrets=["db"], env={"DB_USER": "app"}, **no_hold)
    r = await admin.delete("/system/secrets/db")
    assert r.status_code == 409 and r.json()["error"]["code"] == "SecretInUse" and "app" in r.json()["error"]["message"]
    assert (await admin.get("/system/secrets/db")).json()["used_by"] == ["app"]
    r = await admin.put("/system/secrets/db", json={"values": {"DB_PASSWORD": "x", "DB_USER": "root"}})
    assert r.status_code == 409 and r.json()["error"]["code"] == "SecretKeyConflict", r.text
    assert (await admin.get("/system/secrets/db")).json()["keys"] == ["DB_PASSWORD"]  # unchanged

    # Version 2 names no secret: version 1, without traffic or alias, no longer holds it.
    await deployed("app", source=b"def handler(e, c):\n    return 2\n", **no_hold)
    assert (await admin.delete("/system/secrets/db")).status_code == 204
    # Pinned by number afterwards, version 1 cannot start, and says why.
    await until(lambda: not controller.fleet.of("app", 1))  # the replica its readiness gate started is idle
    reply = await controller.activator.activate(ActivationRequest("app", "1"))
    assert (reply.ok, reply.error) == (False, "Fx.SecretNotFound")
    assert "secret 'db' was removed" in reply.cause


async def test_the_backends_copies_follow_the_store_and_a_failed_copy_changes_nothing(settings, backend):
    mirror = FakeMirror()
    backend.secret_mirror = mirror
    controller = Controller(settings, backend_factory=lambda s, a: backend)
    await controller.start()
    try:
        assert mirror.copies == {}  # on start: exactly the stored secrets (none), the stale copy removed
        await controller.secrets.set("db", SecretSpec(values={"DB_PASSWORD": VALUE}))
        assert mirror.copies == {"db": {"DB_PASSWORD": VALUE}}
        mirror.fail = True
        with pytest.raises(Exception, match="403 Forbidden") as failed:
            await controller.secrets.set("db", SecretSpec(values={"DB_PASSWORD": "new"}))
        assert failed.value.status == 503 and VALUE not in str(failed.value)
        using_db = FunctionSpec(name="app", artifact="sha256:" + "0" * 64, secrets=["db"])
        assert controller.secrets.env(using_db) == {"DB_PASSWORD": VALUE}  # the store kept the old value
        await controller.secrets.delete("db")
        assert mirror.copies == {}
    finally:
        await controller.stop()
