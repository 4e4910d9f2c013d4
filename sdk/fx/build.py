"""The code zip: a deterministic Lambda-style deployment package (code + pip dependencies).

Same code and same requirements give the same bytes, hence the same digest, so an
unchanged function is neither uploaded nor turned into a new version.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fx import interpreters
from fx.errors import InputError

MAX_UNZIPPED_BYTES = 250 * 1024 * 1024  # Lambda's limit; the controller enforces it too
EXCLUDED_DIRS = frozenset({".git", "__pycache__", ".venv", "node_modules", ".fx"})
EXCLUDED_TOP_FILES = frozenset({"fx.yaml"})
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class BuildError(InputError):
    pass


@dataclass(frozen=True)
class Artifact:
    data: bytes
    digest: str  # "sha256:<hex>" of data
    unzipped_size: int


def build(code_dir: Path, runtime: str = "python3.11") -> Artifact:
    """Zip `code_dir` plus the dependencies of its requirements.txt, installed for `runtime`."""
    files: dict[str, Path] = {}
    requirements = code_dir / "requirements.txt"
    if requirements.is_file() and _has_requirements(requirements):
        files.update(_walk(dependencies(requirements, runtime), top_excludes=frozenset()))
    files.update(_walk(code_dir, top_excludes=EXCLUDED_TOP_FILES))  # the function's own files win
    size = sum(p.stat().st_size for p in files.values())
    if size > MAX_UNZIPPED_BYTES:
        raise BuildError(
            f"{code_dir}: the package is {size / 2**20:.0f} MB unzipped; the limit is"
            f" {MAX_UNZIPPED_BYTES // 2**20} MB (trim requirements.txt or the folder)"
        )
    data = _zip(files)
    return Artifact(data=data, digest="sha256:" + hashlib.sha256(data).hexdigest(), unzipped_size=size)


def dependencies(requirements: Path, runtime: str) -> Path:
    """A folder with requirements.txt installed for `runtime`, cached by content and Python version. Built by
    that Python's own interpreter when this host has it (so compiled code matches it), else from wheels."""
    # A custom runtime ("provided") brings its own bootstrap; its Python deps are built for this interpreter.
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    version = runtime.removeprefix("python") if runtime.startswith("python") else here
    key = hashlib.sha256(requirements.read_bytes() + b"\0" + version.encode()).hexdigest()
    target = cache_dir() / "deps" / key
    if target.is_dir():
        return target
    try:
        interpreter = interpreters.find(f"python{version}") if version != here else sys.executable
    except ValueError as e:  # a malformed FX_INTERPRETERS
        raise BuildError(f"{interpreters.ENV}: {e}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=target.parent))
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    cmd += ["--target", str(tmp), "-r", str(requirements)]
    if interpreter is None:
        # No such Python here: pip can only use wheels built for it.
        cmd += ["--python-version", version, "--only-binary=:all:"]
    elif interpreter != sys.executable:
        cmd[3:3] = ["--python", interpreter]  # pip run for that Python: its wheels, its compiler for sdists
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        hint = (
            f"\n(no Python {version} on this host, so only wheels built for it can be used; install python{version}"
            f" or name it with {interpreters.ENV}=python{version}=/path/to/python{version} to build from source)"
            if interpreter is None
            else ""
        )
        raise BuildError(f"{requirements}: pip install failed:\n{(result.stderr or result.stdout).strip()}{hint}")
    try:
        tmp.rename(target)
    except OSError:  # a concurrent build got there first; its result is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def cache_dir() -> Path:
    return Path(os.environ.get("FX_CACHE_DIR") or Path.home() / ".cache" / "fx")


def _has_requirements(path: Path) -> bool:
    return any(line.split("#", 1)[0].strip() for line in path.read_text().splitlines())


def _walk(root: Path, top_excludes: frozenset[str]) -> dict[str, Path]:
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        at_top = Path(folder) == root
        for name in names:
            path = Path(folder) / name
            if name.endswith(".pyc") or (at_top and name in top_excludes) or not path.is_file():
                continue
            files[path.relative_to(root).as_posix()] = path
    return files


def _zip(files: dict[str, Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name in sorted(files):
            path = files[name]
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.create_system = 3  # unix, so extractors honour the mode bits
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=6)
    return buf.getvalue()
