"""A replica's private view of the file system: what is mounted where (the plans), and mounting it.

The plans are pure, so they are tested without privileges. `build` mounts what every replica has, ahead
of time; `finish` adds the function's own mounts and switches the root. The replica sees the system's read-only
directories (/usr, /etc and the /bin, /lib... links or directories), the interpreter's prefixes and
import paths read-only, its code read-only at /var/task, its dependency layer (if any) read-only at /opt/fx/python,
its private directory (same path as on the host,
so socket and credential paths mean the same inside and out), a fresh /tmp, a minimal /dev and a /proc of
its own PID namespace. Nothing else exists: not the state directory, not the home directory, not other
functions' code.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Literal

from . import linux as sl

TASK_ROOT = "/var/task"
# Lambda has layers at /opt/python; fx's own path, as an interpreter may live under /opt/python (manylinux).
LAYER_ROOT = "/opt/fx/python"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
SHM_MB = 64

NO_DEV_SUID_EXEC = sl.MS_NOSUID | sl.MS_NODEV | sl.MS_NOEXEC
NO_SUID_EXEC = sl.MS_NOSUID | sl.MS_NOEXEC  # devices: nodev would disable them

Kind = Literal["bind", "tmpfs", "proc", "symlink"]


@dataclass(frozen=True)
class Mount:
    kind: Kind
    target: str  # path inside the sandbox
    source: str = ""  # bind: host path; symlink: the link's target
    writable: bool = False
    data: str = ""  # tmpfs options
    flags: int = sl.MS_NOSUID | sl.MS_NODEV


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def python_roots(paths: list[str], hidden: list[str], covered: tuple[str, ...] = SYSTEM_DIRS) -> list[str]:
    """The directories to bind so the interpreter runs: absolute, existing, not already under a system
    directory, none inside another, and none that is or holds a hidden path (the state dir, the CLI config)."""
    roots: list[str] = []
    for path in sorted({os.path.normpath(p) for p in paths if p and os.path.isabs(p)}):
        if path == "/" or any(_inside(path, c) for c in covered):
            continue
        if any(_inside(path, h) or _inside(h, path) for h in hidden):
            continue
        if not any(_inside(path, r) for r in roots):
            roots.append(path)
    return roots


def interpreter_paths() -> list[str]:
    """Where this interpreter's files live: its prefixes, its import path, and this runtime's own package."""
    runtime_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, runtime_parent, *sys.path]
    return [os.path.realpath(p) for p in candidates if p and os.path.isdir(p)]


def system_entries(root: str = "/") -> dict[str, str | None]:
    """The system directories as they are on this host: path -> link target (a symlink) or None (a directory)."""
    entries: dict[str, str | None] = {}
    for path in SYSTEM_DIRS:
        host = os.path.join(root, path.lstrip("/"))
        if os.path.islink(host):
            entries[path] = os.readlink(host)
        elif os.path.isdir(host):
            entries[path] = None
    return entries


def base_plan(tmp_mb: int, system: dict[str, str | None], python: list[str]) -> list[Mount]:
    """The mounts every replica has, in order (a mount's parent directory comes before it)."""
    mounts: list[Mount] = []
    for path, link in system.items():
        mounts.append(Mount("symlink", path, link) if link is not None else Mount("bind", path, path))
    mounts += [Mount("bind", path, path) for path in python]
    mounts.append(Mount("tmpfs", "/tmp", data=f"size={tmp_mb}m,mode=1777"))
    mounts.append(Mount("tmpfs", "/dev", data="size=64k,mode=755", flags=NO_SUID_EXEC))
    mounts += [Mount("bind", f"/dev/{d}", f"/dev/{d}", writable=True, flags=NO_SUID_EXEC) for d in DEVICES]
    mounts += [Mount("symlink", f"/dev/{name}", target) for name, target in DEV_LINKS.items()]
    mounts.append(Mount("tmpfs", "/dev/shm", data=f"size={SHM_MB}m,mode=1777", flags=NO_DEV_SUID_EXEC))
    mounts.append(Mount("proc", "/proc", flags=NO_DEV_SUID_EXEC))
    return mounts


def function_plan(code_dir: str, private_dir: str, layer_dir: str | None = None) -> list[Mount]:
    """The mounts of one function: its code, read-only at /var/task, its dependency layer, read-only at
    /opt/fx/python, and its private directory."""
    return [
        Mount("bind", TASK_ROOT, code_dir),
        *([Mount("bind", LAYER_ROOT, layer_dir)] if layer_dir else []),
        Mount("bind", private_dir, private_dir, writable=True, flags=NO_DEV_SUID_EXEC),
    ]


def build(mounts: list[Mount], new_root: str) -> None:
    """Build the common tree on a fresh tmpfs at `new_root`, in this process's private mount namespace (and as
    PID 1 of its PID namespace, for /proc). Done ahead of time, before the replica knows its function."""
    sl.mount(None, "/", None, sl.MS_REC | sl.MS_PRIVATE)  # nothing we mount reaches the host's namespace
    sl.mount("tmpfs", new_root, "tmpfs", sl.MS_NOSUID | sl.MS_NODEV, "size=1m,mode=755")
    _mount_all(mounts, new_root)


def finish(mounts: list[Mount], new_root: str) -> None:
    """Add the function's mounts, make the tree the root (the host's goes away entirely), read-only."""
    _mount_all(mounts, new_root)
    os.chdir(new_root)
    sl.pivot_root(".", ".")  # the old root ends up on top of the new one ...
    sl.umount2(".", sl.MNT_DETACH)  # ... and is detached
    os.chdir("/")
    sl.mount(None, "/", None, sl.MS_REMOUNT | sl.MS_BIND | sl.MS_RDONLY | sl.MS_NOSUID | sl.MS_NODEV)


def _mount_all(mounts: list[Mount], new_root: str) -> None:
    for m in mounts:
        target = new_root + m.target
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if m.kind == "symlink":
            os.symlink(m.source, target)
        elif m.kind == "bind":
            _bind(m, target)
        else:
            os.makedirs(target, mode=0o755, exist_ok=True)
            sl.mount(m.kind, target, m.kind, m.flags, m.data or None)


def _bind(m: Mount, target: str) -> None:
    if os.path.isdir(m.source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    sl.mount(m.source, target, None, sl.MS_BIND | sl.MS_REC)
    readonly = 0 if m.writable else sl.MS_RDONLY
    sl.mount(None, target, None, sl.MS_REMOUNT | sl.MS_BIND | readonly | m.flags)
