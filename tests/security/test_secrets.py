"""Secrets on the real embedded platform: a function gets its secrets' values as environment variables, and
the values show up nowhere else: not in fx describe / fx ls / the admin API, not in the KV records gateways and
functions could read (fx_functions, fx_routes), not in the platform's logs, not in any file of the state dir
outside the NATS store. Bad references are refused with nothing deployed; a secret in use cannot be removed;
a changed secret reaches the next cold start."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
from pathlib import Path

import httpx
import nats
import yaml
from fx.protocol import KV_FUNCTIONS, KV_ROUTES

from tests.integration.conftest import FX, RunningPlatform
from tests.integration.helpers import wait_until

READ_ENV = "return {k: os.environ.get(k) for k in ('DB_PASSWORD', 'DB_USER', 'API_KEY')}"


def fx_with_stdin(platform: RunningPlatform, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with something typed on its stdin (RunningPlatform.fx gives it none)."""
    env = {**os.environ, "FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token, "FX_CONFIG": "/nonexistent"}
    return subprocess.run([FX, *args], input=stdin, env=env, capture_output=True, text=True, timeout=120)


def admin(platform: RunningPlatform) -> httpx.Client:
    return httpx.Client(base_url=platform.gateway_url, headers={"Authorization": f"Bearer {platform.token}"})


def with_secrets(project: Path, name: str, **settings) -> Path:
    """Add settings (secrets, env) to the project's fx.yaml."""
    manifest = project / "fx.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["functions"][name].update(settings)
    manifest.write_text(yaml.safe_dump(data))
    return project


async def kv_records(platform: RunningPlatform, bucket: str) -> dict[str, bytes]:
    # As the platform's admin user once NATS identities are in (RunningPlatform.nats); before, anonymously.
    admin_nats = getattr(platform, "nats", None)
    nc = await (admin_nats() if admin_nats else nats.connect(platform._platform.nats_url))
    try:
        kv = await nc.jetstream().key_value(bucket)
        keys = await kv.keys()
        return {key: (await kv.get(key)).value or b"" for key in keys}
    finally:
        await nc.close()


def files_holding(root: Path, value: str, skip: Path) -> list[str]:
    needle = value.encode()
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and skip not in path.parents and needle in path.read_bytes()
    ]


def test_a_secret_reaches_its_function_and_is_shown_nowhere_else(platform, make_function):
    password, api_key = f"pw-{secrets.token_hex(12)}", f"key-{secrets.token_hex(12)}"
    # KEY=- reads the value from stdin: it is in neither the shell history nor the process list.
    done = fx_with_stdin(platform, password + "\n", "secret", "set", "db", "DB_PASSWORD=-", "DB_USER=app")
    assert done.returncode == 0, done.stderr
    assert "DB_PASSWORD" in done.stdout and password not in done.stdout + done.stderr
    env_file = platform.state_dir.parent / "stripe.env"
    env_file.write_text(f"# the payment provider\nAPI_KEY='{api_key}'\n")
    done = platform.fx("secret", "set", "stripe", "--from-env-file", str(env_file))
    assert done.returncode == 0, done.stderr
    env_file.unlink()  # only the NATS store may hold the values from here on

    project = with_secrets(make_function("vault", READ_ENV, imports="import os"), "vault", secrets=["db", "stripe"])
    done = platform.fx("deploy", cwd=project)
    assert done.returncode == 0, done.stderr
    done = platform.fx("invoke", "vault", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"DB_PASSWORD": password, "DB_USER": "app", "API_KEY": api_key}

    shown: list[str] = []
    for args in (
        ("describe", "vault"),
        ("describe", "vault", "-o", "json"),
        ("versions", "vault", "-o", "json"),
        ("ls", "-o", "json"),
        ("secret", "ls"),
        ("secret", "ls", "-o", "json"),
        ("logs", "vault"),
    ):
        done = platform.fx(*args)
        assert done.returncode == 0, (args, done.stderr)
        shown.append(done.stdout + done.stderr)
    assert "secrets:  db, stripe" in shown[0]  # the names are shown
    secret_list = json.loads(shown[5])
    assert [(s["name"], s["keys"], s["used_by"]) for s in secret_list] == [
        ("db", ["DB_PASSWORD", "DB_USER"], ["vault"]),
        ("stripe", ["API_KEY"], ["vault"]),
    ]
    with admin(platform) as http:
        for path in (
            "/system/functions",
            "/system/functions/vault",
            "/system/functions/vault/versions/1",
            "/system/secrets",
            "/system/secrets/db",
            "/system/openapi.json",
        ):
            r = http.get(path)
            assert r.status_code == 200, path
            shown.append(r.text)
    kv = {bucket: asyncio.run(kv_records(platform, bucket)) for bucket in (KV_FUNCTIONS, KV_ROUTES)}
    assert set(kv[KV_FUNCTIONS]) == set(kv[KV_ROUTES]) == {"vault"}
    assert json.loads(kv[KV_FUNCTIONS]["vault"])["versions"][0]["spec"]["secrets"] == ["db", "stripe"]
    shown += [value.decode() for records in kv.values() for value in records.values()]

    for value in (password, api_key):
        assert not [text for text in shown if value in text]
        # Nothing outside the NATS store holds a value: not the platform's logs, not the function's.
        assert not files_holding(platform.state_dir, value, skip=platform.state_dir / "nats")
    assert list((platform.state_dir / "logs" / "platform").glob("*.log"))


