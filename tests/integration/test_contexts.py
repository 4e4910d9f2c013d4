"""Named contexts on real platforms: `fx up` adds its own without taking over the one an earlier `fx login` chose."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import up_hints
from tests.loopback import free_port
from tests.waiting import wait_for

FX = str(Path(sys.executable).with_name("fx"))


def test_fx_up_keeps_the_context_of_an_earlier_login(platform: RunningPlatform, make_function, tmp_path):
    config = tmp_path / "fx-config.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FX_")}
    env.update(FX_CONFIG=str(config), PATH=f"{Path(FX).parent}{os.pathsep}{env.get('PATH', '')}")

    def fx(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([FX, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)

    login = fx("login", "--context", "prod", "--gateway", platform.gateway_url, "--token", platform.token)
    assert login.returncode == 0, login.stderr
    deployed = fx("deploy", cwd=make_function("only-on-prod", "return 'prod'"))
    assert deployed.returncode == 0, deployed.stderr

    # A second platform, as a user starts it on the same machine, with one example that has no README.
    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.move(make_function("tiny", "return {'statusCode': 200, 'body': 'tiny'}"), examples / "tiny")
    port, out = free_port(), tmp_path / "up.log"
    up_args = [FX, "up", "--state-dir", str(tmp_path / "up-state"), "--port", str(port), "--examples", str(examples)]
    up = subprocess.Popen(up_args, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "Ctrl-C stops fx" in out.read_text() or up.poll() is not None, 120, "fx up to be ready")
        printed = out.read_text()
        assert "the CLI still uses context 'prod'" in printed and "fx context use local" in printed, printed

        saved = json.loads(config.read_text())
        assert saved["current"] == "prod" and set(saved["contexts"]) == {"prod", "local"}
        assert "only-on-prod" in fx("ls").stdout  # plain commands still go to the login's gateway
        local = fx("--context", "local", "ls")
        assert local.returncode == 0 and "tiny" in local.stdout and "only-on-prod" not in local.stdout
        listing = fx("context", "ls").stdout
        assert [line.split()[:2] for line in listing.splitlines()[1:]] == [
            ["local", f"http://127.0.0.1:{port}"],
            ["*", "prod"],
        ]
        assert platform.token not in listing

        # Its hints work as printed: fx calls name the context `local`, so they reach this platform.
        hints = up_hints(printed)
        assert any("fx --context local deploy" in h.text for h in hints), printed
        work = tmp_path / "work"
        work.mkdir()
        for hint in hints:
            done = subprocess.run(
                ["bash", "-c", hint.text], cwd=work, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, f"{hint.text}\n{done.stdout}\n{done.stderr}"
        assert "my-function" in fx("--context", "local", "ls").stdout
        assert "my-function" not in fx("ls").stdout
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
