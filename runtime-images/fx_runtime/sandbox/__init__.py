"""Each replica in its own sandbox (the local backend, when fx runs as root).

The zygote holds a `Sandbox` (what this host allows, found once at start) and keeps a spare replica
process ready: forked as PID 1 of a new PID namespace, in its own cgroup, with new mount, IPC and UTS
namespaces and the common part of its private file system already built (mounts.py). Joining a
cgroup and unmounting wait for an RCU grace period, milliseconds on a busy host: the spare pays them
before any request waits for it. A spawn hands the spare its function (`Spec`): the zygote sets its memory
limit, the runtime verifies and extracts the code as root, then `Confinement.enter` mounts the code and
the private directory, switches the root, and drops to the function's uid with no supplementary groups,
no capabilities and no_new_privs. Nothing is undone: a replica cannot get out.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from dataclasses import dataclass, field

from . import cgroups, mounts
from . import linux as sl

# Sent to a replica over its memory limit, once it has said ready (its handler is set by then).
OOM_SIGNAL = signal.SIGUSR1
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
    env_file: str = ""  # the replica's environment (JSON, root-only): read by the replica, then removed


class Sandbox:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.new_root = os.path.join(config.run_dir, ".root")  # an empty mount point, used in private namespaces only
        os.makedirs(self.new_root, mode=0o700, exist_ok=True)
        self.hierarchies = cgroups.detect(config.cgroup_parent)
        cgroups.clean(self.hierarchies)
        system = mounts.system_entries()
        self.base = mounts.base_plan(
            config.tmp_mb, system, mounts.python_roots(mounts.interpreter_paths(), config.hidden)
        )
        self.last_cap = sl.last_capability()
        self._pid_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        self._spares = 0
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
        """Remove the instance's cgroups (the replicas are gone, or going: their PID namespaces take a moment)."""
        deadline = time.monotonic() + 2.0
        while True:
            cgroups.clean(self.hierarchies)
            if cgroups.remove_base(self.hierarchies) or time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def before_fork(self) -> None:
        """Make the next fork() the first process (PID 1) of a new PID namespace."""
        sl.setns(self._pid_ns, sl.CLONE_NEWPID)  # back in our own: unshare works only from there
        sl.unshare(sl.CLONE_NEWPID)

    def spare(self) -> Confinement:
        """In the zygote, before forking a spare: its cgroup (no memory limit until it has a function)."""
        self._spares += 1
        cgroup = cgroups.create(self.hierarchies, f"replica-{self._spares}", self.config.pids_max)
        confinement = Confinement(self, cgroup)
        if self.namespaces:
            try:
                self.before_fork()
            except OSError:
                confinement.zygote_fds()
                confinement.release()
                raise
        return confinement


def _pipe() -> tuple[int, int]:
    return os.pipe2(os.O_CLOEXEC)


