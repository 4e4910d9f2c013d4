"""Secrets on the client side: the models' rules (full-match names and keys, no value in any error or repr),
fx.yaml's `secrets:`, and `fx secret` reading KEY=VALUE, KEY=- (stdin) and --from-env-file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from fx import cli
from fx.cli import secrets as secret_commands  # imported by `fx secret` alone: not an attribute of fx.cli before
from fx.client import Client
from fx.errors import InputError
from fx.manifest import ManifestError, parse
from fx.models import FunctionSpec, SecretSpec
from fx.secret_args import values_from
from pydantic import ValidationError

VALUE = "hunter2-do-not-show"
DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"DB_PASSWORD\n": VALUE}, "not an environment variable name"),
        ({"1KEY": VALUE}, "not an environment variable name"),
        ({"_HANDLER": VALUE}, "of the runtime or of fx"),
        ({"FX_LISTEN": VALUE}, "of the runtime or of fx"),
        ({"KEY": VALUE + "\0"}, "NUL"),
        ({}, "at least 1"),
        ({f"K{i}": VALUE for i in range(101)}, "at most 100"),
    ],
)
def test_a_bad_secret_names_the_problem_and_never_the_value(values, message) -> None:
    with pytest.raises(ValidationError) as refused:
        SecretSpec(values=values)
    assert message in str(refused.value) and VALUE not in str(refused.value)


def test_a_secret_spec_shows_no_value_in_its_repr() -> None:
    assert VALUE not in repr(SecretSpec(values={"KEY": VALUE}))


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        (["db\n"], "not a DNS-1123 label"),
        (["DB"], "not a DNS-1123 label"),
        (["db", "db"], "'db' is listed twice"),
        ([f"s{i}" for i in range(17)], "at most 16"),
    ],
)
def test_a_function_names_its_secrets_by_valid_names_once(secrets, message) -> None:
    with pytest.raises(ValidationError, match=message):
        FunctionSpec(name="app", artifact=DIGEST, secrets=secrets)


def test_fx_yaml_takes_secrets_and_points_at_a_bad_one(tmp_path: Path) -> None:
    (fn,) = parse("functions:\n  app:\n    secrets: [db, stripe]\n", tmp_path / "fx.yaml")
    assert fn.spec(DIGEST).secrets == ["db", "stripe"]
    with pytest.raises(ManifestError, match=r"fx.yaml:4: functions.app.secrets: .*'Db' is not a DNS-1123"):
        parse("functions:\n  app:\n    secrets:\n      - Db\n", tmp_path / "fx.yaml")


def test_values_come_from_arguments_stdin_and_an_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text("# comment\nexport API_KEY='k$HOME'\nDB_USER=app\n\n")
    values = values_from(["DB_PASSWORD=-", "EMPTY="], str(env_file), io.StringIO(VALUE + "\n"))
    # stdin loses the newline echo adds; $HOME is not expanded; an empty value is a value.
    assert values == {"API_KEY": "k$HOME", "DB_USER": "app", "DB_PASSWORD": VALUE, "EMPTY": ""}
    assert values_from(["URL=a=b"], None, io.StringIO()) == {"URL": "a=b"}


@pytest.mark.parametrize(
    ("pairs", "env_file", "message"),
    [
        ([], None, "give the secret's keys"),
        (["KEY"], None, "'KEY' is not KEY=VALUE"),
        (["A=-", "B=-"], None, "only one key can read its value from stdin"),
        (["A=1", "A=2"], None, "'A' is given twice"),
        (["DB_USER=x"], "prod.env", "also in"),
        (["1A=x"], None, "not an environment variable name"),
        ([], "missing.env", "no such file"),
        ([], "bare.env", "'BARE' has no '=VALUE'"),
    ],
)
def test_bad_secret_input_names_the_problem(tmp_path: Path, pairs, env_file, message) -> None:
    (tmp_path / "prod.env").write_text("DB_USER=app\n")
    (tmp_path / "bare.env").write_text("BARE\n")
    with pytest.raises(InputError, match=message):
        values_from(pairs, str(tmp_path / env_file) if env_file else None, io.StringIO(VALUE))


@pytest.fixture
def gateway(monkeypatch):
    """`fx secret` against a scripted admin API; the requests it got are kept."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        info = {"name": "db", "keys": ["DB_PASSWORD"], "updated_at": "2026-01-01T00:00:00Z", "used_by": ["app"]}
        if request.method == "PUT":
            return httpx.Response(200, json=info)
        message = "secret 'db' is used by app (a version with traffic, an alias or the latest)"
        return httpx.Response(409, json={"error": {"code": "SecretInUse", "message": message, "field": "name"}})

    transport = httpx.MockTransport(answer)
    monkeypatch.setattr(secret_commands, "client", lambda args: Client("http://fx.test", "t", transport=transport))
    monkeypatch.setattr("sys.stdin", io.StringIO(VALUE + "\n"))
    return sent


def test_fx_secret_set_and_rm(gateway, capsys) -> None:
    """(`fx secret ls`, a light read, is tests/unit/sdk/test_read_commands.py's.)"""
    assert cli.main(["secret", "set", "db", "DB_PASSWORD=-"]) == 0
    assert json.loads(gateway[-1].content) == {"values": {"DB_PASSWORD": VALUE}}
    assert gateway[-1].url.path == "/system/secrets/db"
    out = capsys.readouterr().out
    assert "db: set, keys DB_PASSWORD" in out and "new replicas of app" in out and VALUE not in out
    assert cli.main(["secret", "rm", "db"]) == 2  # in use: the server's 409, a state that forbids it
    assert "secret 'db' is used by app" in capsys.readouterr().err


def test_bad_secret_names_are_exit_2_and_nothing_is_sent(gateway, capsys) -> None:
    assert cli.main(["secret", "set", "Db", "A=b"]) == 2
    assert cli.main(["secret", "rm", "db\n"]) == 2
    assert cli.main(["secret", "set", "db", "A"]) == 2
    assert gateway == [] and "not a DNS-1123 label" in capsys.readouterr().err
