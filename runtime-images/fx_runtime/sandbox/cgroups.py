"""Per-replica cgroups: a memory limit and a process-count limit, under one parent per fx instance.

cgroup v2 (`memory.max`, `pids.max`) where a cgroup2 hierarchy has the controllers and fx may enable
them; otherwise cgroup v1 (`memory.limit_in_bytes`, `pids.max`). The parent is created inside the
cgroup the zygote runs in (so whoever accounts for fx still does), named for the instance, so two fx
instances on one host never touch each other's cgroups.

Out of memory on v1: the kernel's OOM killer is disabled in the replica's cgroup and an eventfd reports
the moment the limit is hit, so the zygote can give the replica a small reserve and ask it to answer
its caller `Runtime.OutOfMemory` before it exits (zygote.py). On v2 the kernel's OOM killer ends the
replica and the caller gets the gateway's 502.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field

OOM_RESERVE_BYTES = 32 << 20  # what a replica gets past its limit to answer its caller and exit
AT_LIMIT_SLACK_BYTES = 4 << 20  # a replica held at its limit is within a fault's charge of it, far under 32 MB


@dataclass(frozen=True)
class Hierarchy:
    version: int  # 1 or 2
    controllers: frozenset[str]  # of those fx uses (memory, pids) this hierarchy carries
    base: str  # the instance's parent cgroup: <mount><own cgroup>/<parent name>


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """/proc/self/cgroup -> {"memory": "/a/b", "pids": "/", "": "/x"} ("" = the v2 hierarchy)."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _mounts(mountinfo: str) -> list[tuple[str, str, set[str]]]:
    """(fstype, mount point, super options) of every cgroup mount in /proc/self/mountinfo."""
    found = []
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fstype, _, options = [*after.split(" "), "", "", ""][:3]
        if fstype in ("cgroup", "cgroup2"):
            found.append((fstype, before.split(" ")[4], set(options.split(","))))
    return found


def find(parent: str, proc_cgroup: str, mountinfo: str, v2_controllers: dict[str, str]) -> list[Hierarchy]:
    """The hierarchies to use for `memory` and `pids`: one v2 hierarchy that has both (and can delegate them,
    `v2_controllers` maps a v2 mount point to its cgroup.controllers text), else the v1 ones that exist."""
    own = _own_paths(proc_cgroup)
    mounts = _mounts(mountinfo)
    for fstype, point, _ in mounts:
        if fstype == "cgroup2" and {"memory", "pids"} <= set(v2_controllers.get(point, "").split()):
            return [Hierarchy(2, frozenset({"memory", "pids"}), _join(point, own.get("", "/"), parent))]
    found = []
    for fstype, point, options in mounts:
        if fstype == "cgroup":
            wanted = frozenset(options & {"memory", "pids"})
            if wanted:
                found.append(Hierarchy(1, wanted, _join(point, own.get(sorted(wanted)[0], "/"), parent)))
    return found


def _join(point: str, own: str, parent: str) -> str:
    return os.path.join(point, own.lstrip("/"), parent)


def detect(parent: str, create: bool = True) -> list[Hierarchy]:
    """This process's usable hierarchies, with the instance's parent created (and v2 controllers enabled);
    with create=False, the hierarchies where that parent exists."""
    with open("/proc/self/cgroup") as f:
        proc_cgroup = f.read()
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    v2 = {}
    for fstype, point, _ in _mounts(mountinfo):
        if fstype == "cgroup2":
            with contextlib.suppress(OSError), open(os.path.join(point, "cgroup.controllers")) as f:
                v2[point] = f.read()
    usable = []
    for h in find(parent, proc_cgroup, mountinfo, v2):
        if not create:
            if os.path.isdir(h.base):
                usable.append(h)
            continue
        try:
            os.makedirs(h.base, exist_ok=True)
            if h.version == 2:
                for d in (os.path.dirname(h.base), h.base):
                    _write(d, "cgroup.subtree_control", "+memory +pids")
        except OSError:
            continue
        usable.append(h)
    return usable


def _read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read()