@dataclass
class Confinement:
    """One replica's sandbox, seen from both sides of the fork: the zygote assigns, the child enters."""

    sandbox: Sandbox
    cgroup: cgroups.ReplicaCgroup
    control: tuple[int, int] = field(default_factory=_pipe)  # zygote -> replica: out of memory (a byte)
    assignment: tuple[int, int] = field(default_factory=_pipe)  # zygote -> spare: its function (a JSON line)
    spec: Spec | None = None
    oom_signalled: bool = False
    _problem: str = ""  # why the spare's preparation failed, reported once it has a function

    # --- in the spare (the child) ---------------------------------------------

    @property
    def control_fd(self) -> int:
        """The replica's end: a byte means "out of memory: answer and exit"; EOF means the zygote is gone."""
        return self.control[0]

    def child_fds(self) -> list[int]:
        """Close the zygote's ends; only the zygote keeps the write ends, so its death is an EOF here."""
        os.close(self.control[1])
        os.close(self.assignment[1])
        return [self.control[0], self.assignment[0]]

    def prepare(self) -> None:
        """Join the cgroup and build the common file system, before any function is known."""
        sl.prctl(sl.PR_SET_PDEATHSIG, signal.SIGKILL)
        if self._zygote_gone():
            os._exit(1)
        try:
            self.cgroup.join()
            if self.sandbox.namespaces:
                sl.unshare(PRIVATE_NAMESPACES)
                mounts.build(self.sandbox.base, self.sandbox.new_root)
        except OSError as e:
            self._problem = str(e)

    def wait(self) -> dict | None:
        """Block until the zygote hands this spare a replica to become; None when the zygote is gone."""
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self.assignment[0], 1 << 16)
            if not chunk:
                return None
            data += chunk
        os.close(self.assignment[0])
        assignment = json.loads(data)
        self.spec = Spec(**assignment["sandbox"])
        if self.spec.env_file:
            with open(self.spec.env_file, "rb") as f:
                assignment["env"].update(json.load(f))
            os.unlink(self.spec.env_file)
        return assignment

    def enter(self, code_dir: str, layer_dir: str | None = None) -> tuple[str, str | None]:
        """After the code (and its dependency layer) is verified and extracted: confine this process for good.
        Returns the code and layer directories as the replica now sees them."""
        if self._problem:
            raise OSError(self._problem)
        spec, s = self.spec, self.sandbox
        assert spec is not None
        if s.namespaces:
            mounts.finish(mounts.function_plan(code_dir, spec.private_dir, layer_dir), s.new_root)
            code_dir, layer_dir = mounts.TASK_ROOT, layer_dir and mounts.LAYER_ROOT
        os.chdir(code_dir)
        sl.drop_bounding_capabilities(s.last_cap)
        os.setgroups([])
        os.setresgid(spec.gid, spec.gid, spec.gid)
        os.setresuid(spec.uid, spec.uid, spec.uid)  # clears every capability
        sl.prctl(sl.PR_SET_NO_NEW_PRIVS, 1)
        sl.prctl(sl.PR_SET_PDEATHSIG, signal.SIGKILL)  # the credential change cleared it ...
        sl.prctl(sl.PR_SET_DUMPABLE, 1)  # ... and this: /proc/self (/dev/stdout, /dev/fd) is the function's again
        if self._zygote_gone():
            os._exit(1)
        return code_dir, layer_dir

    def _zygote_gone(self) -> bool:
        """Did the zygote die before PR_SET_PDEATHSIG was (re)set? Then nothing would ever kill us."""
        poll = select.poll()
        poll.register(self.control_fd, select.POLLIN)
        return any(ev & select.POLLHUP for _, ev in poll.poll(0))

    # --- in the zygote -------------------------------------------------------

    def zygote_fds(self) -> None:
        os.close(self.control[0])
        os.close(self.assignment[0])

    def assign(self, replica_id: str, env: dict[str, str], log: str, spec: Spec) -> None:
        """Give the spare its function: its memory limit now, then what it is to become."""
        self.spec = spec
        self.cgroup.set_memory(spec.memory_mb)
        line = json.dumps({"id": replica_id, "env": env, "log": log, "sandbox": spec.__dict__}) + "\n"
        data = memoryview(line.encode())
        while data:
            data = data[os.write(self.assignment[1], data) :]
        os.close(self.assignment[1])
        self.assignment = (self.assignment[0], -1)

    def signal_out_of_memory(self, pid: int) -> None:
        """Give the replica `pid` its reserve and tell it to answer Runtime.OutOfMemory and exit: by a byte
        on the control pipe, which its watchdog thread reads, and by OOM_SIGNAL, whose handler runs on the
        main thread at the handler's next bytecode. The main thread holds the GIL while it allocates, so the
        watchdog thread may wait a switch interval (5 ms) and its turn on a CPU, long enough on a fast or
        busy host for the handler to spend the whole reserve; the signal needs neither."""
        self.oom_signalled = True
        self.cgroup.raise_limit(cgroups.OOM_RESERVE_BYTES)
        os.write(self.control[1], b"m")
        os.kill(pid, OOM_SIGNAL)

    def release(self) -> bool:
        """Once the process has exited: True when its cgroups are gone (else try again later)."""
        for fd in (self.control[1], self.assignment[1]):
            if fd >= 0:
                os.close(fd)
        self.control = (self.control[0], -1)
        self.assignment = (self.assignment[0], -1)
        return self.cgroup.remove()
