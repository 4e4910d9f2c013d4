"""Finding each runtime's interpreter (fx.interpreters), and `fx deploy` building dependencies with it.

Stand-in interpreters are shell scripts answering the probe as Python would, so the order of the search and
what is refused are tested without depending on what this host has installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fx import build, interpreters
from fx.protocol import PYTHON_RUNTIMES, RUNTIMES, runtime_version


def fake_python(path: Path, version: str, works: bool = True) -> Path:
    """An executable that answers fx's probe as Python `version` installed at `path` would (or fails, as a pyenv
    shim of a version not selected does)."""
    major, minor = version.split(".")
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f'echo "{major} {minor} {path}"' if works else "echo 'pyenv: version not installed' >&2; exit 127"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def env(tmp_path: Path, *path_dirs: Path) -> dict[str, str]:
    return {"PATH": ":".join(str(d) for d in path_dirs), "PYENV_ROOT": str(tmp_path / "pyenv")}


def test_the_runtime_table_is_every_python_fx_runs_and_provided() -> None:
    assert RUNTIMES == ("python3.10", "python3.11", "python3.12", "python3.13", "provided")
    assert runtime_version("python3.12") == (3, 12) and runtime_version("provided") is None


def test_path_comes_before_pyenv_and_the_real_executable_is_kept(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    on_path = fake_python(bin_dir / "python3.12", "3.12")
    fake_python(tmp_path / "pyenv/versions/3.12.1/bin/python3.12", "3.12")
    pyenv_13 = fake_python(tmp_path / "pyenv/versions/3.13.0/bin/python3.13", "3.13")
    found = interpreters.discover(environ=env(tmp_path, bin_dir))
    own = interpreters.own_runtime()
    assert found[own] == sys.executable  # fx's own interpreter serves its own version
    assert found["python3.12"] == str(on_path) and found["python3.13"] == str(pyenv_13)
    assert list(found) == [r for r in PYTHON_RUNTIMES if r in found]


def test_a_shim_that_runs_nothing_is_passed_over_for_pyenvs_newest_patch(tmp_path: Path) -> None:
    shims = tmp_path / "shims"
    fake_python(shims / "python3.13", "3.13", works=False)
    fake_python(tmp_path / "pyenv/versions/3.13.0/bin/python3.13", "3.13")
    newest = fake_python(tmp_path / "pyenv/versions/3.13.2/bin/python3.13", "3.13")
    assert interpreters.discover(environ=env(tmp_path, shims))["python3.13"] == str(newest)


def test_a_named_interpreter_wins_and_is_checked(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir / "python3.12", "3.12")
    mine = fake_python(tmp_path / "opt/py/bin/python3.12", "3.12")
    assert interpreters.discover({"python3.12": str(mine)}, env(tmp_path, bin_dir))["python3.12"] == str(mine)
    wrong = fake_python(tmp_path / "opt/old/bin/python3", "3.10")
    with pytest.raises(ValueError, match=r"that is python3\.10, not python3\.12"):
        interpreters.discover({"python3.12": str(wrong)}, env(tmp_path))
    with pytest.raises(ValueError, match="no Python interpreter runs there"):
        interpreters.discover({"python3.12": str(tmp_path / "missing")}, env(tmp_path))


def test_nothing_found_is_nothing_claimed(tmp_path: Path) -> None:
    assert interpreters.discover(environ=env(tmp_path)) == {interpreters.own_runtime(): sys.executable}
    other = next(r for r in PYTHON_RUNTIMES if r != interpreters.own_runtime())
    assert interpreters.find(other, env(tmp_path)) is None


@pytest.mark.parametrize("value", ["python3.12", "python3.9=/usr/bin/python3.9", "python3.12=", "3.12=/x"])
def test_a_malformed_knob_is_refused_naming_the_form(value: str) -> None:
    with pytest.raises(ValueError, match="is not RUNTIME=PATH"):
        interpreters.parse([value])


def test_the_environment_knob_takes_commas_or_spaces() -> None:
    named = interpreters.parse(interpreters.from_env({interpreters.ENV: "python3.12=/a/py, python3.13=/b/py"}))
    assert named == {"python3.12": "/a/py", "python3.13": "/b/py"}


def test_without_the_targets_interpreter_a_missing_wheel_says_how_to_get_one(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setattr(interpreters, "find", lambda runtime, environ=None: None)
    other = next(r for r in PYTHON_RUNTIMES if r != interpreters.own_runtime())
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fx-no-such-package==1\n")
    with pytest.raises(build.BuildError) as e:
        build.dependencies(requirements, other)
    version = other.removeprefix("python")
    assert f"no Python {version} on this host" in str(e.value) and f"FX_INTERPRETERS={other}=" in str(e.value)
    assert not list((tmp_path / "cache" / "deps").iterdir()), "nothing half-built is left in the cache"


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--interpreter", f"python3.10={sys.executable}"], {}, "not python3.10"),
        (["--interpreter", "python3.12"], {}, "is not RUNTIME=PATH"),
        ([], {interpreters.ENV: "python3.13=/nonexistent/python3.13"}, "no Python interpreter runs there"),
    ],
)
def test_fx_up_refuses_a_bad_interpreter_before_starting_anything(tmp_path, args, env, said) -> None:
    fx = str(Path(sys.executable).with_name("fx"))
    state = tmp_path / "state"
    done = subprocess.run(
        [fx, "up", "--state-dir", str(state), "--port", "1", *args],
        env={**os.environ, "FX_CONFIG": str(tmp_path / "config.json"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert not state.exists() and not (tmp_path / "config.json").exists()
