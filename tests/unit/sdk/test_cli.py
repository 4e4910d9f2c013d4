"""The CLI in-process, against a small fake admin API on 127.0.0.1 (the real one is tested in integration)."""

import argparse
import json
import os
import subprocess
import sys
from importlib.metadata import version

import httpx
import pytest
from fx import cli
from fx.cli import main
from fx.cli.version import cli_version
from fx.client import Client

from tests.unit.sdk.conftest import TOKEN

pytestmark = pytest.mark.usefixtures("isolated")


def test_init_then_deploy_twice_sends_the_same_spec_uploads_once_and_says_what_the_server_decided(
    gateway, tmp_path, capsys
):
    """Whether a deploy is a new version is the server's call (tested in integration): the client's part is to
    send the same spec for the same code, upload it once, and say what the server answered."""
    assert main(["init", "greeter"]) == 0
    capsys.readouterr()
    manifest = str(tmp_path / "greeter" / "fx.yaml")
    gateway.answers.append({"version": 1, "created": True})
    assert main(["deploy", "-f", manifest]) == 0
    first = capsys.readouterr()
    assert first.out.startswith("greeter: version 1 deployed (sha256:")
    assert "building" in first.err and "uploading" in first.err and "deploying" in first.err

    gateway.answers.append({"version": 1, "created": False})
    assert main(["deploy", "-f", manifest]) == 0
    assert capsys.readouterr().out == "greeter: unchanged, still version 1\n"
    assert gateway.deploys[1] == gateway.deploys[0]  # the same code built again is the same zip
    assert len(gateway.uploads) == 1  # and it is not uploaded again

    (tmp_path / "greeter" / "handler.py").write_text("def handler(e, c):\n    return 2\n")
    gateway.answers.append({"version": 2, "created": True})
    assert main(["deploy", "-f", manifest, "--output", "json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert (result["version"], result["created"]) == (2, True)
    assert gateway.deploys[2]["artifact"] != gateway.deploys[0]["artifact"] and len(gateway.uploads) == 2


def test_a_function_with_its_own_image_is_deployed_without_a_build_or_upload(gateway, tmp_path, capsys):
    manifest = tmp_path / "fx.yaml"
    manifest.write_text("functions:\n  own:\n    image: localhost/fx/own-image:1\n    handler: app.handler\n")
    assert main(["deploy", "-f", str(manifest)]) == 0
    out = capsys.readouterr()
    assert out.out == "own: version 1 deployed (localhost/fx/own-image:1)\n"
    assert "code is the image localhost/fx/own-image:1" in out.err and "building" not in out.err
    assert gateway.uploads == []
    [spec] = gateway.functions["own"]
    assert spec["image"] == "localhost/fx/own-image:1" and spec.get("artifact") is None


def test_ls_json_is_the_function_list(gateway, tmp_path, capsys):
    main(["init", "one"])
    main(["deploy", "-f", str(tmp_path / "one" / "fx.yaml")])
    capsys.readouterr()
    assert main(["ls", "-o", "json"]) == 0
    [fn] = json.loads(capsys.readouterr().out)
    assert fn["name"] == "one" and fn["latest"] == 1 and fn["traffic"] == {"1": 100}
    assert main(["ls"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == ["one", "1", "v1:100%"]


def test_bad_manifest_is_exit_2_naming_file_line_and_field(gateway, tmp_path, capsys):
    (tmp_path / "fx.yaml").write_text("functions:\n  ok:\n    scale:\n      max: 0\n")
    assert main(["deploy"]) == 2
    assert "fx.yaml:4: functions.ok.scale.max" in capsys.readouterr().err
    assert gateway.functions == {} and gateway.uploads == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["init", "Bad_Name"], "DNS-1123"),
        (["deploy"], "fx.yaml"),
        (["deploy", "-f", "fx.yaml", "nosuch"], "fx.yaml"),
        (["invoke", "hello", "--data", "{not json"], "not valid JSON"),
        (["kv", "create", "users", "--history", "65"], "fx: history: Input should be less than or equal to 64"),
        (["stream", "create", "ORDERS", "orders.>", "--max-age", "-1"], "fx: max-age: Input should be greater"),
        (["promote", "hello", "2", "--step", "10", "--interval", "2d"], "--interval '2d' is not a duration"),
        (["deploy", "--wait-timeout", "0"], "--wait-timeout 0: give a number of seconds above 0"),
        (["deploy", "--wait-timeout", "nan"], "--wait-timeout nan: give a number of seconds above 0"),
    ],
)
def test_bad_input_is_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_bad_flags_are_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["ls", "--output", "yaml"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_wrong_token_is_exit_3_and_says_token(gateway, monkeypatch, capsys):
    monkeypatch.setenv("FX_TOKEN", "wrong")
    assert main(["ls"]) == 3
    assert "token" in capsys.readouterr().err.lower()


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, 2),
        (401, 3),
        (403, 3),
        (404, 2),
        (408, 1),
        (409, 2),
        (413, 2),
        (422, 2),
        (429, 1),
        (500, 1),
        (502, 1),
        (503, 1),
    ],
)
def test_the_platform_s_refusals_map_to_exit_codes_by_status(status, code, scripted, capsys):
    handler, url = scripted
    handler.answer = (status, {"error": {"code": "Refused", "message": f"refused with {status}"}})
    assert main(["--gateway", url, "describe", "hello"]) == code
    err = capsys.readouterr().err
    assert f"refused with {status}" in err and "Traceback" not in err


