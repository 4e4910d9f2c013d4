"""How the local backend starts fx_runtime's zygote on a Python other than the controller's own.

fx_runtime is not installed into that interpreter: its source directory goes on the zygote's PYTHONPATH, and
its own dependencies (uvloop and httptools, compiled, so built per Python version) are installed once, by
that interpreter's pip, into a cache directory named for the interpreter. That directory is outside the state
directory on purpose: the sandbox mounts a zygote's import path read-only, and never the state directory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fx_runtime
from fx.paths import cache_dir

RUNTIME_SOURCE = Path(fx_runtime.__file__).resolve().parent.parent  # holds the fx_runtime package
PIP_TIMEOUT_S = 300.0


def replica_path(interpreter: str) -> str:
    """A replica's PATH: its own interpreter's directory first, so `python3` in a handler's subprocess is it."""
    return f"{Path(interpreter).parent}:/usr/local/bin:/usr/bin:/bin"


def runtime_requirements() -> list[str]:
    """What fx_runtime needs beyond the standard library (its pyproject's dependencies)."""
    return sorted(importlib.metadata.requires("fx-runtime") or [])


def site_dir(interpreter: str) -> Path:
    """Where fx_runtime's dependencies for `interpreter` are (or go): one directory per interpreter and set."""
    key = hashlib.sha256("\0".join([interpreter, *runtime_requirements()]).encode()).hexdigest()[:16]
    return cache_dir() / "runtime-deps" / f"{Path(interpreter).name}-{key}"


def prepare(interpreter: str) -> Path:
    """fx_runtime's dependencies installed for `interpreter` (at most once: cached); RuntimeError with pip's
    own words when they cannot be. Blocking: run it in a thread."""
    target = site_dir(interpreter)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    cmd = [sys.executable, "-m", "pip", "--python", interpreter, "install", "-q", "--disable-pip-version-check"]
    cmd += ["--only-binary=:all:", "--target", str(tmp), *runtime_requirements()]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        result = subprocess.CompletedProcess(cmd, 1, "", f"pip took more than {PIP_TIMEOUT_S:.0f} s")
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(
            f"cannot install fx's runtime dependencies ({', '.join(runtime_requirements())}) for {interpreter}:"
            f" {(result.stderr or result.stdout).strip()}"
        )
    tmp.chmod(0o755)  # mkdtemp made it 0700: sandboxed replicas run as their function's uid
    try:
        tmp.rename(target)
    except OSError:  # another controller got there first; its result is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def zygote_command(interpreter: str) -> list[str]:
    return [interpreter, "-m", "fx_runtime.zygote"]


def zygote_pythonpath(site: Path) -> str:
    return f"{RUNTIME_SOURCE}:{site}"
