"""The Python interpreters on this host, by runtime ("python3.12" -> its executable): the embedded mode runs
each function on the interpreter its `runtime:` names, and `fx deploy` builds its dependencies with it.

Looked for in this order, the first of each version winning: the ones named (`fx up --interpreter
python3.12=/path`, FX_INTERPRETERS), the interpreter fx itself runs on, `python3.X` on PATH, pyenv's versions
($PYENV_ROOT, else ~/.pyenv). Every candidate is run once to say its version and real path, so a wrapper that
runs nothing, or a broken link, is never taken for an interpreter.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# fx.protocol (its dataclasses, 5 ms) and subprocess are imported where used: `fx --help` reads ENV and KNOB here.

ENV = "FX_INTERPRETERS"  # "python3.12=/opt/py312/bin/python3.12,python3.13=..." (commas or spaces)
KNOB = "`fx up --interpreter python3.X=/path/to/python3.X` (or FX_INTERPRETERS)"
PROBE_TIMEOUT_S = 10.0
_PROBE = "import sys; print(sys.version_info[0], sys.version_info[1], sys.executable)"


def own_runtime() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def parse(values: Iterable[str]) -> dict[str, str]:
    """`RUNTIME=PATH` values -> {runtime: path}; ValueError naming a malformed one."""
    from fx.protocol import PYTHON_RUNTIMES

    named: dict[str, str] = {}
    for value in values:
        runtime, sep, path = value.partition("=")
        if not sep or runtime not in PYTHON_RUNTIMES or not path:
            raise ValueError(
                f"interpreter {value!r} is not RUNTIME=PATH with RUNTIME one of {', '.join(PYTHON_RUNTIMES)}"
                " (e.g. python3.12=/usr/bin/python3.12)"
            )
        named[runtime] = path
    return named


def from_env(environ: Mapping[str, str]) -> list[str]:
    return environ.get(ENV, "").replace(",", " ").split()


def probe(path: str) -> tuple[str, str] | None:
    """(runtime, real executable) of the interpreter at `path`; None when nothing runs there."""
    import subprocess

    try:
        out = subprocess.run(
            [path, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    fields = out.stdout.split(maxsplit=2)
    if out.returncode != 0 or len(fields) != 3:
        return None
    major, minor, executable = fields
    return f"python{major}.{minor}", executable.strip()


def discover(
    named: Mapping[str, str] | None = None,
    environ: Mapping[str, str] = os.environ,
    wanted: Iterable[str] | None = None,
) -> dict[str, str]:
    """runtime -> interpreter, for the runtimes in `wanted` (all by default) that this host has. A named
    interpreter that does not run, or is another version, is a ValueError saying so."""
    from concurrent.futures import ThreadPoolExecutor

    from fx.protocol import PYTHON_RUNTIMES

    wanted = [r for r in PYTHON_RUNTIMES if wanted is None or r in set(wanted)]
    found: dict[str, str] = {}
    for runtime, path in (named or {}).items():
        got = probe(path)
        if got is None:
            raise ValueError(f"interpreter {runtime}={path}: no Python interpreter runs there")
        if got[0] != runtime:
            raise ValueError(f"interpreter {runtime}={path}: that is {got[0]}, not {runtime}")
        found[runtime] = got[1]
    found.setdefault(own_runtime(), sys.executable)
    candidates = [path for runtime, path in _candidates(environ) if runtime in wanted and runtime not in found]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for got in pool.map(probe, candidates):
            if got is not None and got[0] in wanted:
                found.setdefault(*got)
    return {r: found[r] for r in wanted if r in found}


def find(runtime: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The interpreter of `runtime` on this host (FX_INTERPRETERS first), or None."""
    return discover(parse(from_env(environ)), environ, wanted=[runtime]).get(runtime)


def _candidates(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(runtime, path) to try, in order: `python3.X` on PATH, then pyenv's versions, newest patch first. pyenv's
    shims are left out: each costs a second to ask, and the versions they lead to are tried directly."""
    from fx.protocol import PYTHON_RUNTIMES

    out: list[tuple[str, str]] = []
    pyenv_root = Path(environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for folder in environ.get("PATH", "").split(os.pathsep):
        if Path(folder) == pyenv_root / "shims":
            continue
        for runtime in PYTHON_RUNTIMES:
            path = Path(folder or ".") / runtime
            if os.access(path, os.X_OK) and path.is_file():
                out.append((runtime, str(path)))
    versions = sorted(
        (pyenv_root / "versions").glob("3.*/bin/python3.*"),
        key=lambda p: _patch_order(p.parent.parent.name),
        reverse=True,
    )
    out += [(p.name, str(p)) for p in versions if p.name in PYTHON_RUNTIMES]
    return out


def _patch_order(version: str) -> tuple[int, ...]:
    """ "3.12.1" -> (3, 12, 1); a name that is not a release ("3.12-dev") sorts first, so last tried."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)