def test_a_missing_secret_or_a_key_given_twice_is_refused_and_nothing_is_deployed(platform, make_function):
    project = with_secrets(make_function("lost", READ_ENV, imports="import os"), "lost", secrets=["nope"])
    done = platform.fx("deploy", cwd=project)
    assert done.returncode == 2
    assert "secret 'nope' does not exist" in done.stderr and "fx secret set nope" in done.stderr

    password = f"pw-{secrets.token_hex(12)}"
    assert platform.fx("secret", "set", "db", f"DB_PASSWORD={password}").returncode == 0
    assert platform.fx("secret", "set", "other", "DB_PASSWORD=also").returncode == 0
    with_secrets(project, "lost", secrets=["db"], env={"DB_PASSWORD": "plain"})
    done = platform.fx("deploy", cwd=project)
    assert done.returncode == 2
    assert "'DB_PASSWORD' is given by both env and secret 'db'" in done.stderr
    with_secrets(project, "lost", secrets=["db", "other"], env={})
    done = platform.fx("deploy", cwd=project)
    assert done.returncode == 2
    assert "'DB_PASSWORD' is given by both secret 'db' and secret 'other'" in done.stderr
    assert password not in done.stderr

    done = platform.fx("ls", "-o", "json")
    assert done.returncode == 0 and json.loads(done.stdout) == []
    with admin(platform) as http:
        assert http.get("/system/functions/lost").status_code == 404
        # Bad secrets are refused naming the field, and the answer never echoes a value.
        r = http.put("/system/secrets/db", json={"values": {"DB_PASSWORD\n": password}})
        assert r.status_code == 400 and r.json()["error"]["field"] == "values" and password not in r.text
        r = http.put("/system/secrets/db", json={"values": {"DB_PASSWORD": password + "\0"}})
        assert r.status_code == 400 and "NUL" in r.text and password not in r.text
        r = http.put("/system/secrets/db", json={"values": {"BIG": "x" * 70_000}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "SecretTooLarge"
        r = http.put("/system/secrets/Bad_Name", json={"values": {"A": "b"}})
        assert r.status_code == 400 and r.json()["error"]["field"] == "name"
    for args in (("secret", "set", "Bad", "A=b"), ("secret", "set", "db", "1A=b"), ("secret", "set", "db", "A")):
        done = platform.fx(*args)
        assert done.returncode == 2 and done.stderr.startswith("fx: "), (args, done.stderr)
    done = platform.fx("secret", "ls", "-o", "json")
    assert [s["keys"] for s in json.loads(done.stdout)] == [["DB_PASSWORD"], ["DB_PASSWORD"]]  # nothing changed


def test_a_secret_in_use_cannot_be_removed_until_no_live_version_names_it(platform, make_function):
    assert platform.fx("secret", "set", "db", "DB_PASSWORD=pw").returncode == 0
    project = with_secrets(make_function("app", READ_ENV, imports="import os"), "app", secrets=["db"])
    assert platform.fx("deploy", cwd=project).returncode == 0
    done = platform.fx("secret", "rm", "db")
    assert done.returncode == 2 and "secret 'db' is used by app" in done.stderr
    # A new key that would collide with the function's own env is refused as well.
    with_secrets(project, "app", env={"DB_USER": "app"})
    assert platform.fx("deploy", cwd=project).returncode == 0
    done = platform.fx("secret", "set", "db", "DB_PASSWORD=pw", "DB_USER=root")
    assert done.returncode == 2 and "'DB_USER' would be given by both env and secret 'db' in app" in done.stderr

    with_secrets(project, "app", secrets=[])  # version 3 names no secret, but version 2 still has an alias
    assert platform.fx("deploy", cwd=project).returncode == 0
    assert platform.fx("alias", "app", "old", "2").returncode == 0
    assert platform.fx("secret", "rm", "db").returncode == 2
    assert platform.fx("alias", "app", "old", "--delete").returncode == 0
    done = platform.fx("secret", "rm", "db")
    assert done.returncode == 0, done.stderr
    assert json.loads(platform.fx("secret", "ls", "-o", "json").stdout) == []
    done = platform.fx("secret", "rm", "db")
    assert done.returncode == 2 and "secret 'db' not found" in done.stderr


def test_a_changed_secret_reaches_the_next_cold_start_and_outlives_a_restart(platform, make_function):
    assert platform.fx("secret", "set", "db", "DB_PASSWORD=first").returncode == 0
    project = with_secrets(make_function("rotate", READ_ENV, imports="import os"), "rotate", secrets=["db"])
    assert platform.fx("deploy", cwd=project).returncode == 0

    def password() -> str:
        done = platform.fx("invoke", "rotate", "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["DB_PASSWORD"]

    assert password() == "first"
    assert platform.fx("secret", "set", "db", "DB_PASSWORD=second").returncode == 0
    assert password() == "first"  # a running replica keeps the values it started with (Lambda's model)
    (pid,) = platform.replica_pids("rotate")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not platform.replica_pids("rotate"), 10, "the replica to go")
    assert password() == "second"  # the next cold start reads the secret anew

    platform.restart()
    assert password() == "second"
    secret_list = json.loads(platform.fx("secret", "ls", "-o", "json").stdout)
    assert [(s["name"], s["keys"]) for s in secret_list] == [("db", ["DB_PASSWORD"])]
