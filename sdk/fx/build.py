"""A function's build: its code zip and, apart, a dependency layer zip (what requirements.txt installs).

Both are deterministic: the same files give the same bytes, hence the same digest, so an unchanged
function is neither uploaded nor turned into a new version. The two are separate artifacts (as Lambda's
layers are), so a handler-only change uploads only the small code zip.

Nothing is zipped to learn a digest that was zipped before: the code's digest is remembered under a hash
of its files (paths, modes, contents: cheap next to deflating), the layer's under its requirements key,
both in the cache folder (~/.cache/fx, FX_CACHE_DIR).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fx import ignore, interpreters
from fx.errors import InputError
from fx.paths import cache_dir

MAX_UNZIPPED_BYTES = 250 * 1024 * 1024  # Lambda's limit (code and layers together); the controller enforces it too
EXCLUDED_TOP_FILES = frozenset({"fx.yaml"})
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FORMAT = b"fx-zip-1"  # part of every remembered digest's key: change it when _zip's output changes
CODE_LEVEL = 6  # deflate level of the code zip (the zip of a function without requirements is as before)
# A layer is big and zipped again whenever requirements.txt changes: level 1 zips pandas' 107 MB in a third
# of level 6's time (2.0 s vs 6.0 s here) for 32 MB instead of 28.
LAYER_LEVEL = 1

Progress = Callable[[str], None]
_INCLUDE = re.compile(r"\s*(?:-r|-c|--requirement|--constraint)(?:\s*=\s*|\s*)(\S+)")


class BuildError(InputError):
    pass


@dataclass(frozen=True)
class Package:
    """One zip to upload: `data()` zips (or reads) it only when called, i.e. when the server lacks it."""

    digest: str  # "sha256:<hex>" of the zip's bytes
    unzipped_size: int
    data: Callable[[], bytes]


@dataclass(frozen=True)
class Build:
    code: Package
    dependencies: Package | None  # None: no requirements.txt, or one without requirements
    ignored: str | None  # what the ignore rules left out, for the user (ignore.Selection.summary)


def build(
    code_dir: Path, runtime: str = "python3.11", project_dir: Path | None = None, progress: Progress | None = None
) -> Build:
    """The code of `code_dir` and the dependencies of its requirements.txt, installed for `runtime`."""
    selection = ignore.select(code_dir, project_dir, EXCLUDED_TOP_FILES)
    deps = None
    requirements = code_dir / "requirements.txt"  # installed even when an ignore rule keeps it out of the code
    if requirements.is_file() and _has_requirements(requirements):
        deps = _layer(dependencies(requirements, runtime, progress), progress or _quiet)
    code = _code(selection.files)
    size = code.unzipped_size + (deps.unzipped_size if deps else 0)
    if size > MAX_UNZIPPED_BYTES:
        raise BuildError(
            f"{code_dir}: code and dependencies are {size / 2**20:.0f} MB unzipped; the limit is"
            f" {MAX_UNZIPPED_BYTES // 2**20} MB (trim requirements.txt or the folder, or list files in .fxignore)"
        )
    return Build(code=code, dependencies=deps, ignored=selection.summary())


def source_digest(files: dict[str, Path]) -> str:
    """A hash of what a zip of `files` would hold: sorted relative paths, their modes and contents."""
    digest = hashlib.sha256(_FORMAT)
    for name in sorted(files):
        path = files[name]
        digest.update(f"\0{name}\0{_mode(path):o}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _code(files: dict[str, Path]) -> Package:
    memo = cache_dir() / "code" / source_digest(files)
    size = sum(p.stat().st_size for p in files.values())
    known = memo.read_text().strip() if memo.is_file() else ""
    if known:
        return Package(digest=known, unzipped_size=size, data=lambda: _zip(files, CODE_LEVEL))
    data = _zip(files, CODE_LEVEL)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _write_atomically(memo, digest.encode())
    return Package(digest=digest, unzipped_size=size, data=lambda: data)


def _layer(installed: Path, progress: Progress) -> Package:
    """The zip of an installed requirements folder, made once and kept beside it (the folder never changes)."""
    zipped = installed.with_name(installed.name + ".zip")
    memo = installed.with_name(installed.name + ".sha256")
    files = _walk(installed)
    size = sum(p.stat().st_size for p in files.values())
    if not (zipped.is_file() and memo.is_file()):
        progress(f"zipping the dependency layer, {size / 2**20:.1f} MB")
        data = _zip(files, LAYER_LEVEL)
        _write_atomically(zipped, data)
        _write_atomically(memo, ("sha256:" + hashlib.sha256(data).hexdigest()).encode())
    return Package(digest=memo.read_text().strip(), unzipped_size=size, data=zipped.read_bytes)


def dependencies(requirements: Path, runtime: str, progress: Progress | None = None) -> Path:
    """A folder with requirements.txt installed for `runtime`, cached by content and Python version.

    pip keeps its cache (~/.cache/pip): a requirement added to the file downloads (or builds) only that
    requirement, every other one installs from its cached wheel.
    """
    version = python_version(runtime)
    key = hashlib.sha256(_requirements_bytes(requirements, set()) + b"\0" + version.encode()).hexdigest()
    target = cache_dir() / "deps" / key
    if target.is_dir():
        return target
    command, hint = pip_command(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=target.parent))
    command += ["--disable-pip-version-check", "--no-compile", "--progress-bar", "off"]
    command += ["--target", str(tmp), "-r", str(requirements)]
    progress = progress or _quiet
    progress(f"installing {requirements.name}")
    code, output = _run_streaming(command, progress)
    if code != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildError(f"{requirements}: pip install failed:\n{output.strip()}{hint}")
    try:
        tmp.rename(target)
    except OSError:  # a concurrent build got there first; its result is as good
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _requirements_bytes(path: Path, seen: set[Path]) -> bytes:
    """A requirements file's bytes and those of the files it includes (-r, -c, as pip reads them: relative to
    the including file), so a pin changed in an included file installs again instead of reusing the cache."""
    if path in seen:
        return b""
    seen.add(path)
    data = path.read_bytes()
    parts = [data]
    for line in data.decode(errors="replace").splitlines():
        if match := _INCLUDE.match(line):
            with contextlib.suppress(OSError):  # pip names a missing file
                parts.append(_requirements_bytes((path.parent / match[1]).resolve(), seen))
    return b"\0".join(parts)


def python_version(runtime: str) -> str:
    """The Python version ("3.11") dependencies are built for. A custom runtime ("provided") brings its own
    bootstrap; its Python dependencies are built for this interpreter."""
    return (runtime if runtime.startswith("python") else interpreters.own_runtime()).removeprefix("python")


def pip_command(version: str) -> tuple[list[str], str]:
    """The `pip install` that installs for Python `version`, and a hint to add when it fails.

    Run for that Python's own interpreter when this host has it (so compiled code matches it); without
    it, pip can only use wheels built for that version."""
    runtime = f"python{version}"
    try:
        interpreter = interpreters.find(runtime) if runtime != interpreters.own_runtime() else sys.executable
    except ValueError as e:  # a malformed FX_INTERPRETERS
        raise BuildError(f"{interpreters.ENV}: {e}") from None
    command = [sys.executable, "-m", "pip", "install"]
    if interpreter is None:
        hint = (
            f"\n(no Python {version} on this host, so only wheels built for it can be used; install python{version}"
            f" or name it with {interpreters.ENV}=python{version}=/path/to/python{version} to build from source)"
        )
        return [*command, "--python-version", version, "--only-binary=:all:"], hint
    if interpreter != sys.executable:
        command[3:3] = ["--python", interpreter]  # pip run for that Python: its wheels, its compiler for sdists
    return command, ""


_PIP_PROGRESS = ("Collecting ", "Downloading ", "Using cached ", "Building wheel", "Installing collected")


def _run_streaming(command: list[str], progress: Progress) -> tuple[int, str]:
    """Run pip, passing its milestones (each requirement collected, downloaded, installed) to `progress`."""
    lines = []
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            lines.append(line)
            if line.lstrip().startswith(_PIP_PROGRESS):  # without "(from pandas->-r /long/path (line 1))"
                progress("pip: " + line.strip().split(" (from ")[0])
    return pip.returncode, "".join(lines)


def _quiet(line: str) -> None:
    pass


def _has_requirements(path: Path) -> bool:
    return any(line.split("#", 1)[0].strip() for line in path.read_text().splitlines())


def _walk(root: Path) -> dict[str, Path]:
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            path = Path(folder) / name
            if not name.endswith(".pyc") and path.is_file():
                files[path.relative_to(root).as_posix()] = path
    return files


def _mode(path: Path) -> int:
    return 0o755 if path.stat().st_mode & 0o111 else 0o644


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _zip(files: dict[str, Path], level: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name in sorted(files):
            path = files[name]
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.create_system = 3  # unix, so extractors honour the mode bits
            info.external_attr = (0o100000 | _mode(path)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=level)
    return buf.getvalue()
