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

Templates (template.py): `{"op": "template", "key", "env", "log", "sandbox"?, "id_prefix"?}` asks for a process
that imports that function version's handler once and then forks its replicas; it is made while no replica is
starting. A
spawn naming `"template": {"key"}` is served by that template (its spare fork, already listening on a socket of
its own next to the template's: its "ready" names it) once it is ready (same log, same sandbox spec), else started
as any other. At most `--templates` are kept (least recently used retired
first: it forks no more and exits once its last replica has); `{"op": "drop", "key"}` retires one at once (its
version was deleted); each is told as `{"event": "template", "key", "state": "ready" | "failed" | "gone", ...}` and
listed in the hello (with its `"standby"`). Asked with an `id_prefix`, each prepared spare is told as `{"event":
"standby", "key", "endpoint"}`: a caller connecting to it there makes it a replica (`claimed`, an id made of the
prefix), told as `spawned` and `ready` with `"claimed": key`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import encodings.idna  # noqa: F401  (asyncio's create_server encodes the host name with it: 3 ms per replica)
import gc
import json
import os
import secrets
import select
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field

from . import replica  # imports everything a replica needs, once, before any fork
from . import sandbox as sandboxing
from . import template as templating
from .invoker import OUT_OF_MEMORY_MESSAGE

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_STOP_GRACE_S = 10.0
# A replica told it is out of memory has this long to answer and exit (1 s was missed on a loaded 2-core host).
_OOM_GRACE_S = 3.0
# After a replica says ready, no fork nor template import for this long: the request that waited for it is
# still on its way (controller, gateway, the replica's first invocation) and a fork would take a CPU from it.
_SETTLE_S = 0.025
# A replica's report is one short line; one that has written this much without a newline is not the runtime's.
_REPORT_MAX = 1 << 16
_INVALID_REPORT = {
    "event": "init_error",
    "errorType": "Runtime.InvalidReport",
    "errorMessage": "the replica's first report was not the runtime's (did its code write to the runtime's pipe?)",
}


def _message(data: bytes) -> dict:
    """A message from a process that runs a function's code (a replica's report, a template's or a spare's word),
    as a JSON object; anything else is {}: nothing said. Never trusted to be the runtime's: a bad one must not end
    the zygote, and with it every function's replicas."""
    try:
        message = json.loads(data)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _init_ms(value: object) -> float | None:
    """A reported init time, if it is one (a number from 0 up: NaN fails)."""
    return float(value) if isinstance(value, int | float) and 0 <= value < 1e9 else None


def _report(event: dict) -> dict | None:
    """A replica's first report, as the controller is told it (only the fields the runtime writes), or None."""
    kind = event.get("event")
    if kind == "prepared":  # a spare made this replica: it serves already
        return {"event": "ready", "endpoint": str(event.get("endpoint", "")), "init_ms": 0.0}
    if kind == "ready":
        return {"event": "ready", "endpoint": str(event.get("endpoint", "")), "init_ms": _init_ms(event.get("init_ms"))}
    if kind == "init_error":
        fields = ("errorType", "errorMessage", "stackTrace")
        return {"event": "init_error", **{k: event[k] for k in fields if k in event}}
    return None


@dataclass
class Spare:
    """A process forked from a template, confined, listening on a socket of its own: waits to become a replica."""

    pid: int  # in the template's namespace
    host_pid: int  # here
    fd: int  # our end of its report socket
    confinement: sandboxing.Confinement | None
    endpoint: str = ""  # once it said "prepared": where it serves as soon as it is a replica


@dataclass
class Template:
    """A template as the zygote sees it: the channel to it, and the replicas it forked."""

    key: str
    pid: int
    channel: socket.socket
    log: str
    spec: sandboxing.Spec | None
    id_prefix: str = ""  # a claimed spare's replica id starts with it; given, each prepared spare is told (standby)
    ready: bool = False
    failed: dict | None = None  # its init_error, once it said so
    retired: bool = False
    replicas: dict[int, str] = field(default_factory=dict)  # pid in the template's namespace -> replica id
    hosts: dict[int, int] = field(default_factory=dict)  # pid in the template's namespace -> pid here
    spare: Spare | None = None  # forked, confined, ready to become a replica
    forking: bool = False  # a fork asked for, its "forked" not read yet
    waiting: list[str] = field(default_factory=list)  # spawns (replica ids) waiting for a spare

    def serves(self, log: str, spec: sandboxing.Spec | None) -> bool:
        """Whether a spawn may be forked from this template: the very same function, confined the same way (the
        key says so already; the uid and directories are checked again, as nothing of A may ever serve B)."""
        if not self.ready or self.retired or log != self.log or (spec is None) != (self.spec is None):
            return False
        return spec is None or _same_confinement(spec, self.spec)


def _same_confinement(a: sandboxing.Spec, b: sandboxing.Spec | None) -> bool:
    return b is not None and (a.uid, a.gid, a.private_dir, a.memory_mb) == (b.uid, b.gid, b.private_dir, b.memory_mb)


def memory_kb(pid: int) -> int:
    """The process's proportional set size (its shared pages split among their sharers), kB; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
    except (OSError, ValueError):
        return 0


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process when its parent ends (and now, if that already happened)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != expected_parent:
        os._exit(1)


def emit(*events: dict, fd: int = 1) -> None:
    data = memoryview("".join(json.dumps(event) + "\n" for event in events).encode())
    while data:
        data = data[os.write(fd, data) :]


class Zygote:
    def __init__(
        self,
        sandbox: sandboxing.Sandbox | None = None,
        report: dict | None = None,
        control: str | None = None,
        lifeline: int | None = None,
        templates_max: int = templating.DEFAULT_MAX,
    ) -> None:
        self.sandbox = sandbox
        self.templates_max = templates_max
        self.templates: dict[str, Template] = {}  # key -> the one forking for it; least recently used first
        self.template_pids: dict[int, Template] = {}  # every live template, retired ones too
        self.template_fds: dict[int, Template] = {}  # channel fd -> template
        self.wanted: dict[str, dict] = {}  # key -> the template command, until it is made
        self.forking: dict[int, tuple[Template, sandboxing.Confinement | None]] = {}  # a spare's fd, before "forked"
        self.spare_fds: dict[int, Template] = {}  # a spare's fd, from "forked" until it is a replica
        self.spare_channels: dict[int, socket.socket] = {}  # spare pid -> our end of its template channel
        self.cgroups_made = 0
        self.report = report  # the sandbox report, told again to each controller that connects
        self.commands_fd: int | None = 0  # the controller's commands: stdin, or an accepted control connection
        self.events_fd: int | None = 1  # where events go; None while no controller is connected
        self.connection: socket.socket | None = None
        self.endpoints: dict[int, str] = {}  # pid -> endpoint, once ready: what a new controller may adopt
        self.selector = selectors.DefaultSelector()
        self.held: list[dict] | None = None  # events emitted while not None: told together later
        self.children: dict[int, str] = {}  # pid -> replica id
        self.reports: dict[int, tuple[str, int, bytearray]] = {}  # report pipe fd -> (replica id, pid, partial line)
        self.report_fd: dict[int, int] = {}  # pid -> its report pipe fd
        self.unreported: set[int] = set()  # replicas that have not said ready / init_error yet
        self.settled_at = 0.0  # monotonic time from which the last ready replica's first request is let be
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
        """An event for the controller; dropped while none is connected (the next one is told in its hello).
        Held back, while `held` is a list, to go in one write with the others."""
        if self.held is not None:
            self.held.append(event)
        elif self.events_fd is not None:
            self.tell(event)

    def tell(self, *events: dict) -> None:
        if self.events_fd is None or not events:
            return
        try:
            emit(*events, fd=self.events_fd)
        except OSError:  # the controller is gone
            self.disconnect()

    def run(self) -> None:
        while self.stop_by is None or (
            (self.children or self.spares or self.template_pids) and time.monotonic() < self.stop_by
        ):
            now = time.monotonic()
            timeout = min([1.0, *(at - now for at in self.kill_at.values())])
            if self.settled_at > now:  # then refill
                timeout = min(timeout, self.settled_at - now)
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
                elif key.fd in self.template_fds:
                    self.read_template(self.template_fds[key.fd])
                elif key.fd in self.forking:
                    self.read_forked(key.fd)
                elif key.fd in self.spare_fds:
                    self.read_spare(key.fd)
                else:
                    self.read_report(key.fd)
            self.reap()
            self.make_template()
            self.refill()
            self.refill_templates()
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
        for template in list(self.template_pids.values()):
            self.retire(template)

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
        # With each template, its standby (a spare prepared, told before to the controller that is gone): the new
        # one routes cold starts to it at once, not from the next spare on.
        templates = [{**self.describe(t), "standby": self.standby(t)} for t in self.templates.values() if t.ready]
        self.emit(
            {"event": "hello", "pid": os.getpid(), "sandbox": self.report, "replicas": ready, "templates": templates}
        )

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
            if cmd["op"] == "drop":
                return self.drop(str(cmd["key"]))
            if cmd["op"] not in ("spawn", "template"):
                raise ValueError(f"unknown op {cmd['op']!r}")
            spec = sandboxing.Spec(**cmd["sandbox"]) if cmd.get("sandbox") else None
            env = {str(k): str(v) for k, v in cmd["env"].items()}
            if cmd["op"] == "template":
                return self.want_template(str(cmd["key"]), env, str(cmd["log"]), spec, str(cmd.get("id_prefix", "")))
            if spec is not None and self.sandbox is None:
                raise ValueError("a sandboxed spawn, but this zygote was started without --sandbox")
            fork = cmd.get("template")
            template = self.templates.get(str(fork["key"])) if fork else None
            if template is not None and template.serves(str(cmd["log"]), spec):
                return self.fork_from(template, str(cmd["id"]), spec)
            self.spawn(str(cmd["id"]), env, str(cmd["log"]), spec)
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
        self.unreported.add(pid)
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
            self.spare_channels.pop(pid).close()  # a replica: no template channel
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

    def starting(self) -> bool:
        """A replica is starting, or was ready too recently for its first request to be done (_SETTLE_S)."""
        return time.monotonic() < self.settled_at or bool(self.unreported)

    def refill(self) -> None:
        """Fork the next spare when no replica is starting: a fork stalls this loop (and with it the "ready"
        events it relays) for a millisecond or more, and the spare's setup would compete for the CPU."""
        if self.sandbox is None or self.spares or self.stop_by is not None or self.starting():
            return
        with contextlib.suppress(OSError):  # no spare now: the next spawn forks one itself
            self.fork_spare()

    def fork_spare(self) -> int:
        assert self.sandbox is not None
        confinement = self.sandbox.spare()
        read_fd, write_fd = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # if it is to be a template
        pid = os.fork()
        if pid == 0:
            ours.close()
            _spare(read_fd, write_fd, confinement, theirs.fileno())  # never returns
        os.close(write_fd)
        theirs.close()
        confinement.zygote_fds()
        self.confined[pid] = confinement
        self.spares[pid] = read_fd
        self.spare_channels[pid] = ours
        return pid

    # --- templates -------------------------------------------------------------

    def want_template(
        self, key: str, env: dict[str, str], log: str, spec: sandboxing.Spec | None, id_prefix: str = ""
    ) -> None:
        """Make a template for `key` once no replica is starting (its import would compete with theirs)."""
        if self.templates_max <= 0 or key in self.templates or key in self.wanted:
            if spec is not None and spec.env_file:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(spec.env_file)  # not needed: no template comes of it
            return
        self.wanted[key] = {"env": env, "log": log, "spec": spec, "id_prefix": id_prefix}

    def drop(self, key: str) -> None:
        """The template of a deleted version: not made, or retired (its replicas, being stopped, end it)."""
        wanted = self.wanted.pop(key, None)
        if wanted is not None and wanted["spec"] is not None and wanted["spec"].env_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(wanted["spec"].env_file)
        if (t := self.templates.get(key)) is not None:
            self.retire(t)

    def make_template(self) -> None:
        if not self.wanted or self.stop_by is not None:
            return
        if self.starting() or any(not t.ready for t in self.templates.values()):
            return
        key, command = next(iter(self.wanted.items()))
        del self.wanted[key]
        while len(self.templates) >= self.templates_max:
            self.retire(next(iter(self.templates.values())))
        spec = command["spec"]
        try:
            if spec is None:
                pid, channel = self.fork_template(command["env"], command["log"])
            else:
                pid, channel = self.assign_template(command["env"], command["log"], spec)
        except OSError as e:
            self.emit({"event": "template", "key": key, "state": "failed", "errorMessage": str(e)})
            return
        template = Template(key, pid, channel, command["log"], spec, command["id_prefix"])
        self.templates[key] = self.template_pids[pid] = self.template_fds[channel.fileno()] = template
        self.selector.register(channel.fileno(), selectors.EVENT_READ, None)

    def fork_template(self, env: dict[str, str], log: str) -> tuple[int, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            _replica(zygote_pid, -1, theirs.fileno(), env, log, channel=True)  # never returns
        theirs.close()
        return pid, ours

    def assign_template(self, env: dict[str, str], log: str, spec: sandboxing.Spec) -> tuple[int, socket.socket]:
        """A spare becomes the template: told so on its channel before it gets its function."""
        pid = next(iter(self.spares), None) or self.fork_spare()
        confinement = self.confined[pid]
        channel = self.spare_channels.pop(pid)
        try:
            channel.send(b"template")
            confinement.assign(f"template-{pid}", env, log, spec)
        except OSError:
            channel.close()
            os.close(self.spares.pop(pid))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # reaped as any child
            raise
        os.close(self.spares.pop(pid))  # its report pipe: a template reports on its channel
        if confinement.cgroup.oom_fd is not None:
            self.oom[confinement.cgroup.oom_fd] = pid
            self.selector.register(confinement.cgroup.oom_fd, selectors.EVENT_READ, None)
        return pid, channel

    def describe(self, t: Template) -> dict:
        """What a template costs: its memory and its spare's (PSS: pages shared with its replicas split)."""
        pss = memory_kb(t.pid) + (memory_kb(t.spare.host_pid) if t.spare else 0)
        return {"key": t.key, "pid": t.pid, "replicas": len(t.replicas), "pss_kb": pss}

    def standby(self, t: Template) -> str:
        """The endpoint of `t`'s prepared spare if the controller is told of it (asked with an `id_prefix`), else ""."""
        spare = t.spare
        told = t.id_prefix and spare is not None and spare.endpoint and spare.fd in self.spare_fds
        return spare.endpoint if told else ""  # type: ignore[union-attr]

    def retire(self, t: Template) -> None:
        """Fork no more from `t`; it exits once its last replica has (they share its PID namespace)."""
        if t.retired:
            return
        t.retired = True
        if self.templates.get(t.key) is t:
            del self.templates[t.key]
        if t.spare is not None:
            self.drop_spare(t.spare)
            t.spare = None
        self.refuse_waiting(t, "the template was retired")
        with contextlib.suppress(OSError):
            t.channel.send(json.dumps({"op": "retire"}).encode())

    def fork_from(self, t: Template, replica_id: str, spec: sandboxing.Spec | None) -> None:
        """The template's spare becomes this replica: it serves on the socket it made (a spare is forked first if
        there is none). In the sandbox it is in a cgroup of its own (memory and process limits) already."""
        self.templates[t.key] = self.templates.pop(t.key)  # most recently used last
        if spec is not None and spec.env_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spec.env_file)  # the template has this version's environment already
        t.waiting.append(replica_id)
        if t.spare is not None:
            self.assign(t)
        elif not t.forking:
            self.fork_spare_of(t)

    def fork_spare_of(self, t: Template) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # its first message says its pid here
        confinement = None
        fds = [theirs.fileno()]
        try:
            if t.spec is not None:
                confinement = self.forked_confinement(t.spec)
                fds.append(confinement.control[0])
            socket.send_fds(t.channel, [b'{"op": "fork"}'], fds)
        except OSError as e:
            ours.close()
            if confinement is not None:
                os.close(confinement.control[0])
                self.release_later(confinement)
            return self.refuse_waiting(t, f"cannot fork the template: {e}")
        finally:
            theirs.close()
        if confinement is not None:
            os.close(confinement.control[0])
        t.forking = True
        fd = ours.detach()
        self.forking[fd] = (t, confinement)
        self.selector.register(fd, selectors.EVENT_READ, None)

    def forked_confinement(self, spec: sandboxing.Spec) -> sandboxing.Confinement:
        """A cgroup of its own for a spare forked from a template (the template's namespaces are its)."""
        assert self.sandbox is not None
        self.cgroups_made += 1
        config = self.sandbox.config
        cgroup = sandboxing.cgroups.create(self.sandbox.hierarchies, f"forked-{self.cgroups_made}", config.pids_max)
        confinement = sandboxing.Confinement(self.sandbox, cgroup)
        for end in confinement.assignment:  # nothing to assign: the template knows its function
            os.close(end)
        confinement.assignment = (-1, -1)
        confinement.spec = spec
        try:
            cgroup.set_memory(spec.memory_mb)
        except OSError:
            os.close(confinement.control[0])
            self.release_later(confinement)
            raise
        return confinement

    def read_forked(self, fd: int) -> None:
        """A spare's first word: "forked", with its pid (the socket's credentials). In the sandbox it now moves
        into its cgroup and is let go."""
        t, confinement = self.forking.pop(fd)
        t.forking = False
        self.selector.unregister(fd)
        sock = socket.socket(fileno=fd)
        try:
            data, ancillary, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(12))
        except OSError:
            data, ancillary = b"", []
        finally:
            sock.detach()
        host_pid = next(
            (struct.unpack("3i", d[:12])[0] for level, kind, d in ancillary if kind == socket.SCM_CREDENTIALS), 0
        )
        if not data or not host_pid:  # died before it could say who it is
            os.close(fd)
            if confinement is not None:
                self.release_later(confinement)
            return self.refuse_waiting(t, "the process forked from the template died at once")
        if confinement is not None:
            try:
                for d in confinement.cgroup.dirs:
                    with open(os.path.join(d, "cgroup.procs"), "w") as f:
                        f.write(str(host_pid))
                os.write(confinement.control[1], b"g")
            except OSError as e:
                os.kill(host_pid, signal.SIGKILL)  # never unconfined; the template reaps it
                os.close(fd)
                self.release_later(confinement)
                return self.refuse_waiting(t, f"cannot confine the process forked from the template: {e}")
        pid = _message(data).get("pid")
        if not isinstance(pid, int):  # its template's code wrote something else: a spare of no use
            os.kill(host_pid, signal.SIGKILL)  # the template reaps it
            os.close(fd)
            if confinement is not None:
                self.release_later(confinement)
            return self.refuse_waiting(t, "the process forked from the template did not say its pid")
        t.spare = Spare(pid, host_pid, fd, confinement)
        self.spare_fds[fd] = t  # its "prepared", or "claimed", come next
        self.selector.register(fd, selectors.EVENT_READ, None)
        if t.retired:  # while it was forked: the template goes once its replicas have, this spare first
            self.drop_spare(t.spare)
            t.spare = None
        elif t.waiting:
            self.assign(t)

    def assign(self, t: Template, claimed: bool = False) -> None:
        """The template's spare becomes the first waiting replica (the next spare is forked once nothing starts).
        A prepared spare is ready at once: the controller is told so (with "spawned", in one write) before the
        spare is woken with its assignment, so that the endpoint is passed on while it wakes (the gateway's
        connection waits in its backlog). A `claimed` one serves already (a caller connected to it): nothing to wake.
        """
        spare, replica_id = t.spare, t.waiting.pop(0)
        assert spare is not None
        t.spare = None
        self.unwatch(spare)
        t.replicas[spare.pid], t.hosts[spare.pid] = replica_id, spare.host_pid
        if spare.confinement is not None:
            self.confined[spare.host_pid] = spare.confinement
            if spare.confinement.cgroup.oom_fd is not None:
                self.oom[spare.confinement.cgroup.oom_fd] = spare.host_pid
                self.selector.register(spare.confinement.cgroup.oom_fd, selectors.EVENT_READ, None)
        self.held = []
        try:
            self.started(replica_id, spare.host_pid, spare.fd)
            if spare.endpoint:  # else its "prepared", still to come, says it ready (read_report)
                ready = {"event": "ready", "endpoint": spare.endpoint, "init_ms": 0.0}
                self.reported(replica_id, spare.host_pid, {**ready, "claimed": t.key} if claimed else ready)
        finally:
            held, self.held = self.held, None
            self.tell(*held)
        if not claimed:  # one gone meanwhile fails this write; the template reaps it, its exit reported as a replica's
            with contextlib.suppress(OSError):
                os.write(spare.fd, json.dumps({"id": replica_id}).encode())
        if t.waiting:
            self.fork_spare_of(t)

    def read_spare(self, fd: int) -> None:
        """A spare's word before it is a replica. "prepared": it serves at its endpoint as soon as it is one, which
        the controller is told, as its version's standby, if it asked (`id_prefix`). "claimed": a caller connected
        to that endpoint first (the gateway, sent there by the route table); it serves already, as a replica whose
        id is made here. Nothing: it died unused (its template says so)."""
        t = self.spare_fds[fd]
        spare = t.spare
        assert spare is not None and spare.fd == fd
        try:
            data = os.read(fd, 1 << 16)
        except OSError:
            data = b""
        if not data:
            return self.unwatch(spare)
        event = _message(data)
        if event.get("event") == "prepared":
            spare.endpoint = str(event.get("endpoint", ""))
            if t.id_prefix:
                self.emit({"event": "standby", "key": t.key, "endpoint": spare.endpoint})
        elif event.get("event") == "claimed" and spare.endpoint:
            t.waiting.insert(0, f"{t.id_prefix or t.key}-{secrets.token_hex(4)}")
            self.assign(t, claimed=True)

    def refill_templates(self) -> None:
        """Fork a template's next spare once no replica is starting (the fork would slow theirs), one a turn."""
        if self.stop_by is not None or self.starting():
            return
        for t in self.templates.values():
            if t.ready and t.spare is None and not t.forking:
                return self.fork_spare_of(t)

    def unwatch(self, spare: Spare) -> None:
        """Read the spare's socket no more as a spare's (read_spare)."""
        if self.spare_fds.pop(spare.fd, None) is not None:
            self.selector.unregister(spare.fd)

    def drop_spare(self, spare: Spare) -> None:
        """Closing its socket ends it (and the template reaps it); its cgroup goes once it is empty."""
        self.unwatch(spare)
        os.close(spare.fd)
        if spare.confinement is not None:
            self.release_later(spare.confinement)

    def release_later(self, confinement: sandboxing.Confinement) -> None:
        if not confinement.release():
            self.released.append(confinement)

    def refuse_waiting(self, t: Template, message: str) -> None:
        waiting, t.waiting = t.waiting, []
        for replica_id in waiting:
            self.refuse(replica_id, message)

    def read_template(self, t: Template) -> None:
        try:
            data = t.channel.recv(1 << 16)
        except OSError:
            data = b""
        if not data:  # it exited: reaped below
            self.selector.unregister(t.channel.fileno())
            del self.template_fds[t.channel.fileno()]
            return
        event = _message(data)
        kind, pid, code = event.get("event"), event.get("pid"), event.get("code")
        if kind == "exit" and isinstance(pid, int) and isinstance(code, int):
            if t.spare is not None and t.spare.pid == pid:  # a spare that died unused
                self.drop_spare(t.spare)
                t.spare = None
            elif pid in t.replicas:
                del t.replicas[pid]
                self.ended(t.hosts.pop(pid), code)
        elif kind == "ready":
            t.ready = True
            init_ms = _init_ms(event.get("init_ms"))
            self.emit({"event": "template", "state": "ready", "init_ms": init_ms, **self.describe(t)})
        elif kind == "init_error":  # it exits
            t.failed = {k: v for k, v in (_report(event) or {}).items() if k != "event"}

    def template_exited(self, t: Template, code: int) -> None:
        """Its replicas are gone with it (its PID namespace, or their PDEATHSIG)."""
        if t.channel.fileno() in self.template_fds:
            self.read_template(t)  # what it said last
            if t.channel.fileno() in self.template_fds:
                self.selector.unregister(t.channel.fileno())
                del self.template_fds[t.channel.fileno()]
        t.channel.close()
        del self.template_pids[t.pid]
        if self.templates.get(t.key) is t:
            del self.templates[t.key]
        for pid in list(t.replicas):
            self.ended(t.hosts.pop(pid), -signal.SIGKILL)
        if t.spare is not None:
            self.drop_spare(t.spare)
            t.spare = None
        self.refuse_waiting(t, "the template is gone")
        state = {"state": "failed", **t.failed} if t.failed else {"state": "gone", "code": code}
        self.emit({"event": "template", "key": t.key, "pid": t.pid, **state})

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
        template = self.template_pids.get(pid)
        if template is not None:  # its init needs more than the function's memory: no template of it
            if not template.ready:
                template.failed = {"errorType": "Runtime.OutOfMemory", "errorMessage": OUT_OF_MEMORY_MESSAGE}
            os.kill(pid, signal.SIGKILL)
            return
        if pid in self.unreported:
            self.unreported.discard(pid)
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

    def read_report(self, fd: int) -> bool:
        """Read what a replica wrote on its report pipe; False if there was nothing to read."""
        replica_id, pid, partial = self.reports[fd]
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return False
        except ConnectionResetError:  # it ended with our message unread: a spare a caller reached first (claimed)
            data = b""
        if not data:
            self.close_report(fd)
            return True
        partial += data
        *lines, rest = partial.split(b"\n")
        if len(rest) > _REPORT_MAX:  # no line of the runtime's is this long: refused below as not a report
            lines.append(b"")
            rest = b""
        partial[:] = rest
        for line in lines:
            if pid not in self.unreported:
                continue  # already failed for want of memory, or ready as a prepared spare
            event = _report(_message(line))
            if event is None:  # its code wrote there: it fails its init, and does not run on
                event = _INVALID_REPORT
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.reported(replica_id, pid, event)
        return True

    def close_report(self, fd: int) -> None:
        """Done with a report pipe. Its pid forgets it too: the fd number goes to the next pipe opened."""
        _, pid, _ = self.reports.pop(fd)
        if self.report_fd.get(pid) == fd:
            del self.report_fd[pid]
        self.selector.unregister(fd)
        os.close(fd)

    def reported(self, replica_id: str, pid: int, event: dict) -> None:
        """A replica's first report: "ready" or "init_error"."""
        self.unreported.discard(pid)
        if event.get("event") == "ready":
            self.endpoints[pid] = str(event.get("endpoint", ""))
            self.settled_at = time.monotonic() + _SETTLE_S
        self.emit({"id": replica_id, **event})

    def reap(self) -> None:
        for pid, code in templating.exited_children():
            template = self.template_pids.get(pid)
            if template is not None:
                self.release(pid)
                self.template_exited(template, code)
                continue
            if pid in self.spare_channels:
                self.spare_channels.pop(pid).close()
            self.ended(pid, code)

    def release(self, pid: int) -> None:
        confinement = self.confined.pop(pid, None)
        if confinement is not None:
            self.forget_oom(confinement)
            if not confinement.release():
                self.released.append(confinement)

    def ended(self, pid: int, code: int) -> None:
        """A replica (or spare) exited, reaped here or by its template: its last report, then its exit event."""
        fd = self.report_fd.pop(pid, None)
        while fd in self.reports:  # a dead child's last report comes before its exit event
            if not self.read_report(fd):  # no end of file: a process it started holds the pipe; it says no more
                self.close_report(fd)
        if pid in self.spares:
            os.close(self.spares.pop(pid))
        self.unreported.discard(pid)
        self.endpoints.pop(pid, None)
        self.kill_at.pop(pid, None)
        self.release(pid)
        replica_id = self.children.pop(pid, None)
        if replica_id is not None:
            self.emit({"id": replica_id, "event": "exit", "pid": pid, "code": code})

    def forget_oom(self, confinement: sandboxing.Confinement) -> None:
        fd = confinement.cgroup.oom_fd
        if fd is not None and self.oom.pop(fd, None) is not None:
            self.selector.unregister(fd)


