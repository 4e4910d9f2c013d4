"""`fx context`, `fx login --context` and the context `fx up` saves, against the fake gateway in conftest.py."""

import json
import os

import pytest
from fx import config
from fx.cli import main
from fx.cli.up import _save_context, _with_context

from tests.unit.sdk.conftest import TOKEN

pytestmark = pytest.mark.usefixtures("isolated")


def _contexts(tmp_path) -> dict:
    return json.loads((tmp_path / "fx-config.json").read_text())


@pytest.mark.usefixtures("gateway")
def test_login_saves_a_named_context_and_ls_never_shows_its_token(monkeypatch, tmp_path, capsys):
    url = os.environ["FX_GATEWAY"]
    monkeypatch.delenv("FX_GATEWAY")
    monkeypatch.delenv("FX_TOKEN")
    assert main(["login", "--context", "prod", "--gateway", url, "--token", TOKEN]) == 0
    assert "as context 'prod', now current" in capsys.readouterr().out
    assert _contexts(tmp_path) == {"current": "prod", "contexts": {"prod": {"gateway": url, "token": TOKEN}}}
    assert main(["ls"]) == 0  # the current context is found without flags
    capsys.readouterr()

    assert main(["context", "ls"]) == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[1].split() == ["*", "prod", url, "set"] and TOKEN not in listing
    assert main(["context", "ls", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"name": "prod", "gateway": url, "token": True, "current": True}]


@pytest.mark.usefixtures("gateway")
def test_login_without_a_name_uses_the_host_and_a_new_token_renews_the_current_one(monkeypatch, tmp_path):
    url = os.environ["FX_GATEWAY"]
    monkeypatch.delenv("FX_GATEWAY")
    monkeypatch.delenv("FX_TOKEN")
    name = url.removeprefix("http://")
    assert main(["login", "--gateway", url, "--token", TOKEN]) == 0
    assert _contexts(tmp_path)["current"] == name
    assert main(["login", "--token", TOKEN]) == 0  # no gateway: the current context, not a new one
    assert list(_contexts(tmp_path)["contexts"]) == [name]


@pytest.mark.usefixtures("gateway")
def test_a_failed_login_saves_nothing(tmp_path):
    assert main(["login", "--context", "prod", "--token", "wrong"]) != 0
    assert not (tmp_path / "fx-config.json").exists()


def test_use_and_rm_refuse_an_unknown_context_and_rm_of_the_current_says_so(tmp_path, capsys):
    with config.update() as (file, _):
        file.put("prod", config.Settings("http://prod:1", "t"))
        file.put("local", config.Settings("http://local:2", "t"))
        file.current = "prod"
    assert main(["context", "use", "nosuch"]) == 2
    assert "no context 'nosuch'" in capsys.readouterr().err
    assert main(["context", "use", "local"]) == 0
    assert "now uses context 'local' (http://local:2)" in capsys.readouterr().out
    assert main(["context", "rm", "local"]) == 0
    assert "no context is current now" in capsys.readouterr().out
    assert _contexts(tmp_path) == {"current": None, "contexts": {"prod": {"gateway": "http://prod:1", "token": "t"}}}
    assert main(["context", "rm", "local"]) == 2


def test_fx_up_takes_the_current_context_only_when_none_is_or_when_asked(tmp_path, capsys):
    local = config.Settings("http://127.0.0.1:9", "local-token")
    assert _save_context("local", local, use=False) is None  # nothing current: it becomes current
    assert "the CLI uses it now" in capsys.readouterr().err
    with config.update() as (file, _):
        file.put("prod", config.Settings("http://prod:1", "t"))
        file.current = "prod"
    assert _save_context("local", local, use=False) == "local"
    said = capsys.readouterr().err
    assert "still uses context 'prod'" in said and "fx context use local" in said
    assert _contexts(tmp_path)["current"] == "prod"
    assert _save_context("local", local, use=True) is None
    assert "`fx context use prod` switches back" in capsys.readouterr().err
    assert _contexts(tmp_path)["current"] == "local"


def test_hints_name_the_context_when_the_cli_uses_another():
    assert _with_context("fx init a && cd a && fx deploy", "local") == (
        "fx --context local init a && cd a && fx --context local deploy"
    )
    assert _with_context("curl http://x/fx y", "local") == "curl http://x/fx y"
