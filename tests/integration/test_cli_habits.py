"""CLI habits against a real platform: the event from @FILE or a pipe, fx version, a gateway URL without a
scheme, -o json on rm and login."""

from __future__ import annotations

import json
import os
import subprocess
from importlib.metadata import version as package_version

from tests.integration.conftest import FX


def test_invoke_reads_the_event_from_a_file_or_a_pipe(platform, make_function, tmp_path):
    project = make_function("echo", "return event")
    assert platform.fx("deploy", cwd=project).returncode == 0
    (tmp_path / "ev.json").write_text('{"from": "file"}')

    from_file = platform.fx("invoke", "echo", "--data", "@ev.json", cwd=tmp_path)
    assert json.loads(from_file.stdout) == {"from": "file"}
    env = {**os.environ, "FX_GATEWAY": platform.gateway_url, "FX_TOKEN": platform.token}
    piped = subprocess.run(
        [FX, "invoke", "echo"], input='{"from": "pipe"}', env=env, capture_output=True, text=True, timeout=60
    )
    assert json.loads(piped.stdout) == {"from": "pipe"}
    missing = platform.fx("invoke", "echo", "--data", "@nope.json", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == "fx: --data @nope.json: cannot read nope.json: No such file or directory\n"


def test_version_names_the_cli_and_the_platform(platform):
    shown = platform.fx("version", "-o", "json")
    assert shown.returncode == 0
    version = subprocess.run([FX, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    assert version == package_version("fx-sdk")
    expected = {"cli": version, "gateway": platform.gateway_url, "platform": package_version("fx-controller")}
    assert json.loads(shown.stdout) == {**expected, "skew": False}  # one version for the CLI and the platform
    assert shown.stderr == ""

    wrong_token = platform.fx("version", env={"FX_TOKEN": "wrong"})
    assert wrong_token.returncode == 0 and wrong_token.stdout == f"fx CLI:   {version}\n"
    assert "the platform's version is unknown" in wrong_token.stderr


def test_a_gateway_url_without_a_scheme_is_http(platform):
    bare = platform.gateway_url.removeprefix("http://")
    assert platform.fx("--gateway", bare, "ls").returncode == 0
    assert platform.fx("ls", env={"FX_GATEWAY": bare}).returncode == 0


def test_rm_and_login_print_json(platform, make_function):
    project = make_function("brief", "return 1")
    assert platform.fx("deploy", cwd=project).returncode == 0
    login = platform.fx("login", "-o", "json")
    saved = json.loads(platform.config.read_text())["current"]
    expected = {"gateway": platform.gateway_url, "functions": 1, "config": str(platform.config), "context": saved}
    assert json.loads(login.stdout) == expected
    removed = platform.fx("rm", "brief", "-o", "json")
    assert json.loads(removed.stdout) == {"function": "brief", "removed": True}
    assert json.loads(platform.fx("ls", "-o", "json").stdout) == []