def _replica(
    zygote_pid: int, read_fd: int, write_fd: int, env: dict[str, str], log: str, channel: bool = False
) -> None:
    """In the forked child: become a replica (or with `channel`, write_fd being its socket: a template) with
    exactly `env`, logging to `log`. Never returns."""
    started = time.perf_counter()
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        die_with_parent(zygote_pid)
        if read_fd >= 0:
            os.close(read_fd)
    except BaseException:
        os._exit(70)
    _become(started, write_fd, env, log, [write_fd], None, channel)


def _spare(read_fd: int, write_fd: int, confinement: sandboxing.Confinement, channel: int) -> None:
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
        keep = [2, write_fd, channel, *confinement.child_fds()]
        _close_all_but(keep)
        confinement.prepare()
        assignment = confinement.wait()
        # The zygote says "template" on the channel before it hands a spare the function it is to be a template of.
        said = select.poll()  # not select(): a zygote running ~1,000 replicas holds fds past FD_SETSIZE
        said.register(channel, select.POLLIN)
        is_template = bool(said.poll(0)) and os.read(channel, 64) == b"template"
    except BaseException:
        traceback.print_exc()
        os._exit(70)
    if assignment is None:
        os._exit(0)  # the zygote is stopping, or gone
    started = time.perf_counter()
    keep.remove(confinement.assignment[0])
    if is_template:
        os.close(write_fd)  # a template reports on its channel
        keep.remove(write_fd)
        write_fd = channel
    else:
        keep.remove(channel)
    _become(started, write_fd, assignment["env"], assignment["log"], keep, confinement, is_template)


def _become(
    started: float,
    write_fd: int,
    env: dict[str, str],
    log: str,
    keep: list[int],
    confinement: sandboxing.Confinement | None,
    template: bool = False,
) -> None:
    """Become a replica (a template, on the channel `write_fd`) with exactly `env`, logging to `log`, keeping only
    the fds in `keep`. Never returns."""
    code = 70
    report = templating.reporter(write_fd, close=not template)
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
        code = replica.run(report, started, confinement, write_fd if template else None)
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
    parser.add_argument(
        "--templates",
        type=int,
        default=templating.DEFAULT_MAX,
        help="how many function templates to keep (least recently used retired first); 0: none",
    )
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
    Zygote(sandbox, report, args.control, args.lifeline, args.templates).run()
    if sandbox is not None:
        sandbox.close()


if __name__ == "__main__":
    main()
