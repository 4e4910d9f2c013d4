"""`python -m fx_runtime.zygote`: the local backend's fork server (ARCHITECTURE.md, "the zygote protocol").

Reads `{"op": "spawn", "id", "env", "log"}` lines on stdin and forks a replica per line from this
already-imported interpreter; writes `spawned` / `ready` / `init_error` / `exit` events as JSON lines on
stdout. Single-threaded on purpose: forking a process that has threads is unsafe.
"""

from __future__ import annotations

import ctypes
import encodings.idna  # noqa: F401  (asyncio's create_server encodes the host name with it: 3 ms per replica)
import gc
import json
import os
import selectors
import signal
import sys
import time
import traceback

from . import replica  # imports everything a replica needs, once, before any fork

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_STOP_GRACE_S = 10.0


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent ends (and now, if that already happened)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != expected_parent:
        os._exit(1)


def emit(event: dict) -> None:
    data = memoryview((json.dumps(event) + "\n").encode())
    while data:
        data = data[os.write(1, data) :]


class Zygote:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, str] = {}  # pid -> replica id
        self.reports: dict[int, tuple[str, bytearray]] = {}  # report pipe fd -> (replica id, partial line)
        self.report_fd: dict[int, int] = {}  # pid -> its report pipe fd
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

    def run(self) -> None:
        while self.stop_by is None or (self.children and time.monotonic() < self.stop_by):
            for key, _ in self.selector.select(timeout=1.0):
                if key.fd == 0:
                    self.read_commands()
                elif key.fd == self.wake_r:
                    while os.read(self.wake_r, 512) == 512:
                        pass
                else:
                    self.read_report(key.fd)
            self.reap()

    def read_commands(self) -> None:
        data = os.read(0, 1 << 16)
        if not data:
            self.selector.unregister(0)
            self.stop_by = time.monotonic() + _STOP_GRACE_S
            for pid in self.children:
                os.kill(pid, signal.SIGTERM)
            return
        self.commands += data
        *lines, rest = self.commands.split(b"\n")
        self.commands = bytearray(rest)
        for line in lines:
            if line.strip():
                self.command(line)

    def command(self, line: bytes) -> None:
        try:
            cmd = json.loads(line)
            if cmd["op"] != "spawn":
                raise ValueError(f"unknown op {cmd['op']!r}")
            self.spawn(str(cmd["id"]), {str(k): str(v) for k, v in cmd["env"].items()}, str(cmd["log"]))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            print(f"fx zygote: bad command {line[:200]!r}: {e}", file=sys.stderr, flush=True)

    def spawn(self, replica_id: str, env: dict[str, str], log: str) -> None:
        read_fd, write_fd = os.pipe()
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            _replica(zygote_pid, read_fd, write_fd, env, log)  # never returns
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.children[pid] = replica_id
        self.reports[read_fd] = (replica_id, bytearray())
        self.report_fd[pid] = read_fd
        self.selector.register(read_fd, selectors.EVENT_READ, None)
        emit({"id": replica_id, "event": "spawned", "pid": pid})

    def read_report(self, fd: int) -> None:
        replica_id, partial = self.reports[fd]
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
            emit({"id": replica_id, **json.loads(line)})

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
            replica_id = self.children.pop(pid, None)
            if replica_id is not None:
                emit({"id": replica_id, "event": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _replica(zygote_pid: int, read_fd: int, write_fd: int, env: dict[str, str], log: str) -> None:
    """In the forked child: become a replica with exactly `env`, logging to `log`. Never returns."""
    started = time.perf_counter()
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
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        die_with_parent(zygote_pid)
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(read_fd)
        os.closerange(3, write_fd)  # the zygote's selector, wakeup pipe, and other replicas' pipes
        os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
        os.environ.clear()
        os.environ.update(env)
        code = replica.run(report, started)
    except BaseException as e:
        traceback.print_exc()
        sys.stderr.flush()
        report({"event": "init_error", "errorType": "Runtime.StartError", "errorMessage": f"{type(e).__name__}: {e}"})
    finally:
        os._exit(code)


def main() -> None:
    die_with_parent(os.getppid())
    gc.freeze()  # keep the imported runtime's pages shared with every replica (no copy-on-write by the GC)
    Zygote().run()


if __name__ == "__main__":
    main()