def test_the_exit_codes_are_in_fx_help(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out and "3  not authorised" in out and "409" in out


def test_an_unreachable_gateway_is_exit_1_and_suggests_fx_up(capsys):
    assert main(["--gateway", "http://127.0.0.1:9", "ls"]) == 1
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9 is not reachable" in err and "fx up" in err


def test_login_saves_only_a_token_that_works(gateway, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("FX_TOKEN")
    config = tmp_path / "fx-config.json"
    assert main(["login", "--token", "wrong"]) == 3
    assert not config.exists()
    assert main(["login", "--token", TOKEN, "-o", "json"]) == 0
    saved = json.loads(config.read_text())
    assert saved["contexts"][saved["current"]]["token"] == TOKEN
    url = os.environ["FX_GATEWAY"]
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"gateway": url, "functions": 0, "config": str(config), "context": saved["current"]}
    monkeypatch.delenv("FX_GATEWAY")
    assert main(["ls"]) == 0  # found gateway and token in the saved config


@pytest.mark.parametrize(("argv", "usage"), [([], "usage: fx [-h]"), (["secret"], "usage: fx secret [-h]")])
def test_a_group_without_a_command_prints_its_help_and_exits_0(argv, usage, capsys):
    assert main(argv) == 0
    out = capsys.readouterr()
    assert out.out.startswith(usage) and "commands:" in out.out and out.err == ""


@pytest.mark.parametrize("argv", [["--version"], ["--context", "any", "--version"]])  # answered early; by argparse
def test_version_flag_is_the_package_s(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse's way out
        code = exited.code
    assert code == 0
    assert capsys.readouterr().out == f"fx {version('fx-sdk')}\n"


@pytest.mark.parametrize(
    ("platform", "skewed", "advice"),
    [
        ("{major}.{minor}.99", False, None),  # a patch apart: the same release
        ("{major}.{next_minor}.0", True, "upgrade the CLI (pip install 'fx-sdk=={platform}')"),
        ("{next_major}.0.1", True, "upgrade the CLI (pip install 'fx-sdk=={platform}')"),
        ("0.0.1", True, "install the platform's CLI (pip install 'fx-sdk==0.0.1') or upgrade the platform"),
    ],
)
def test_version_warns_when_the_cli_and_the_platform_are_of_different_releases(
    gateway, capsys, platform, skewed, advice
):
    cli = version("fx-sdk")
    major, minor = (int(p) for p in cli.split(".")[:2])
    platform = platform.format(major=major, minor=minor, next_minor=minor + 1, next_major=major + 1)
    gateway.platform_version = platform

    assert main(["version", "-o", "json"]) == 0
    shown = capsys.readouterr()
    gateway_url = os.environ["FX_GATEWAY"]
    assert json.loads(shown.out) == {"cli": cli, "gateway": gateway_url, "platform": platform, "skew": skewed}
    if advice is None:
        assert shown.err == ""
    else:
        assert shown.err.startswith(f"fx: fx CLI {cli} and platform {platform} differ: ")
        assert advice.format(platform=platform) in shown.err

    assert main(["version"]) == 0  # the text form warns alike, and still exits 0
    shown = capsys.readouterr()
    assert shown.out == f"fx CLI:   {cli}\nplatform: {platform} ({gateway_url})\n"
    assert ("differ" in shown.err) is skewed


@pytest.mark.parametrize("argv", [["init", "fn"], ["up"], ["completion", "bash"]])
def test_commands_that_reach_no_gateway_offer_no_connection_flags(argv, capsys):
    with pytest.raises(SystemExit):
        main([argv[0], "--help"])
    out = capsys.readouterr().out
    assert "--gateway" not in out and "--token" not in out
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--token", "x"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --token x" in capsys.readouterr().err


def test_bash_completion_completes_commands_and_flags(tmp_path, capsys):
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "fx.bash"
    script.write_text(capsys.readouterr().out)

    def complete(*words: str) -> list[str]:
        cword = len(words) - 1
        line = f"source {script}; COMP_WORDS=(fx {' '.join(repr(w) for w in words)}); COMP_CWORD={cword + 1}"
        line += f'; _shtab_fx fx {words[-1]!r} {"fx" if cword == 0 else words[-2]!r}; echo "${{COMPREPLY[@]}}"'
        return subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True).stdout.split()

    assert complete("lo") == ["logs", "local", "login"]
    assert complete("logs", "fn", "--ti") == ["--timestamps"]
    assert complete("secret", "") == ["set", "ls", "rm"]
    assert main(["completion", "zsh"]) == 0
    assert capsys.readouterr().out.startswith("#compdef fx")


def test_fx_dlq_redrive_all_sends_each_next_call_until_the_platform_has_no_more(monkeypatch, capsys):
    sent = []

    def letter(n: int) -> dict:
        return {"id": n, "function": "f", "source": "async", "error": "E", "message": "m", "status": 502,
                "attempts": 3, "time": "2026-01-01T00:00:00Z"}  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        spec = json.loads(request.content)
        sent.append((spec["start"], spec["end"]))
        start = spec["start"]
        rest = {**spec, "start": start + 2, "end": 5} if start + 2 <= 5 else None
        return httpx.Response(200, json={"redriven": [letter(start), letter(start + 1)], "failed": [], "next": rest})

    fake = httpx.MockTransport(answer)
    monkeypatch.setattr("fx.client.Client", lambda gateway, token: Client(gateway, token, transport=fake))
    assert main(["dlq", "redrive", "--all"]) == 0
    assert sent == [(1, None), (3, 5), (5, 5)]
    assert capsys.readouterr().out.count("redriven") == 6


def test_json_output_is_one_shape_for_a_model_a_list_of_them_and_plain_data(capsys):
    from datetime import UTC, datetime

    from fx.cli.common import print_json
    from fx.models import SecretInfo

    info = SecretInfo(name="db", keys=["PASSWORD"], updated_at=datetime(2026, 1, 2, tzinfo=UTC), used_by=["façade"])
    for value in (info, [info], {"secret": info}):
        print_json(value)
        out = capsys.readouterr().out
        assert json.loads(out) == json.loads(json.dumps(value, default=lambda m: m.model_dump(mode="json")))
        assert "façade" in out and out.startswith(("{\n  ", "[\n  "))


def _commands(parser) -> dict:
    """A parser's commands, by name."""
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices


def test_a_command_line_builds_only_its_module_s_parser_and_means_the_same():
    """`fx ls` builds fx.cli.functions' parsers alone (fx.cli.MODULES); each command so built has the usage, help
    and arguments it has among all the others, and MODULES names every command there is."""
    full = cli._parser()
    named = {name for _, _, names in cli.MODULES for name in names}
    assert set(_commands(full)) == named | {"completion"}  # which needs every parser, to complete them
    for name in sorted(named):
        assert cli.command_named(["--gateway", "http://x", "--token=t", name, "--help"]) == name
        alone = _commands(cli._parser(name))
        assert name in alone and set(alone) < set(_commands(full))
        assert alone[name].format_help() == _commands(full)[name].format_help()
        assert alone[name].format_usage() == _commands(full)[name].format_usage()


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h", "ls"], ["--gat", "x", "ls"], ["lss"], ["completion"], ["--"]])
def test_what_names_no_known_command_builds_every_parser(argv):
    assert cli.command_named(argv) is None


def test_the_cli_s_version_is_the_installed_distribution_s(tmp_path, monkeypatch):
    """Read from the .dist-info folder's name, as importlib.metadata finds it, without importing that."""
    assert cli_version() == version("fx-sdk")
    (tmp_path / "fx_sdk-9.8.7rc1.dist-info").mkdir()
    monkeypatch.setattr("sys.path", [str(tmp_path / "gone"), str(tmp_path), *sys.path])
    assert cli_version() == "9.8.7rc1"
