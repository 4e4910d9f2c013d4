"""Each replica in its own sandbox (the local backend, when fx runs as root).

The zygote holds a `Sandbox` (what this host allows, found once at start) and, per spawn, a `Confinement`
(that function's uid, code, private directory and cgroup). Before each fork the zygote enters a fresh PID
namespace for its children (so every replica is PID 1 of its own); the child joins its cgroup, and after
the runtime has verified and extracted the code, `Confinement.enter` gives it new mount, IPC and UTS
namespaces, the private file system of sandbox_mounts.py, and drops to the function's uid with no
supplementary groups, no capabilities and no_new_privs. Nothing is undone: a replica cannot get out.
"""

from __future__ import annotations

import os
import select
import signal
from dataclasses import dataclass, field

from . import sandbox_cgroups as cgroups
from . import sandbox_linux as sl
from . import sandbox_mounts as mounts

PRIVATE_NAMESPACES = sl.CLONE_NEWNS | sl.CLONE_NEWIPC | sl.CLONE_NEWUTS


@dataclass(frozen=True)
class Config:
    """The zygote's `--sandbox` JSON, from the controller."""

    run_dir: str  # root-only directory of this instance (holds the functions' private directories)
    cgroup_parent: str  # the instance's cgroup name, e.g. fx-1a2b3c4d
    hidden: list[str] = field(default_factory=list)  # never mounted, nor any directory holding them
    tmp_mb: int = 512
    pids_max: int = 256


@dataclass(frozen=True)
class Spec:
    """A spawn's `sandbox` object: who the replica runs as and what it may see."""

    uid: int
    gid: int
    private_dir: str
    memory_mb: int


class Sandbox:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.new_root = os.path.join(config.run_dir, ".root")  # an empty mount point, used in private namespaces only
        os.makedirs(self.new_root, mode=0o700, exist_ok=True)
        self.hierarchies = cgroups.detect(config.cgroup_parent)
        cgroups.clean(self.hierarchies)
        self.system = mounts.system_entries()
        self.python = mounts.python_roots(mounts.interpreter_paths(), config.hidden)
        self.last_cap = sl.last_capability()
        self._pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self.namespaces_error = self._probe()

    @property
    def namespaces(self) -> bool:
        return not self.namespaces_error

    def controllers(self) -> dict[str, int]:
        """Limit -> cgroup version enforcing it (memory, pids)."""
        return {c: h.version for h in self.hierarchies for c in sorted(h.controllers)}

    def _probe(self) -> str:
        """Can a child get private namespaces and a tmpfs? "" if so, else why not."""
        try:
            self.before_fork()
        except OSError as e:
            return str(e)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_fd)
                sl.unshare(PRIVATE_NAMESPACES)
                sl.mount(None, "/", None, sl.MS_REC | sl.MS_PRIVATE)
                sl.mount("tmpfs", self.new_root, "tmpfs", sl.MS_NOSUID | sl.MS_NODEV, "size=64k")
            except OSError as e:
                os.write(write_fd, str(e).encode())
            os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            error = f.read().decode()
        os.waitpid(pid, 0)
        return error

    def close(self) -> None:
        """Remove the instance's cgroups (the replicas are gone)."""
        cgroups.clean(self.hierarchies)
        cgroups.remove_base(self.hierarchies)

    def before_fork(self) -> None:
        """Make the next fork() the first process (PID 1) of a new PID namespace."""
        sl.setns(self._pid_ns, sl.CLONE_NEWPID)  # back in our own: unshare works only from there
        sl.unshare(sl.CLONE_NEWPID)

    def confinement(self, spec: Spec, name: str) -> Confinement:
        """Prepare (in the zygote, before the fork) what a replica is confined to; its cgroup exists from now.
        The controller has made the private directory (it puts files there too)."""
        cgroup = cgroups.create(self.hierarchies, name, spec.memory_mb, self.config.pids_max)
        return Confinement(self, spec, cgroup)


@dataclass
class Confinement:
    sandbox: Sandbox
    spec: Spec
    cgroup: cgroups.ReplicaCgroup
    control: tuple[int, int] = field(default_factory=lambda: os.pipe2(os.O_CLOEXEC))  # zygote -> replica
    oom_signalled: bool = False

    @property
    def control_fd(self) -> int:
        """The replica's end: a byte means "out of memory: answer and exit"; EOF means the zygote is gone."""
        return self.control[0]

    def join_cgroup(self) -> None:
        """In the child, first of all: every page and process from now on counts against its limits."""
        self.cgroup.join()

    def enter(self, code_dir: str) -> str:
        """In the child, after the code is verified and extracted: confine this process. Returns the code
        directory as the replica now sees it."""
        s = self.sandbox
        if s.namespaces:
            sl.unshare(PRIVATE_NAMESPACES)
            plan = mounts.plan(code_dir, self.spec.private_dir, s.config.tmp_mb, s.system, s.python)
            mounts.apply(plan, s.new_root)
            code_dir = mounts.TASK_ROOT
        os.chdir(code_dir)
        sl.drop_bounding_capabilities(s.last_cap)
        os.setgroups([])
        os.setresgid(self.spec.gid, self.spec.gid, self.spec.gid)
        os.setresuid(self.spec.uid, self.spec.uid, self.spec.uid)  # clears every capability
        sl.prctl(sl.PR_SET_NO_NEW_PRIVS, 1)
        sl.prctl(sl.PR_SET_PDEATHSIG, signal.SIGKILL)  # a credential change cleared the zygote's setting
        poll = select.poll()
        poll.register(self.control_fd, select.POLLIN)
        if any(ev & select.POLLHUP for _, ev in poll.poll(0)):  # the zygote died before PDEATHSIG was set
            os._exit(1)
        return code_dir

    def close_zygote_end(self) -> None:
        """In the child: only the zygote keeps the write end, so its death is an EOF here."""
        os.close(self.control[1])

    def close_replica_end(self) -> None:
        os.close(self.control[0])

    def signal_out_of_memory(self) -> None:
        """In the zygote: give the replica its reserve and tell it to answer Runtime.OutOfMemory and exit."""
        self.oom_signalled = True
        self.cgroup.raise_limit(cgroups.OOM_RESERVE_BYTES)
        os.write(self.control[1], b"m")

    def release(self) -> bool:
        """In the zygote, once the replica has exited: True when its cgroups are gone (else try again later)."""
        if self.control[1] >= 0:
            os.close(self.control[1])
            self.control = (self.control[0], -1)
        return self.cgroup.remove()
