"""Each `runtime:` runs on its own Python (issue 19, item 3): a python3.12 function runs on 3.12 with a
compiled dependency built for 3.12, beside a python3.11 function on the same platform; a runtime with no
interpreter on the host is refused at deploy (exit 2) naming what there is and the knob that adds one.

This machine image (and CI's) has pyenv's 3.10, 3.12 and 3.13 beside the system's 3.11: a missing 3.12 is a
broken test host, and fails the test saying what was looked for instead of skipping it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fx import interpreters
from fx.protocol import PYTHON_RUNTIMES
from fx.state_dir import PROTECTIONS_FILE

from tests.integration.conftest import RunningPlatform

REPORT = """\
import os, sys
import markupsafe
from markupsafe import _speedups  # the compiled module: an ImportError if it was built for another Python


def handler(event, context):
    with open("/proc/self/status") as f:
        status = dict(line.split(":\\t", 1) for line in f.read().splitlines() if ":\\t" in line)
    try:
        open(os.path.join(sys.base_prefix, "fx-was-here"), "w").close()
        prefix = "writable"
    except OSError as e:
        prefix = type(e).__name__ + ": " + e.strerror
    return {
        "version": list(sys.version_info[:2]),
        "executable": sys.executable,
        "speedups": os.path.basename(_speedups.__file__),
        "escaped": str(markupsafe.escape("<b>")),
        "uid": os.getuid(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "prefix": prefix,
        "state_dir_visible": os.path.exists(event.get("state_dir", "/nonexistent")),
    }
"""


def interpreter(runtime: str) -> str:
    found = interpreters.discover(wanted=[runtime]).get(runtime)
    if found is None:
        pytest.fail(
            f"no {runtime} interpreter on this host: looked for {runtime} on PATH ({os.environ.get('PATH')}) and"
            f" in pyenv ({os.environ.get('PYENV_ROOT') or '~/.pyenv'}/versions/*/bin/{runtime}). The test image"
            f" ships one; install it or set {interpreters.ENV}={runtime}=/path/to/{runtime}"
        )
    return found


def project(root: Path, name: str, runtime: str, source: str, requirements: str = "") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "handler.py").write_text(source)
    if requirements:
        (folder / "requirements.txt").write_text(requirements)
    spec = {"handler": "handler.handler", "runtime": runtime}
    (folder / "fx.yaml").write_text(yaml.safe_dump({"functions": {name: spec}}))
    return folder


def deploy(platform: RunningPlatform, folder: Path, cache: Path):
    return platform.fx("deploy", cwd=folder, env={"FX_CACHE_DIR": str(cache)})


def invoke(platform: RunningPlatform, name: str, event: dict) -> dict:
    done = platform.fx("invoke", name, "--data", json.dumps(event))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_a_python312_function_runs_on_312_with_its_compiled_dependency_beside_a_311_one(platform, tmp_path):
    python312 = interpreter("python3.12")
    runtimes = (platform.state_dir / PROTECTIONS_FILE).read_text()
    assert f"python3.12 ({python312})" in runtimes, runtimes  # what `fx up` prints

    new = project(tmp_path, "on312", "python3.12", REPORT, "markupsafe==3.0.2\n")
    old = project(tmp_path, "on311", "python3.11", REPORT, "markupsafe==3.0.2\n")
    for folder in (new, old):
        done = deploy(platform, folder, tmp_path / "cache")
        assert done.returncode == 0, done.stdout + done.stderr

    event = {"state_dir": str(platform.state_dir)}
    on311 = invoke(platform, "on311", event)
    replicas311 = platform.replica_pids("on311")
    on312 = invoke(platform, "on312", event)  # the 3.12 zygote starts now, beside the 3.11 one ...
    assert invoke(platform, "on311", event) == on311
    assert platform.replica_pids("on311") == replicas311, "... and leaves the 3.11 replicas (and cgroups) alone"
    assert on312["version"] == [3, 12] and on312["executable"] == python312
    assert on312["speedups"] == "_speedups.cpython-312-x86_64-linux-gnu.so" and on312["escaped"] == "&lt;b&gt;"
    assert on311["version"] == [3, 11] and on311["speedups"] == "_speedups.cpython-311-x86_64-linux-gnu.so"

    if os.geteuid() == 0:  # fx as root: the 3.12 replica is as confined as any other
        assert runtimes.startswith("function sandbox: ON"), runtimes
        for report in (on312, on311):
            assert report["uid"] >= 100_000 and report["no_new_privs"] == "1" and report["task_root"] == "/var/task"
            assert report["prefix"].startswith("OSError: Read-only file system"), report  # its Python, read-only
            assert report["state_dir_visible"] is False


def test_every_python_runtime_runs_on_its_own_interpreter(platform, tmp_path):
    source = "import sys\n\ndef handler(e, c):\n    return [list(sys.version_info[:2]), sys.executable]\n"
    expected = {runtime: interpreter(runtime) for runtime in PYTHON_RUNTIMES}
    for runtime in PYTHON_RUNTIMES:
        name = runtime.replace(".", "")
        done = deploy(platform, project(tmp_path, name, runtime, source), tmp_path / "cache")
        assert done.returncode == 0, done.stdout + done.stderr
    for runtime, executable in expected.items():
        version = [int(part) for part in runtime.removeprefix("python").split(".")]
        assert invoke(platform, runtime.replace(".", ""), {}) == [version, executable], runtime


@pytest.fixture
def platform_without_pyenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningPlatform]:
    """A platform on a host where only fx's own Python is found (no pyenv, nothing else on PATH), with
    python3.12 named through the knob."""
    python312 = interpreter("python3.12")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv(interpreters.ENV, f"python3.12={python312}")
    running = RunningPlatform(tmp_path / "state", tmp_path / "fx-config.json")
    try:
        yield running
    finally:
        running.stop()


def test_a_runtime_without_an_interpreter_is_refused_at_deploy_and_the_knob_adds_one(platform_without_pyenv, tmp_path):
    platform = platform_without_pyenv
    runtimes = (platform.state_dir / PROTECTIONS_FILE).read_text()
    assert "no interpreter for python3.10, python3.13 (deploys naming them are refused)" in runtimes, runtimes

    missing = project(tmp_path, "newest", "python3.13", "def handler(e, c):\n    return 1\n")
    refused = deploy(platform, missing, tmp_path / "cache")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = refused.stderr
    assert "python3.13 is not available" in message and "it has python3.11, python3.12, provided" in message
    assert "fx up --interpreter python3.13=/path/to/python3.13" in message and "FX_INTERPRETERS" in message
    assert "Traceback" not in message
    assert platform.fx("describe", "newest").returncode != 0, "nothing of a refused deploy is stored"

    source = "import sys\n\ndef handler(e, c):\n    return sys.version_info[1]\n"
    named = project(tmp_path, "named", "python3.12", source)
    done = deploy(platform, named, tmp_path / "cache")
    assert done.returncode == 0, done.stdout + done.stderr
    assert invoke(platform, "named", {}) == 12
