"""A function's template: a process that has imported the handler (run its init) and forks a replica per request
(ARCHITECTURE.md, "the zygote protocol"). It never serves.

The zygote talks to it over a SOCK_SEQPACKET socket, one JSON message each way:

- zygote -> template: `{"op": "fork"}` with the fds of a spare replica (SCM_RIGHTS): its end of its report
  socket, and in the sandbox its control pipe (a "g" byte lets it go on once the zygote has moved it into its
  own cgroup; later bytes mean "out of memory", as for any replica). `{"op": "retire"}`: fork no more, exit
  once the last replica has.
- template -> zygote: `{"event": "ready" | "init_error", ...}` once, then `{"event": "exit", "pid", "code"}` per
  replica, `pid` as this template sees it (in the sandbox it is PID 1 of its PID namespace, its replicas' reaper).

A spare's first message on its report socket is `{"event": "forked", "pid"}`: the zygote reads its pid in the
zygote's own namespace from the socket's credentials (SO_PASSCRED). The spare then does all a replica does before
it serves (its event loop, invoker and server, listening on a socket of its own, the after-restore hooks, one
request to itself that runs no handler: `warm`) and says `{"event": "prepared", "endpoint"}`, or, if any of it
failed, nothing. It waits on that socket for `{"id"}`: a replica to become (EOF: none will come, it exits); a
prepared one also waits for a caller on its own socket, and says `{"event": "claimed"}` when one connects first. A
prepared spare's replica is ready when the zygote hands it over or it is claimed (the zygote says so itself); its
own "ready" follows, unread, and an unprepared one says "init_error" instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import io
import json
import os
import secrets
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from . import logs
from .sandbox import linux
from .server import TOKEN_HEADER, Server
from .settings import Settings, parse_listen

MAX_MESSAGE = 1 << 16
# FX_TEMPLATES_MAX's default: how many templates a zygote keeps (each holds a function's imported code; its
# PSS is reported). The least recently used is retired when another is needed.
DEFAULT_MAX = 32
WARM_TIMEOUT_S = 1.0  # a spare's request to itself (warm): never stuck on it


def exited_children() -> Iterator[tuple[int, int]]:
    """(pid, exit code) of each child that has ended, reaped without waiting (a SIGCHLD handler's loop)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, os.waitstatus_to_exitcode(status)


@dataclass
class Fork:
    """A spare forked from the template, back in replica.run. It writes the function's log from here on: its
    after-restore hooks, run before it is needed, may print."""

    socket_fd: int  # to the zygote: "prepared" goes out, the assignment comes in, then "ready" or "init_error"
    control_fd: int | None  # the sandbox's control pipe (out of memory)
    log_fd: int  # the function's log: stdout and stderr
    started: float = 0.0  # perf_counter() when the assignment came
    report: Callable[[dict], None] = field(init=False)

    def __post_init__(self) -> None:
        self.report = reporter(self.socket_fd)
        os.dup2(self.log_fd, 1)
        os.dup2(self.log_fd, 2)
        os.close(self.log_fd)

    def prepared(self, endpoint: str) -> None:
        """Tell the zygote this spare serves at `endpoint` as soon as it is made a replica: the zygote answers
        "ready" for it then, without waiting for it."""
        with contextlib.suppress(OSError):  # dropped while it prepared: `wait` finds no assignment will come
            os.write(self.socket_fd, (json.dumps({"event": "prepared", "endpoint": endpoint}) + "\n").encode())

    def wait(self, socket_path: str | None, listening: Sequence[int] = ()) -> None:
        """Block until the zygote makes this spare a replica, or until a caller connects to `listening` (a prepared
        spare's server sockets): the gateway sent a cold start straight here, this spare's socket being its
        version's standby (ARCHITECTURE.md, "Activation"); it tells the zygote "claimed" and serves. Exits if
        neither will come, its socket removed."""
        ready, _, _ = select.select([self.socket_fd, *listening], [], [])
        self.started = time.perf_counter()
        try:
            if self.socket_fd not in ready:
                os.write(self.socket_fd, b'{"event": "claimed"}\n')
                return
            data = os.read(self.socket_fd, MAX_MESSAGE)
        except OSError:  # dropped (our "prepared" unread, or as a caller came): none will come either
            data = b""
        if not data:
            if socket_path:
                with contextlib.suppress(OSError):
                    os.unlink(socket_path)
            os._exit(0)


def own_socket(config: Settings) -> Settings:
    """Where a spare listens: a socket of its own (a random name) next to its template's, which is the template's
    first replica's, in the function's private directory; or any free port of the template's host. The spare
    listens before it is needed, so a cold start does not wait for it; its "prepared" names the socket."""
    if config.listen_path:
        path = os.path.join(os.path.dirname(config.listen_path), f"s-{secrets.token_hex(6)}.sock")
        return dataclasses.replace(config, listen_path=path)
    return dataclasses.replace(config, listen_port=0)


def warm(loop: asyncio.AbstractEventLoop, server: Server, endpoint: str) -> None:
    """Send the spare's own server one HTTP request the gateway's way (a connection of its own, the replica token),
    answered by a handler that does nothing, what it logs dropped: a fresh fork's first request through the server
    and the invoker costs more than its second (first-touch page copies), which a cold start waited for. The
    function's handler never runs here. Best effort: a failure only leaves that cost where it was."""
    token = server.settings.replica_token
    auth = b"%s: %s\r\n" % (TOKEN_HEADER, token.encode("latin-1")) if token else b""

    async def ask() -> None:
        host, port, path = parse_listen(endpoint)
        if path:
            reader, writer = await asyncio.open_unix_connection(path)
        else:
            reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /_fx/http/ HTTP/1.1\r\nHost: replica\r\n%sConnection: close\r\n\r\n" % auth)
        await reader.read()
        writer.close()

    invoker = server.invoker
    assert invoker is not None  # a template's server invokes (a relay has no template)
    handler, out, err = invoker.handler, sys.stdout, sys.stderr
    invoker.handler, sys.stdout, sys.stderr = _nothing, io.StringIO(), io.StringIO()
    try:
        with contextlib.suppress(OSError):
            loop.run_until_complete(asyncio.wait_for(ask(), WARM_TIMEOUT_S))
    finally:
        invoker.handler, sys.stdout, sys.stderr = handler, out, err


def _nothing(event: object, context: object) -> None:
    return None


def reporter(fd: int, close: bool = True) -> Callable[[dict], None]:
    """The one report a replica makes ("ready" or "init_error") on `fd`, which then closes (a template's channel
    stays open: its replicas' exits follow)."""
    reported = False

    def report(event: dict) -> None:
        nonlocal reported
        if not reported:
            reported = True
            os.write(fd, (json.dumps(event) + "\n").encode())
            if close:
                os.close(fd)

    return report


class _Template:
    def __init__(self, channel: socket.socket, log_fd: int) -> None:
        self.channel = channel
        self.log_fd = log_fd
        self.replicas: set[int] = set()
        self.retiring = False

    def send(self, event: dict) -> None:
        try:
            self.channel.send(json.dumps(event).encode())
        except OSError:  # the zygote is gone, and we with it (PDEATHSIG)
            os._exit(0)

    def reap(self, *_: object) -> None:
        """SIGCHLD: tell the zygote each replica's end. As a PID namespace's init it reaps orphans too."""
        for pid, code in exited_children():
            if pid in self.replicas:
                self.replicas.discard(pid)
                self.send({"event": "exit", "pid": pid, "code": code})
        if self.retiring and not self.replicas:
            os._exit(0)

    def wait_for_fork(self) -> Fork:
        """Take requests until one forks; returns in that child."""
        while True:
            data, fds, _, _ = socket.recv_fds(self.channel, MAX_MESSAGE, 2)
            if not data:
                os._exit(0)  # the zygote is gone
            request = json.loads(data)
            if request["op"] == "retire":
                self.retiring = True
                self.reap()
                continue
            logs.flush()  # nothing buffered here may be written twice
            sys.stdout.flush()
            sys.stderr.flush()
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:
                control_fd = fds[1] if len(fds) > 1 else None
                _forked(parent, self.channel, fds[0], control_fd)
                return Fork(fds[0], control_fd, self.log_fd)
            self.replicas.add(pid)
            for fd in fds:
                os.close(fd)


def _forked(template_pid: int, channel: socket.socket, report_fd: int, control_fd: int | None) -> None:
    """In a new replica: die with the template, tell the zygote who we are, wait until it confined us."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the template's handler is its own (PID 1 ignores SIGTERM)
    channel.close()
    linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != template_pid:
        os._exit(1)
    os.write(report_fd, (json.dumps({"event": "forked", "pid": os.getpid()}) + "\n").encode())
    if control_fd is not None and os.read(control_fd, 1) != b"g":
        os._exit(1)  # the zygote is gone, or could not give us our cgroup: never run the function's code so


def serve(channel_fd: int) -> Fork:
    """In the template, once init is done and reported: fork spares on request. Returns only in a spare, once
    the zygote has confined it."""
    channel = socket.socket(fileno=channel_fd)
    logs.flush()
    # The log is a replica's stdout: only replicas hold it there (that is how one finds them: the processes
    # writing a function's log). The template and its spares keep it aside.
    template = _Template(channel, os.dup(1))
    null_fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null_fd, 1)
    os.dup2(null_fd, 2)
    os.close(null_fd)
    signal.signal(signal.SIGCHLD, template.reap)
    # PID 1 of its namespace ignores signals it has no handler for: SIGTERM must still end it.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(128 + signal.SIGTERM))
    gc.freeze()  # what init made stays shared with every replica: their collections never touch (copy) it
    return template.wait_for_fork()