def _write(directory: str, name: str, value: str) -> None:
    fd = os.open(os.path.join(directory, name), os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


@dataclass
class ReplicaCgroup:
    """One replica's cgroups (one directory per hierarchy). The child joins them; the zygote removes them."""

    dirs: list[str]
    memory_dir: str | None
    version: int
    limit: int
    oom_fd: int | None = None  # v1: an eventfd that becomes readable when the replica hits its limit
    _control_fd: int | None = field(default=None, repr=False)

    def join(self) -> None:
        """Move the calling process in (it writes "0", meaning itself, whatever its PID namespace)."""
        for d in self.dirs:
            _write(d, "cgroup.procs", "0")

    def set_memory(self, memory_mb: int) -> None:
        """The replica's memory limit, swap included (no swapping past it)."""
        self.limit = memory_mb << 20
        if self.memory_dir is None:
            return
        if self.version == 1:
            _write(self.memory_dir, "memory.limit_in_bytes", str(self.limit))
            with contextlib.suppress(FileNotFoundError):  # memsw must stay >= the limit: set after it
                _write(self.memory_dir, "memory.memsw.limit_in_bytes", str(self.limit))
        else:
            _write(self.memory_dir, "memory.max", str(self.limit))
            with contextlib.suppress(FileNotFoundError):
                _write(self.memory_dir, "memory.swap.max", "0")

    def raise_limit(self, extra: int) -> None:
        if self.memory_dir is None:
            return
        if self.version == 1:
            with contextlib.suppress(FileNotFoundError):  # memsw first: it must stay >= the limit
                _write(self.memory_dir, "memory.memsw.limit_in_bytes", str(self.limit + extra))
            _write(self.memory_dir, "memory.limit_in_bytes", str(self.limit + extra))
        else:
            _write(self.memory_dir, "memory.max", str(self.limit + extra))

    def at_limit(self) -> bool:
        """Whether the replica's usage is at its memory limit (v1). Raising the limit writes memsw first, which
        already wakes a replica held at the old limit: it faults again before the limit itself is raised and
        sends an OOM event of its own. That event is stale: the replica stands at the old limit, well under the
        new one, and must not be taken for the reserve running out."""
        if self.memory_dir is None or self.version != 1:
            return True
        try:
            usage = int(_read(self.memory_dir, "memory.usage_in_bytes"))
            limit = int(_read(self.memory_dir, "memory.limit_in_bytes"))
        except (OSError, ValueError):
            return True  # unreadable: take the event as it comes
        return usage + AT_LIMIT_SLACK_BYTES >= limit

    def close_fds(self) -> None:
        for fd in (self.oom_fd, self._control_fd):
            if fd is not None:
                os.close(fd)
        self.oom_fd = self._control_fd = None

    def remove(self) -> bool:
        """Remove the directories; False while one still has a process (the rest of a dying PID namespace)."""
        self.close_fds()
        self.dirs = [d for d in self.dirs if not _rmdir(d)]
        return not self.dirs


def create(hierarchies: list[Hierarchy], name: str, pids_max: int) -> ReplicaCgroup:
    """A replica's cgroups, with its process limit; its memory limit comes with its function (set_memory)."""
    cg = ReplicaCgroup([], None, 1, 0)
    try:
        for h in hierarchies:
            d = os.path.join(h.base, name)
            os.makedirs(d, exist_ok=True)
            cg.dirs.append(d)
            if "pids" in h.controllers:
                _write(d, "pids.max", str(pids_max))
            if "memory" in h.controllers:
                cg.memory_dir, cg.version = d, h.version
                if h.version == 1:
                    _write(d, "memory.oom_control", "1")
                    cg.oom_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                    cg._control_fd = os.open(os.path.join(d, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
                    _write(d, "cgroup.event_control", f"{cg.oom_fd} {cg._control_fd}")
    except OSError:
        cg.remove()
        raise
    return cg


def _rmdir(d: str) -> bool:
    try:
        os.rmdir(d)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def clean(hierarchies: list[Hierarchy]) -> None:
    """Remove what an earlier zygote of this instance left (its replicas died with it, or die now)."""
    for h in hierarchies:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(h.base):
                if entry.is_dir(follow_symlinks=False):
                    _kill_all(entry.path)
                    _rmdir(entry.path)


def _kill_all(d: str) -> None:
    with contextlib.suppress(OSError), open(os.path.join(d, "cgroup.procs")) as f:
        for pid in f.read().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def remove_base(hierarchies: list[Hierarchy]) -> bool:
    """True when the instance's parent cgroups are gone (they are only removable once empty)."""
    return all([_rmdir(h.base) for h in hierarchies])
