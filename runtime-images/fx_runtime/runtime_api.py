"""The Lambda Runtime API (2018-06-01), so an unmodified runtime client runs under fx: awslambdaric, a custom
runtime's `bootstrap`, an image built on an AWS Lambda base image.

With FX_BOOTSTRAP set, the replica does not import a handler: it serves the Runtime API on 127.0.0.1:<port>,
starts the bootstrap with AWS_LAMBDA_RUNTIME_API pointing there, and relays each invocation that reaches its
/_fx/* side through it, one at a time, as Lambda does. Init is done when the bootstrap first asks for
`/invocation/next`; `/init/error` or an exit before that is the replica's init_error. The platform still keeps
the deadline, writes START / END / REPORT, and answers callers by the usual rules.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import uvloop

from . import faults, http11, logs, tracing
from .context import LATEST
from .invoker import TIMEOUT_EXIT_CODE, RequestIds, timeout_answer
from .server import Connection, Server, unparsable
from .settings import Settings

PREFIX = b"/2018-06-01/runtime/"
_ACCEPTED = b'{"status":"OK"}'
_KILL_GRACE_S = 2.0
_PR_SET_PDEATHSIG = 1


@dataclass(slots=True)
class Invocation:
    request_id: str
    event: bytes
    client_context: dict | None
    http: bool  # an HTTP trigger (timeouts are 504s), else a raw invoke
    conn: Connection  # the caller's, paused until answered
    finish: Callable[[bytes, dict | None], None]  # (result payload, error shape or None) -> answers the caller
    tail: bool = False  # the caller asked for the log's tail (X-Amz-Log-Type: Tail)
    started: float = field(default=0.0)
    log: logs.Tee | None = None  # the invocation's log lines, while `tail` is asked for


def _api_error(status: int, error_type: str, message: str, keep: bool) -> bytes:
    body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
    return http11.response(status, http11.JSON, body, keep)


class RuntimeApi:
    """The bootstrap's side: long-polled /next, then /response or /error for the invocation it was given."""

    def __init__(
        self, settings: Settings, loop: asyncio.AbstractEventLoop, on_init: Callable[[dict | None], None]
    ) -> None:
        self.settings = settings
        self.on_init = on_init  # called once: None when the bootstrap is ready, else its init error
        self.initialised = False
        self.connections: set[Connection] = set()
        self.draining = False  # Connection.answer reads it; the bootstrap's connections are never drained
        self.pending: deque[Invocation] = deque()
        self.current: Invocation | None = None
        self.poller: tuple[Connection, bool] | None = None  # the bootstrap's /next, waiting for an invocation
        self.loop = loop
        self.timer: asyncio.TimerHandle | None = None
        self.process: subprocess.Popen | None = None
        self.output = -1  # the read end of the bootstrap's stdout and stderr
        self._decode = codecs.getincrementaldecoder("utf-8")("backslashreplace")
        self.on_stop: Callable[[int], None] = lambda exit_code: None  # the /_fx/* side stops accepting at once
        self.exit_code = 0
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.init_ms: float | None = None
        self.report = b""  # the last completed invocation's X-Fx-Report line (Invoker.report)
        self.new_trace_id = tracing.TraceIds()

    # --- the platform's side ------------------------------------------------------------------------------

    def submit(self, invocation: Invocation) -> None:
        self.pending.append(invocation)
        self.feed()

    def feed(self) -> None:
        """Hand the next waiting invocation to the bootstrap, if it is asking for one."""
        if self.current is not None or self.poller is None or not self.pending or self.closed.done():
            return
        inv = self.current = self.pending.popleft()
        poller, keep = self.poller
        self.poller = None
        inv.started = time.perf_counter()
        deadline_ms = int((time.time() + self.settings.timeout_ms / 1000) * 1000)
        self.timer = self.loop.call_later(self.settings.timeout_ms / 1000, self.expire)
        logs.current_request_id = inv.request_id
        if inv.tail:
            inv.log = logs.begin_capture()
        conn = inv.conn
        logs.start(inv.request_id, LATEST if conn.latest else self.settings.function_version)
        logs.flush()  # before the bootstrap writes its own lines to the same log
        arn = self.settings.function_arn + (":" + conn.qualifier if conn.qualifier else "")
        headers = [
            ("Content-Type", "application/json"),
            ("Lambda-Runtime-Aws-Request-Id", inv.request_id),
            ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", arn),
            ("Lambda-Runtime-Trace-Id", conn.trace_id or self.new_trace_id()),
        ]
        if inv.client_context is not None:
            headers.append(("Lambda-Runtime-Client-Context", json.dumps(inv.client_context)))
        poller.answer(http11.response(200, headers, inv.event, keep), keep)

    def complete(self, payload: bytes, err: dict | None) -> None:
        inv = self.current
        assert inv is not None
        self.current = None
        if self.timer is not None:
            self.timer.cancel()
        self.read_output()  # what the bootstrap printed before it answered comes before END
        if err is not None:
            logs.write(faults.log_text(err))
        duration_ms = (time.perf_counter() - inv.started) * 1000
        logs.write(logs.end_lines(inv.request_id, duration_ms, self.settings.memory_mb, self.init_ms))
        self._end_log(inv)
        self.init_ms = None
        self.report = b"X-Fx-Report: %.3f %s\r\n" % (duration_ms, self.settings.memory_mb.encode())
        inv.finish(payload, err)

    def _end_log(self, inv: Invocation) -> None:
        if inv.log is not None:
            logs.end_capture(inv.log)
        logs.flush()

    def expire(self) -> None:
        """The deadline passed: the caller gets Lambda's timeout error, and the sandbox is reset."""
        inv = self.current
        if inv is None:
            return
        self.current = None
        timeout_s = self.settings.timeout_ms / 1000
        self.read_output()
        logs.write(logs.timestamped(inv.request_id, f"Task timed out after {timeout_s:.2f} seconds"))
        duration_ms = (time.perf_counter() - inv.started) * 1000
        logs.write(logs.end_lines(inv.request_id, duration_ms, self.settings.memory_mb, self.init_ms, "timeout"))
        self._end_log(inv)
        # Stop first, as the Python replica closes its listener before it answers: the gateway, told of the
        # timeout, must find this replica refusing connections, not a pooled one it would send the next call on.
        self.stop(TIMEOUT_EXIT_CODE)
        inv.conn.answer(timeout_answer(inv.request_id, timeout_s, inv.http), keep=False)

    # --- the bootstrap process ----------------------------------------------------------------------------

    async def listen(self) -> str:
        host, _, port = (self.settings.runtime_api or "127.0.0.1:0").rpartition(":")
        server = await self.loop.create_server(self.protocol, host or "127.0.0.1", int(port))
        host, port = server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    def protocol(self) -> Connection:
        return Connection(self, self.settings.max_response_bytes + (1 << 16))  # room for an error shape

    def start(self, command: str, api_endpoint: str) -> None:
        env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=api_endpoint)
        # `python3` on the bootstrap's PATH is the runtime's own interpreter, the one the deps were built for.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        if self.settings.layer:  # its Python finds the dependency layer as a handler does: after the code
            paths = [self.settings.code_dir, self.settings.layer_dir, env.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        argv = shlex.split(command)
        try:
            self.process = subprocess.Popen(
                argv,
                env=env,
                cwd=self.settings.code_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,  # read into the replica's log, so an invocation's tail can be kept
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a reset kills whatever it started too
                preexec_fn=_die_with_replica,  # safe here: a bootstrap replica runs no other thread
            )
        except (OSError, ValueError) as e:
            message = f"Couldn't start the bootstrap {command!r}: {e}"
            self.on_init(faults.error(message, "Runtime.InvalidEntrypoint", []))
            return
        self.output = self.process.stdout.fileno()  # type: ignore[union-attr]
        os.set_blocking(self.output, False)
        self.loop.add_reader(self.output, self.read_output)
        self.loop.call_later(0.05, self.watch)

    def read_output(self) -> None:
        """Copy what the bootstrap wrote so far into the log (and the tail of the invocation asking for it)."""
        while self.output >= 0:
            try:
                data = os.read(self.output, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the bootstrap and all it started are gone
                self.loop.remove_reader(self.output)
                self.output = -1
                return
            logs.write(self._decode.decode(data))
            if self.current is None:  # during an invocation, flushed at its end with its END line
                logs.flush()

    def watch(self) -> None:
        """Poll for the bootstrap's exit (a child watcher would need a signal handler per replica)."""
        if self.process is None or self.closed.done():
            return
        code = self.process.poll()
        if code is None:
            self.loop.call_later(0.05, self.watch)
            return
        message = f"Runtime exited with error: exit status {code}" if code >= 0 else f"Runtime exited: signal {-code}"
        if not self.initialised:
            self.initialised = True
            self.on_init(faults.error(message, "Runtime.ExitError", []))
            return
        if self.current is not None:
            rid = self.current.request_id
            self.complete(b"", faults.error(f"RequestId: {rid} Error: {message}", "Runtime.ExitError", [], rid))
        self.stop(code if code > 0 else 1)

    def stop(self, exit_code: int) -> None:
        """End the bootstrap (its whole process group) and let the replica exit with `exit_code`."""
        if self.closed.done():
            return
        self.exit_code = exit_code
        self.kill()
        for inv in self.pending:  # queued behind a reset sandbox: fail fast rather than at the drain deadline
            inv.conn.close()
        self.pending.clear()
        self.closed.set_result(None)
        self.on_stop(exit_code)

    def kill(self, grace_s: float = 0.0) -> None:
        """SIGKILL the bootstrap's process group, after `grace_s` for it to exit by itself."""
        if self.process is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(_KILL_GRACE_S)
        self.read_output()  # its last words

    def check_drained(self) -> None:
        pass  # the bootstrap's connections do not hold the replica open

    # --- the Runtime API endpoints ------------------------------------------------------------------------

    def dispatch(self, conn: Connection) -> None:
        keep = conn.parser.should_keep_alive()
        method = conn.parser.get_method()
        path = conn.url.partition(b"?")[0]
        if not path.startswith(PREFIX):
            data = _api_error(404, "NotFound", "Not Found", keep)
        elif path == PREFIX + b"invocation/next" and method == b"GET":
            data = self.next(conn, keep)
        elif path == PREFIX + b"init/error" and method == b"POST":
            data = self.init_error(conn, keep)
        elif path.startswith(PREFIX + b"invocation/") and method == b"POST":
            request_id, _, verb = path[len(PREFIX) + 11 :].decode("latin-1").partition("/")
            data = self.result(conn, request_id, verb, keep)
        else:
            data = _api_error(404, "NotFound", "Not Found", keep)
        conn.reply(data, keep)

    def next(self, conn: Connection, keep: bool) -> bytes | None:
        if not self.initialised:
            self.initialised = True
            self.on_init(None)
        if self.current is not None:
            # Asking for more without answering: Lambda counts the invocation as failed.
            rid = self.current.request_id
            message = f"RequestId: {rid} Error: the runtime asked for the next invocation without answering"
            self.complete(b"", faults.error(message, "Runtime.InvalidResponse", [], rid))
        self.poller = (conn, keep)
        self.loop.call_soon(self.feed)
        return None

    def init_error(self, conn: Connection, keep: bool) -> bytes:
        if self.initialised:
            return _api_error(403, "InvalidStateTransition", "Init is over: the runtime already asked for work", keep)
        self.initialised = True
        self.on_init(_error_shape(conn, "", "Runtime.Unknown"))
        return http11.response(202, http11.JSON, _ACCEPTED, keep)

    def result(self, conn: Connection, request_id: str, verb: str, keep: bool) -> bytes:
        if verb not in ("response", "error"):
            return _api_error(404, "NotFound", "Not Found", keep)
        if self.current is None or request_id != self.current.request_id:
            return _api_error(400, "InvalidRequestID", f"Invalid request ID: {request_id!r}", keep)
        if conn.too_large:
            limit = self.settings.max_response_bytes
            message = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
            self.complete(b"", faults.error(message, "Function.ResponseSizeTooLarge", [], request_id))
            return _api_error(413, "RequestEntityTooLarge", message, keep)
        if verb == "error":
            self.complete(b"", _error_shape(conn, request_id, "Unhandled"))
            return http11.response(202, http11.JSON, _ACCEPTED, keep)
        payload = conn.body()
        if len(payload) > self.settings.max_response_bytes:
            limit = self.settings.max_response_bytes
            message = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
            self.complete(b"", faults.error(message, "Function.ResponseSizeTooLarge", [], request_id))
            return _api_error(413, "RequestEntityTooLarge", message, keep)
        self.complete(payload, None)
        return http11.response(202, http11.JSON, _ACCEPTED, keep)


def _error_shape(conn: Connection, request_id: str, default_type: str) -> dict:
    """The error a runtime posted: its JSON body (errorMessage, errorType, stackTrace), else the type header."""
    header = conn.header(b"lambda-runtime-function-error-type")
    error_type = header.decode("latin-1") if header else default_type
    try:
        body = json.loads(conn.body() or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    trace = body.get("stackTrace")
    return faults.error(
        str(body.get("errorMessage", "")),
        str(body.get("errorType") or error_type),
        trace if isinstance(trace, list) else [],
        request_id,
    )


def _die_with_replica() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class RelayServer(Server):
    """The /_fx/* side of a bootstrap replica: invocations are queued for the Runtime API, answered later."""

    def __init__(self, api: RuntimeApi, settings: Settings) -> None:
        super().__init__(None, settings, api.loop)
        self.api = api
        self.new_request_id = RequestIds()

    def report(self) -> bytes:
        return self.api.report

    def invoke(self, conn: Connection, keep: bool) -> bytes | None:
        try:
            _, context, request_id = self.invoke_input(conn)
        except ValueError as e:
            return unparsable(e, keep)

        tail = conn.header(b"x-amz-log-type") == b"Tail"
        invocation = Invocation(request_id, conn.body() or b"{}", context, False, conn, lambda p, e: None, tail)

        def finish(payload: bytes, err: dict | None) -> None:
            log_tail = invocation.log.tail() if invocation.log is not None else None
            conn.answer(self.invoke_answer(payload, err, keep, request_id, conn.latest, log_tail), keep)

        invocation.finish = finish
        self.api.submit(invocation)
        return None

    def http(self, conn: Connection, method: bytes, keep: bool) -> bytes | None:
        event, request_id = self.http_input(conn, method)

        def finish(payload: bytes, err: dict | None) -> None:
            result = None
            if err is None:
                try:
                    result = json.loads(payload)
                except ValueError:
                    logs.write(logs.timestamped(request_id, "[ERROR] Malformed Lambda proxy response: not JSON"))
                    logs.flush()
                    err = faults.error("not JSON", "MalformedResponse", [], request_id)
            conn.answer(self.http_answer(result, payload, err, request_id, keep, conn), keep)

        self.api.submit(Invocation(request_id, json.dumps(event).encode(), None, True, conn, finish))
        return None


def run(settings: Settings, report: Callable[[dict], None], started: float) -> int:
    """Serve a bootstrap replica until SIGTERM, a timeout or the bootstrap's exit; returns the exit code."""
    loop = uvloop.new_event_loop()
    init: asyncio.Future[dict | None] = loop.create_future()
    api = RuntimeApi(settings, loop, lambda err: init.done() or init.set_result(err))
    try:
        api_endpoint = loop.run_until_complete(api.listen())
    except OSError as e:
        message = f"Cannot listen on {settings.runtime_api} for the Runtime API: {e}"
        return faults.init_failed(report, faults.error(message, "Runtime.ListenError", []), started)
    if settings.bootstrap:
        api.start(settings.bootstrap, api_endpoint)
    # else the runtime client is not ours to start: e.g. a Lambda image in a container beside this one
    err = loop.run_until_complete(init)
    server = RelayServer(api, settings)
    if err is None:
        try:
            endpoint = loop.run_until_complete(server.listen())
        except OSError as e:
            message = f"Cannot listen on {settings.listen}: {e}"
            err = faults.error(message, "Runtime.ListenError", [])
    if err is not None:
        api.kill(grace_s=1.0)  # a runtime that posted /init/error exits by itself
        return faults.init_failed(report, err, started)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.shutdown)
    api.init_ms = (time.perf_counter() - started) * 1000
    api.on_stop = server.shutdown
    logs.flush()
    report({"event": "ready", "endpoint": endpoint, "init_ms": round(api.init_ms, 3)})
    loop.run_until_complete(server.closed)
    api.stop(server.exit_code)
    logs.flush()
    return server.exit_code
