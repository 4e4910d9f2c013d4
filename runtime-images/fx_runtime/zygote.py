"""`python -m fx_runtime.zygote`: the local backend's fork server (ARCHITECTURE.md, "the zygote protocol").

Reads `{"op": "spawn", "id", "env", "log", "sandbox"?}` lines on stdin and forks a replica per line from
this already-imported interpreter; writes `spawned` / `ready` / `init_error` / `exit` events as JSON lines
on stdout. Single-threaded on purpose: forking a process that has threads is unsafe.

Started with `--control PATH --lifeline FD` (by `fx up`'s controller), it outlives the controller that
started it: when its stdin closes without a `stop`, it keeps its replicas and waits on the Unix socket PATH
for the next controller, greets it with `{"event": "hello", ...}` (its pid, sandbox report and ready
replicas) and takes its commands from that connection. It stops when the lifeline (a pipe whose write end
only `fx up` holds) closes, so neither it nor its replicas outlive `fx up`, however that ends. Without
them, it dies with its parent (PDEATHSIG) as before.

Started with `--sandbox`, it first reads one line of sandbox.Config JSON from stdin; its first event is then
`{"event": "sandbox", ...}` (what this host allows), and a spawn with a `sandbox` object (sandbox.Spec) runs
confined (sandbox/). Such a spawn's environment is not in the command but in `sandbox.env_file`, which
only the replica reads: a replica is forked from this process's memory, which must never have held another
function's variables.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import encodings.idna  # noqa: F401  (asyncio's create_server encodes the host name with it: 3 ms per replica)
import gc
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback

from . import replica  # imports everything a replica needs, once, before any fork
from . import sandbox as sandboxing
from .invoker import OUT_OF_MEMORY_MESSAGE

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_STOP_GRACE_S = 10.0
# A replica told it is out of memory has this long to answer and exit (1 s was missed on a loaded 2-core host).
_OOM_GRACE_S = 3.0


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent ends (and now, if that already happened)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != expected_parent:
        os._exit(1)


def emit(event: dict, fd: int = 1) -> None:
    data = memoryview((json.dumps(event) + "\n").encode())
    while data:
        data = data[os.write(fd, data) :]


class Zygote:
    def __init__(
        self,
        sandbox: sandboxing.Sandbox | None = None,
        report: dict | None = None,
        control: str | None = None,
        lifeline: int | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.report = report  # the sandbox report, told again to each controller that connects
        self.commands_fd: int | None = 0  # the controller's commands: stdin, or an accepted control connection
        self.events_fd: int | None = 1  # where events go; None while no controller is connected
        self.connection: socket.socket | None = None
        self.endpoints: dict[int, str] = {}  # pid -> endpoint, once ready: what a new controller may adopt
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, str] = {}  # pid -> replica id
        self.reports: dict[int, tuple[str, int, bytearray]] = {}  # report pipe fd -> (replica id, pid, partial line)
        self.report_fd: dict[int, int] = {}  # pid -> its report pipe fd
        self.reported: set[int] = set()  # pids that have said ready / init_error
        self.confined: dict[int, sandboxing.Confinement] = {}  # pid -> its sandbox, while it lives
        self.spares: dict[int, int] = {}  # pid of an idle spare -> its report pipe fd
        self.oom: dict[int, int] = {}  # out-of-memory eventfd -> pid
        self.kill_at: dict[int, float] = {}  # pid -> when to SIGKILL it (told it was out of memory)
        self.released: list[sandboxing.Confinement] = []  # exited, cgroups not removable yet
        self.commands = bytearray()
        self.stop_by: float | None = None  # set when stdin closes: stop replicas, then exit
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector through the wakeup fd
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the controller's to handle
        self.selector.register(0, selectors.EVENT_READ, None)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self.control_path = control
        self.listener: socket.socket | None = None
        if control is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control)  # a dead zygote's: nothing listens on it
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)  # connectable by this uid only (its directory is 0700 too)
            try:
                self.listener.bind(control)
            finally:
                os.umask(old)
            self.listener.listen(1)
            self.selector.register(self.listener.fileno(), selectors.EVENT_READ, None)
        self.lifeline = lifeline
        if lifeline is not None:
            os.set_blocking(lifeline, False)
            self.selector.register(lifeline, selectors.EVENT_READ, None)

    def emit(self, event: dict) -> None:
        """An event for the controller; dropped while none is connected (the next one is told in its hello)."""
        if self.events_fd is None:
            return
        try:
            emit(event, self.events_fd)
        except OSError:  # the controller is gone
            self.disconnect()

    def run(self) -> None:
        while self.stop_by is None or ((self.children or self.spares) and time.monotonic() < self.stop_by):
            timeout = min([1.0, *(at - time.monotonic() for at in self.kill_at.values())])
            for key, _ in self.selector.select(timeout=max(timeout, 0)):
                if self.selector.get_map().get(key.fd) is not key:
                    continue  # unregistered by an earlier event of this batch (a controller replaced)
                if key.fd == self.commands_fd:
                    self.read_commands()
                elif self.listener is not None and key.fd == self.listener.fileno():
                    self.accept()
                elif key.fd == self.lifeline:
                    self.read_lifeline()
                elif key.fd == self.wake_r:
                    while os.read(self.wake_r, 512) == 512:
                        pass
                elif key.fd in self.oom:
                    self.out_of_memory(key.fd)
                else:
                    self.read_report(key.fd)
            self.reap()
            self.refill()
            self.kill_late()
            self.released = [c for c in self.released if not c.release()]
        if self.control_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.control_path)

    def read_commands(self) -> None:
        assert self.commands_fd is not None
        try:
            data = os.read(self.commands_fd, 1 << 16)
        except OSError:  # a connection reset by a controller that died
            data = b""
        if not data:
            if self.listener is None:
                self.stop()  # no other controller can come: this one's going ends us
            else:
                self.disconnect()
            return
        self.commands += data
        *lines, rest = self.commands.split(b"\n")
        self.commands = bytearray(rest)
        for line in lines:
            if line.strip():
                self.command(line)

    def stop(self) -> None:
        """Stop the replicas (SIGTERM, SIGKILL after the grace the loop keeps), then exit. Idempotent."""
        if self.stop_by is not None:
            return
        if self.commands_fd is not None:  # no more commands; the controller still hears the exits, if it listens
            self.selector.unregister(self.commands_fd)
            self.commands_fd = None
        if self.listener is not None:  # no controller may connect to a zygote that is going
            self.selector.unregister(self.listener.fileno())
            self.listener.close()
            self.listener = None
        self.stop_by = time.monotonic() + _STOP_GRACE_S
        for pid in self.children:
            os.kill(pid, signal.SIGTERM)
        for pid in self.spares:
            os.kill(pid, signal.SIGKILL)

    def disconnect(self) -> None:
        """The controller is gone (or replaced): keep the replicas, wait for the next one."""
        if self.commands_fd is not None:
            self.selector.unregister(self.commands_fd)
        if self.connection is not None:
            self.connection.close()
        elif self.events_fd is not None:  # the first controller's pipes: /dev/null in their place
            null_fd = os.open(os.devnull, os.O_RDWR)
            os.dup2(null_fd, 0)
            os.dup2(null_fd, 1)
            os.close(null_fd)
        self.commands_fd = self.events_fd = None
        self.connection = None
        self.commands.clear()

    def accept(self) -> None:
        """A controller connects (the one that started us is gone): it gets our replicas, then commands us."""
        assert self.listener is not None
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        self.disconnect()  # one controller at a time: the state dir's lock makes a second one impossible
        connection.setblocking(True)
        self.connection = connection
        self.commands_fd = self.events_fd = connection.fileno()
        self.selector.register(self.commands_fd, selectors.EVENT_READ, None)
        ready = [
            {"id": replica_id, "pid": pid, "endpoint": self.endpoints[pid]}
            for pid, replica_id in self.children.items()
            if pid in self.endpoints
        ]
        self.emit({"event": "hello", "pid": os.getpid(), "sandbox": self.report, "replicas": ready})

    def read_lifeline(self) -> None:
        """Readable only once `fx up` is gone (nothing is ever written to it): stop."""
        assert self.lifeline is not None
        self.selector.unregister(self.lifeline)
        os.close(self.lifeline)
        self.lifeline = None
        self.stop()

    def command(self, line: bytes) -> None:
        try:
            cmd = json.loads(line)
            if cmd["op"] == "stop":
                return self.stop()
            if cmd["op"] != "spawn":
                raise ValueError(f"unknown op {cmd['op']!r}")
            spec = sandboxing.Spec(**cmd["sandbox"]) if cmd.get("sandbox") else None
            self.spawn(str(cmd["id"]), {str(k): str(v) for k, v in cmd["env"].items()}, str(cmd["log"]), spec)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            print(f"fx zygote: bad command {line[:200]!r}: {e}", file=sys.stderr, flush=True)

    def spawn(self, replica_id: str, env: dict[str, str], log: str, spec: sandboxing.Spec | None = None) -> None:
        if spec is not None:
            return self.spawn_confined(replica_id, env, log, spec)
        read_fd, write_fd = os.pipe()
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _replica(zygote_pid, read_fd, write_fd, env, log)  # never returns
        os.close(write_fd)
        self.started(replica_id, pid, read_fd)

    def started(self, replica_id: str, pid: int, report_fd: int) -> None:
        os.set_blocking(report_fd, False)
        self.children[pid] = replica_id
        self.reports[report_fd] = (replica_id, pid, bytearray())
        self.report_fd[pid] = report_fd
        self.selector.register(report_fd, selectors.EVENT_READ, None)
        self.emit({"id": replica_id, "event": "spawned", "pid": pid})

    def spawn_confined(self, replica_id: str, env: dict[str, str], log: str, spec: sandboxing.Spec) -> None:
        """Hand the spare this replica (a new spare if there is none), then make the next spare."""
        if self.sandbox is None:
            raise ValueError("a sandboxed spawn, but this zygote was started without --sandbox")
        pid = 0
        try:
            pid = next(iter(self.spares), None) or self.fork_spare()
            confinement = self.confined[pid]
            confinement.assign(replica_id, env, log, spec)
        except OSError as e:
            if pid in self.spares:  # a spare that died unseen: it is reaped as any child
                os.close(self.spares.pop(pid))
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return self.refuse(replica_id, f"cannot prepare the sandbox: {e}")
        self.started(replica_id, pid, self.spares.pop(pid))
        if confinement.cgroup.oom_fd is not None:
            self.oom[confinement.cgroup.oom_fd] = pid
            self.selector.register(confinement.cgroup.oom_fd, selectors.EVENT_READ, None)

    def refill(self) -> None:
        """Fork the next spare when no replica is starting: a fork stalls this loop (and with it the "ready"
        events it relays) for a millisecond or more, and the spare's setup would compete for the CPU."""
        if self.sandbox is None or self.spares or self.stop_by is not None:
            return
        if any(pid not in self.reported for pid in self.children):
            return
        with contextlib.suppress(OSError):  # no spare now: the next spawn forks one itself
            self.fork_spare()

    def fork_spare(self) -> int:
        assert self.sandbox is not None
        confinement = self.sandbox.spare()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            _spare(read_fd, write_fd, confinement)  # never returns
        os.close(write_fd)
        confinement.zygote_fds()
        self.confined[pid] = confinement
        self.spares[pid] = read_fd
        return pid

    def refuse(self, replica_id: str, message: str) -> None:
        """A replica that could not even be forked: it fails its init, and is gone."""
        self.emit(
            {"id": replica_id, "event": "init_error", "errorType": "Runtime.SandboxError", "errorMessage": message}
        )
        self.emit({"id": replica_id, "event": "exit", "pid": 0, "code": 70})

    def out_of_memory(self, fd: int) -> None:
        """A replica hit its memory limit (the kernel holds it there): during init it fails at once; serving,
        it gets a reserve and answers its caller Runtime.OutOfMemory; hitting the reserve too, it is killed."""
        try:
            os.eventfd_read(fd)
        except BlockingIOError:
            return
        pid = self.oom[fd]
        confinement = self.confined[pid]
        if pid not in self.reported:
            self.reported.add(pid)
            replica_id = self.children[pid]
            error = {"errorType": "Runtime.OutOfMemory", "errorMessage": OUT_OF_MEMORY_MESSAGE}
            self.emit({"id": replica_id, "event": "init_error", **error})
        elif not confinement.oom_signalled:
            confinement.signal_out_of_memory(pid)
            self.kill_at[pid] = time.monotonic() + _OOM_GRACE_S
            return
        elif not confinement.cgroup.at_limit():
            return  # the event raising the limit caused itself (cgroups.ReplicaCgroup.at_limit), not the reserve's end
        self.kill_at.pop(pid, None)
        os.kill(pid, signal.SIGKILL)

    def kill_late(self) -> None:
        now = time.monotonic()
        for pid in [pid for pid, at in self.kill_at.items() if at <= now]:
            del self.kill_at[pid]
            os.kill(pid, signal.SIGKILL)

    def read_report(self, fd: int) -> None:
        replica_id, pid, partial = self.reports[fd]
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            self.selector.unregister(fd)
            os.close(fd)
            del self.reports[fd]
            return
        partial += data
        *lines, rest = partial.split(b"\n")
        partial[:] = rest
        for line in lines:
            if pid in self.reported:
                continue  # already failed for want of memory
            self.reported.add(pid)
            event = json.loads(line)
            if event.get("event") == "ready":
                self.endpoints[pid] = str(event.get("endpoint", ""))
            self.emit({"id": replica_id, **event})

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = self.report_fd.pop(pid, None)
            while fd in self.reports:  # a dead child's last report comes before its exit event
                self.read_report(fd)
            if pid in self.spares:
                os.close(self.spares.pop(pid))
            self.reported.discard(pid)
            self.endpoints.pop(pid, None)
            self.kill_at.pop(pid, None)
            confinement = self.confined.pop(pid, None)
            if confinement is not None:
                self.forget_oom(confinement)
                if not confinement.release():
                    self.released.append(confinement)
            replica_id = self.children.pop(pid, None)
            if replica_id is not None:
                self.emit({"id": replica_id, "event": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def forget_oom(self, confinement: sandboxing.Confinement) -> None:
        fd = confinement.cgroup.oom_fd
        if fd is not None and self.oom.pop(fd, None) is not None:
            self.selector.unregister(fd)


def _replica(zygote_pid: int, read_fd: int, write_fd: int, env: dict[str, str], log: str) -> None:
    """In the forked child: become a replica with exactly `env`, logging to `log`. Never returns."""
    started = time.perf_counter()
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        die_with_parent(zygote_pid)
        os.close(read_fd)
    except BaseException:
        os._exit(70)
    _become(started, write_fd, env, log, [write_fd], None)


def _spare(read_fd: int, write_fd: int, confinement: sandboxing.Confinement) -> None:
    """In a forked spare: get confined as far as can be done without a function, wait for one, become its
    replica. Never returns."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # PID 1 of its namespace ignores signals it has no handler for: SIGTERM must still end it.
        signal.signal(signal.SIGTERM, lambda *_: os._exit(128 + signal.SIGTERM))
        null_fd = os.open(os.devnull, os.O_RDWR)
        os.dup2(null_fd, 0)
        os.dup2(null_fd, 1)  # the zygote's event stream is not ours to write
        os.close(read_fd)
        keep = [2, write_fd, *confinement.child_fds()]
        _close_all_but(keep)
        confinement.prepare()
        assignment = confinement.wait()
    except BaseException:
        traceback.print_exc()
        os._exit(70)
    if assignment is None:
        os._exit(0)  # the zygote is stopping, or gone
    started = time.perf_counter()
    keep.remove(confinement.assignment[0])
    _become(started, write_fd, assignment["env"], assignment["log"], keep, confinement)


def _become(
    started: float,
    write_fd: int,
    env: dict[str, str],
    log: str,
    keep: list[int],
    confinement: sandboxing.Confinement | None,
) -> None:
    """Become a replica with exactly `env`, logging to `log`, keeping only the fds in `keep`. Never returns."""
    code = 70
    reported = False

    def report(event: dict) -> None:
        """The one report a replica makes ("ready" or "init_error"); the pipe closes after it."""
        nonlocal reported
        if not reported:
            reported = True
            os.write(write_fd, (json.dumps(event) + "\n").encode())
            os.close(write_fd)

    try:
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if confinement is not None and confinement.spec is not None:  # /dev/stdout reopens it: the function's
            os.fchown(log_fd, confinement.spec.uid, confinement.spec.gid)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        _close_all_but([fd for fd in keep if fd > 2])  # the zygote's selector, wakeup pipe, other replicas' pipes
        os.environ.clear()
        os.environ.update(env)
        code = replica.run(report, started, confinement)
    except BaseException as e:
        traceback.print_exc()
        sys.stderr.flush()
        report({"event": "init_error", "errorType": "Runtime.StartError", "errorMessage": f"{type(e).__name__}: {e}"})
    finally:
        os._exit(code)


def _close_all_but(keep: list[int]) -> None:
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _first_line() -> bytes:
    """One line of stdin, read byte by byte: nothing after it (the commands) is taken."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            raise SystemExit("fx zygote: stdin closed before the sandbox config")
        line += byte
    return bytes(line)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fx_runtime.zygote")
    parser.add_argument("--sandbox", action="store_true", help="the sandbox config is stdin's first line")
    parser.add_argument("--control", help="a Unix socket where the next controller connects, once this one is gone")
    parser.add_argument("--lifeline", type=int, help="an inherited fd that reads EOF once fx up is gone: then stop")
    args = parser.parse_args(argv)
    if (args.control is None) != (args.lifeline is None):
        parser.error("--control and --lifeline go together")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    if args.lifeline is None:
        die_with_parent(os.getppid())
    sandbox, report = None, None
    if args.sandbox:  # the config is stdin's first line: a replica can read this process's argv
        sandbox = sandboxing.Sandbox(sandboxing.Config(**json.loads(_first_line())))
        report = {
            "event": "sandbox",
            "namespaces": sandbox.namespaces,
            "namespaces_error": sandbox.namespaces_error,
            "limits": sandbox.controllers(),
            "oom_answer": bool(sandbox.hierarchies) and sandbox.controllers().get("memory") == 1,
        }
        emit(report)
    gc.freeze()  # keep the imported runtime's pages shared with every replica (no copy-on-write by the GC)
    Zygote(sandbox, report, args.control, args.lifeline).run()
    if sandbox is not None:
        sandbox.close()


if __name__ == "__main__":
    main()
