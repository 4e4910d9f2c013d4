"""The local backend: replicas are forks of a zygote process (python -m fx_runtime.zygote) on this host.

One zygote per interpreter, started on the first replica that needs it: a function runs on the interpreter
its `runtime:` names (fx.interpreters finds them; `provided` runs on the controller's own), so `python3.12`
runs on Python 3.12 or is refused at deploy. local_interpreters.py prepares a zygote on another Python. The
JSON-lines protocol is in ARCHITECTURE.md.

With a sandbox (fx as root, `--sandbox auto`), every replica runs confined as its function's uid
(local_sandbox.py, fx_runtime/sandbox/). Either way each function has a private directory (mode 0700,
its uid's) under the instance's run directory, visible inside its sandbox at the same path.

Under `fx up` (a lifeline fd given), zygotes outlive the controller and a restarted controller adopts their
replicas instead of starting new ones (local_adoption.py); `fx up` ending, however it ends, ends them.

Templates (a function's `snap_start: true`, as Lambda's SnapStart opt-in): with a version's first replica the
zygote is asked for that version's template (a process that ran the handler's init once and forks the next
replicas), keyed by everything that makes the replica what it is (its
function, version, environment, sandbox and log), so nothing of one version or function ever serves another.
`FX_TEMPLATES_MAX` (default 32, 0: none) bounds how many each zygote keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fx.interpreters import KNOB, own_runtime
from fx.orphans import die_with_parent
from fx.protocol import PYTHON_RUNTIMES
from fx.state_dir import PROTECTIONS_FILE, private
from fx_runtime.template import DEFAULT_MAX as TEMPLATES_DEFAULT

from ..state.artifacts import Artifacts
from . import local_adoption, local_interpreters, local_sandbox
from .base import EventSink, ReplicaEvent, ReplicaSpec, Running, init_error_event
from .local_adoption import Records
from .local_nats import FunctionCreds
from .local_sandbox import SandboxSettings, UidMap

log = logging.getLogger("fx_controller.local")

ZYGOTE_START_TIMEOUT_S = 30.0
HELLO_TIMEOUT_S = 5.0  # a zygote that accepts a connection but says nothing is not adopted
TEMPLATES_KNOB = "FX_TEMPLATES_MAX"


def replica_env(
    replica: ReplicaSpec,
    artifact: Path,
    code_root: Path,
    max_entries: int,
    listen: str,
    nats: dict[str, str],
    interpreter: str = sys.executable,
    layer: Path | None = None,
) -> dict[str, str]:
    """The environment ARCHITECTURE.md promises a replica; the runtime fills in Lambda's other variables.
    `nats`: FX_NATS_* for a version granted NATS access, empty for the others. `layer`: the dependency layer's
    zip, extracted beside the code zips (by digest: functions with the same requirements share it). Nothing
    of the controller's own environment: its PATH (`interpreter`'s directory first) may name private
    directories, its HOME is fx's."""
    spec = replica.spec
    hexdigest = replica.digest.split(":", 1)[1]
    env = {"PATH": local_interpreters.replica_path(interpreter)}
    env.update(
        {
            "_HANDLER": spec.handler,
            "AWS_LAMBDA_FUNCTION_NAME": replica.function,
            "AWS_LAMBDA_FUNCTION_VERSION": str(replica.version),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "FX_ARTIFACT": str(artifact),
            "FX_ARTIFACT_SHA256": hexdigest,
            "FX_CODE_DIR": str(code_root / hexdigest),
            "FX_LISTEN": listen,
            "FX_TIMEOUT_MS": str(int(spec.timeout * 1000)),
            "FX_HTTP_EVENT": spec.http.event,
            "FX_MAX_ARTIFACT_ENTRIES": str(max_entries),
            **nats,
        }
    )
    if layer is not None and spec.dependencies:
        layer_hex = spec.dependencies.split(":", 1)[1]
        env.update({"FX_LAYER": str(layer), "FX_LAYER_SHA256": layer_hex, "FX_LAYER_DIR": str(code_root / layer_hex)})
    if spec.runtime == "provided":  # a custom runtime: the runtime serves the Runtime API to its bootstrap
        env["FX_BOOTSTRAP"] = str(code_root / hexdigest / "bootstrap")
    if replica.token:
        env["FX_REPLICA_TOKEN"] = replica.token
    env.update(replica.secret_env)
    env.update(spec.env)
    return env


@dataclass
class _Zygote:
    """One zygote: the fork server of one interpreter, started by this controller (`process`) or adopted
    (connected to its control socket)."""

    interpreter: str
    pid: int
    events: asyncio.StreamReader
    commands: asyncio.StreamWriter
    process: asyncio.subprocess.Process | None = None
    reader: asyncio.Task | None = None
    templates: set[str] = field(default_factory=set)  # keys it was asked for (or has), not known gone


def templates_max(env: Mapping[str, str] = os.environ) -> int:
    raw = env.get(TEMPLATES_KNOB, "")
    if not raw:
        return TEMPLATES_DEFAULT
    if not raw.isdigit():
        raise ValueError(f"{TEMPLATES_KNOB} must be a whole number (0: no templates), got {raw!r}")
    return int(raw)


def template_key(replica: ReplicaSpec, env: Mapping[str, str], line: Mapping) -> str:
    """What makes a replica what it is, but its socket: replicas with the same key may fork one template."""
    sandbox = {k: v for k, v in line.get("sandbox", {}).items() if k != "env_file"}
    what = {"function": replica.function, "version": replica.version, "log": line["log"], "sandbox": sandbox}
    what["env"] = {k: v for k, v in env.items() if k != "FX_LISTEN"}
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()
    return f"{replica.function}@{replica.version}:{digest[:32]}"


def _version_of(key: str) -> tuple[str, int]:
    function, version = key.rsplit(":", 1)[0].rsplit("@", 1)
    return function, int(version)


def _template_of(key: str, function: str, version: int | None) -> bool:
    of, number = _version_of(key)
    return of == function and version in (None, number)


def runtimes_report(runtimes: Mapping[str, str]) -> list[str]:
    """Which runtimes functions may name here, for the controller's log and `fx up`."""
    have = [f"{r} ({path})" for r, path in runtimes.items() if r != "provided"]
    lines = [f"runtimes: {', '.join(have)}, provided"]
    if missing := [r for r in PYTHON_RUNTIMES if r not in runtimes]:
        lines.append(f"  no interpreter for {', '.join(missing)} (deploys naming them are refused); add one: {KNOB}")
    return lines


class LocalBackend:
    runs_images = False  # replicas are processes on this machine: no container runtime
    secret_mirror = None  # secret values reach a replica in its spawn environment only
    store_source = None  # the function store is in NATS only

    def __init__(
        self,
        state_dir: Path,
        artifacts: Artifacts,
        command: list[str] | None = None,
        nats: FunctionCreds | None = None,
        sandbox: SandboxSettings | None = None,
        uids: UidMap | None = None,
        sandbox_mode: str = "off",
        interpreters: Mapping[str, str] | None = None,
        lifeline: int | None = None,
    ) -> None:
        self._state_dir = state_dir
        self._lifeline = lifeline  # fx up's: zygotes outlive this controller, and the next one adopts them
        self._run_dir = local_sandbox.run_dir(state_dir)
        self._nats = nats or FunctionCreds(self._run_dir, "", None, 0)
        self._logs = state_dir / "logs"
        self._code = state_dir / "code"
        self._sandbox = sandbox
        self._sandbox_mode = sandbox_mode
        self._uids = uids if sandbox else None
        self.protections: list[str] = []
        self._artifacts = artifacts
        self._command = command or [sys.executable, "-m", "fx_runtime.zygote"]  # the controller's own interpreter
        # runtime -> interpreter; `provided` runs its bootstrap under fx_runtime on the controller's own
        self.runtimes: dict[str, str] = {
            **(interpreters or {own_runtime(): sys.executable}),
            "provided": sys.executable,
        }
        self._on_event: EventSink = lambda _: None
        self._zygotes: dict[str, _Zygote] = {}  # interpreter -> its running zygote
        self._starting: dict[str, asyncio.Lock] = {}
        self._live: dict[str, str] = {}  # replicas asked for and not yet exited -> their zygote's interpreter
        self._pids: dict[str, int] = {}
        self._preparing: set[str] = set()  # asked for, not yet sent to a zygote (its code being fetched)
        self._stop_on_spawn: set[str] = set()
        self._kills: set[asyncio.Task] = set()
        self._closing = False
        self._tokens: dict[str, tuple[str, int, str]] = {}  # replica -> function, version, token (for its record)
        self._records = Records(self._run_dir) if lifeline is not None else None
        self._running: list[Running] = []  # found alive at open(), for the fleet to adopt
        self._templates_max = templates_max()
        self._failed_templates: set[str] = set()  # keys whose init failed in a template: asked no more
        self._template_kb: dict[str, int] = {}  # ready template's key -> its PSS and its spare's when it was ready

    def runtime_remedy(self, runtime: str) -> str:
        return (
            f"Install {runtime} (on PATH or with pyenv) or name it with"
            f" `fx up --interpreter {runtime}=/path/to/{runtime}` (or FX_INTERPRETERS), then restart fx"
        )

    async def open(self, on_event: EventSink) -> None:
        self._on_event = on_event
        private(self._logs)
        private(self._code)
        self._run_dir.mkdir(mode=0o711, exist_ok=True)
        os.chmod(self._run_dir, 0o711)  # functions (and the gateway) pass through to their own directory only
        self._nats.start()
        report = await self._reconnect() if self._records is not None else None
        if sys.executable not in self._zygotes:
            report = await self._start_zygote(sys.executable)  # the others start with their first replica
        self.protections = local_sandbox.report(self._sandbox_mode, self._sandbox, report)
        self.protections += runtimes_report(self.runtimes)
        for line in self.protections:
            log.info("%s", line)
        (self._state_dir / PROTECTIONS_FILE).write_text("\n".join(self.protections) + "\n")

    async def _reconnect(self) -> dict | None:
        """Connect to the zygotes a previous controller left, note the replicas their records vouch for and
        kill the others; returns the sandbox report of this interpreter's zygote, if it was one of them."""
        assert self._records is not None
        previous = self._records.previous()
        known = {str(local_adoption.control_path(self._run_dir, i)): i for i in set(self.runtimes.values())}
        report = None
        for path in sorted(local_adoption.control_dir(self._run_dir).glob("*.sock")):
            hello = await self._connect(path, known.get(str(path)))
            if hello is None:
                continue
            zygote, said = hello
            if zygote.interpreter == sys.executable:
                report = said.get("sandbox")
            for found in said.get("replicas", []):
                replica_id, pid, endpoint = str(found["id"]), int(found["pid"]), str(found["endpoint"])
                record = previous.get(replica_id)
                if record is None or not local_adoption.vouches(record, pid, endpoint):
                    log.warning("replica %s (pid %d) is not one this fx started: killed", replica_id, pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    continue
                self._live[replica_id], self._pids[replica_id] = zygote.interpreter, pid
                self._records.keep(replica_id, record)
                self._running.append(
                    Running(replica_id, record.function, record.version, endpoint, record.token_sha256)
                )
        self._records.compact()  # the adopted alone: until now the log still held all the last controller's
        return report

    async def _connect(self, path: Path, interpreter: str | None) -> tuple[_Zygote, dict] | None:
        """The zygote listening on `path` and its hello; None (the socket removed) if none answers. A zygote
        of no interpreter this controller runs is told to stop."""
        try:
            events, commands = await asyncio.open_unix_connection(str(path), limit=1 << 20)
            hello = json.loads(await asyncio.wait_for(events.readline(), HELLO_TIMEOUT_S))
            pid = int(hello["pid"])
        except (OSError, TimeoutError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # its zygote is gone (killed with its replicas, or hung: not ours to use)
            return None
        if interpreter is None:
            log.warning("zygote pid=%d of an interpreter this controller does not run: stopped", pid)
            commands.write(b'{"op": "stop"}\n')
            commands.close()
            return None
        log.info("zygote pid=%d adopted (interpreter %s, %d replicas)", pid, interpreter, len(hello["replicas"]))
        zygote = self._zygotes[interpreter] = _Zygote(interpreter, pid, events, commands)
        zygote.templates = {str(t["key"]) for t in hello.get("templates", [])}
        for t in hello.get("templates", []):
            if t.get("standby"):  # a spare prepared while no controller listened: the standby from now on
                self._standby(str(t["key"]), str(t["standby"]))
        zygote.reader = asyncio.create_task(self._read_events(zygote))
        return zygote, hello

    def running(self) -> list[Running]:
        """The replicas found alive at open() that the records vouch for: the fleet adopts them or stops them."""
        found, self._running = self._running, []
        return found

    def adopt(self, replica: ReplicaSpec) -> None:
        """The fleet took this replica over: its NATS credentials are kept fresh again."""
        self._tokens[replica.id] = (replica.function, replica.version, replica.token)
        self._nats.env(replica)

    async def _zygote(self, interpreter: str) -> _Zygote:
        async with self._starting.setdefault(interpreter, asyncio.Lock()):  # one start, however many replicas
            if interpreter not in self._zygotes:
                await self._start_zygote(interpreter)
            return self._zygotes[interpreter]

    async def _start_zygote(self, interpreter: str) -> dict | None:
        """Start the zygote of `interpreter`; returns its sandbox report (None without a sandbox)."""
        command, extra = list(self._command), {}
        if interpreter != sys.executable:
            site = await asyncio.to_thread(local_interpreters.prepare, interpreter)
            command = local_interpreters.zygote_command(interpreter)
            extra = {"PYTHONPATH": local_interpreters.zygote_pythonpath(site)}
        command += ["--templates", str(self._templates_max)]
        env = {**os.environ, **extra} if extra else None
        if self._sandbox:  # replicas are forks of the zygote: nothing of the controller's environment in it
            command.append("--sandbox")
            env = {"PATH": local_interpreters.replica_path(interpreter), "LANG": "C.UTF-8", **extra}
        lifeline = self._lifeline
        if lifeline is not None:  # it outlives this controller: fx up's lifeline ends it, not our death
            control = local_adoption.control_path(self._run_dir, interpreter)
            command += ["--control", str(control), "--lifeline", str(lifeline)]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            preexec_fn=die_with_parent(signal.SIGKILL) if lifeline is None else None,
            pass_fds=() if lifeline is None else (lifeline,),
            limit=1 << 20,
        )
        log.info("zygote started pid=%d interpreter=%s", process.pid, interpreter)
        report = None
        if self._sandbox:  # its config goes in on stdin; its first line says what this host allows
            assert process.stdin and process.stdout
            process.stdin.write(json.dumps(self._zygote_sandbox(interpreter)).encode() + b"\n")
            try:
                first = await asyncio.wait_for(process.stdout.readline(), ZYGOTE_START_TIMEOUT_S)
            except TimeoutError:
                process.kill()  # not left behind: the next replica of this interpreter tries a new one
                raise
            if not first:
                raise RuntimeError("the zygote exited while setting up the sandbox; see the controller's log")
            report = json.loads(first)
        assert process.stdout and process.stdin
        zygote = self._zygotes[interpreter] = _Zygote(interpreter, process.pid, process.stdout, process.stdin, process)
        zygote.reader = asyncio.create_task(self._read_events(zygote))
        return report

    def _cgroup_parent(self, interpreter: str) -> str:
        """Each zygote's replicas under a parent cgroup of their own: a zygote empties its parent when it starts."""
        if interpreter == sys.executable:
            return local_sandbox.instance(self._state_dir)
        runtime = next(r for r, path in self.runtimes.items() if path == interpreter)
        return f"{local_sandbox.instance(self._state_dir)}-{runtime}"

    def _zygote_sandbox(self, interpreter: str) -> dict:
        assert self._sandbox
        return {
            "run_dir": str(self._run_dir),
            "cgroup_parent": self._cgroup_parent(interpreter),
            "hidden": self._sandbox.hidden,
            "tmp_mb": self._sandbox.tmp_mb,
            "pids_max": self._sandbox.pids_max,
        }

    def _env_file(self, replica_id: str, env: dict[str, str]) -> Path:
        # On a cold start's path: a raw fd and one write (no text file, no mkdir but the first time).
        path = self._run_dir / ".env" / f"{replica_id}.json"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, flags, 0o600)
        try:
            data = json.dumps(env).encode()
            while data:  # a short write (a full disk raises instead)
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
        return path

    def private_dir(self, function: str) -> Path:
        """The function's own directory (0700, its uid's), made if missing: visible to it and to root only."""
        path = self._run_dir / function
        path.mkdir(mode=0o700, exist_ok=True)
        if self._uids:
            uid = self._uids.uid(function)
            os.chown(path, uid, uid)
        return path

    async def start_replica(self, replica: ReplicaSpec) -> None:
        interpreter = self.runtimes.get(replica.spec.runtime)
        if interpreter is None:  # deployed before its interpreter went away: never run it on another Python
            why = f"no {replica.spec.runtime} interpreter on this host; {self.runtime_remedy(replica.spec.runtime)}"
            return self._refuse(replica.id, "Runtime.InterpreterNotFound", why)
        self._preparing.add(replica.id)
        self._tokens[replica.id] = (replica.function, replica.version, replica.token)
        try:
            artifact = await self._artifacts.ensure_local(replica.digest)
            deps = replica.spec.dependencies
            layer = await self._artifacts.ensure_local(deps) if deps else None
            zygote = await self._zygote(interpreter)
        except (TimeoutError, OSError, RuntimeError, ValueError) as e:
            log.error("cannot start the zygote of %s: %s", interpreter, e)
            self._stop_on_spawn.discard(replica.id)
            self._tokens.pop(replica.id, None)
            return self._refuse(replica.id, "Runtime.StartError", f"cannot start {interpreter}: {e}")
        finally:
            self._preparing.discard(replica.id)
        if replica.id in self._stop_on_spawn:  # stopped while its code was fetched or its zygote started
            self._stop_on_spawn.discard(replica.id)
            self._tokens.pop(replica.id, None)
            asyncio.get_running_loop().call_soon(self._on_event, ReplicaEvent(replica.id, "exit", exit_code=None))
            return None
        # No await from here to the spawn line: the replica is in _live before the zygote's reader can next
        # run, so a zygote dying now reports it gone. (Fetched first, a zygote that died during the fetch
        # would have been mourned without it, and the replica sent to a dead pipe never reported.)
        private = self.private_dir(replica.function)
        # one socket per replica, in the directory only its function's uid (and the gateway, root) may open
        listen = f"unix:{private}/{replica.id.removeprefix(replica.function + '-')}.sock"
        nats = self._nats.env(replica)
        env = replica_env(
            replica, artifact, self._code, self._artifacts.max_entries, listen, nats, interpreter, layer=layer
        )
        line = {"op": "spawn", "id": replica.id, "env": env, "log": str(self._logs / f"{replica.function}.log")}
        if self._uids:
            uid = self._uids.uid(replica.function)
            line["env"] = {}  # in a file only the replica reads: the zygote's memory is every replica's
            line["sandbox"] = {
                "uid": uid,
                "gid": uid,
                "private_dir": str(private),
                "memory_mb": replica.spec.memory,
                "env_file": str(self._env_file(replica.id, env)),
            }
        stdin = zygote.commands
        self._live[replica.id] = interpreter
        if self._templates_max and replica.spec.snap_start and replica.spec.runtime != "provided":
            key = template_key(replica, env, line)
            # A spare listens on a socket of its own and names it when ready; `listen` is for a zygote an earlier
            # fx started (adopted), whose spares bind the socket they are given.
            line["template"] = {"key": key, "listen": listen}
            if key not in zygote.templates and key not in self._failed_templates:
                zygote.templates.add(key)
                # its spares are told as standbys, and a claimed one's replica id starts as the controller's do
                template = {**line, "op": "template", "key": key, "id_prefix": f"{replica.function}-{replica.version}"}
                del template["id"], template["template"]
                if "sandbox" in template:
                    template["sandbox"] = {**line["sandbox"], "env_file": str(self._env_file(f"t-{replica.id}", env))}
                stdin.write(json.dumps(template).encode() + b"\n")
        stdin.write(json.dumps(line).encode() + b"\n")
        with contextlib.suppress(ConnectionError):  # the zygote died: the reader reports the replica gone
            await stdin.drain()

    def _refuse(self, replica_id: str, error_type: str, message: str) -> None:
        """A replica that cannot be started at all: it fails its init and is gone (reported as events are)."""
        loop = asyncio.get_running_loop()
        loop.call_soon(
            self._on_event, ReplicaEvent(replica_id, "init_error", error_type=error_type, error_message=message)
        )
        loop.call_soon(self._on_event, ReplicaEvent(replica_id, "exit", exit_code=None))

    async def stop_replica(self, replica_id: str, grace: float) -> None:
        pid = self._pids.get(replica_id)
        if pid is None:
            if replica_id in self._live or replica_id in self._preparing:
                self._stop_on_spawn.add(replica_id)
            return
        self._signal(replica_id, pid, signal.SIGTERM)
        task = asyncio.create_task(self._kill_after(replica_id, pid, grace))
        self._kills.add(task)
        task.add_done_callback(self._kills.discard)

    def _signal(self, replica_id: str, pid: int, sig: signal.Signals) -> None:
        if self._pids.get(replica_id) == pid:  # never signal a pid that may have been reused
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def _kill_after(self, replica_id: str, pid: int, grace: float) -> None:
        await asyncio.sleep(grace)
        if self._pids.get(replica_id) == pid:
            log.warning("replica %s did not exit within %.1f s of SIGTERM: SIGKILL", replica_id, grace)
            self._signal(replica_id, pid, signal.SIGKILL)

    async def _read_events(self, zygote: _Zygote) -> None:
        with contextlib.suppress(ConnectionError):  # an adopted zygote's connection reset: it is gone
            while line := await zygote.events.readline():
                try:
                    self._handle(json.loads(line), zygote)
                except (ValueError, KeyError, TypeError):
                    log.warning("zygote said something unexpected: %r", line[:200])
        code = await zygote.process.wait() if zygote.process is not None else None
        if self._closing:
            return
        log.error("zygote pid=%d exited with code %s; its replicas are gone", zygote.pid, code)
        if self._zygotes.get(zygote.interpreter) is zygote:
            del self._zygotes[zygote.interpreter]  # the next replica of its interpreter starts a new one
        for replica_id in [r for r, interpreter in self._live.items() if interpreter == zygote.interpreter]:
            self._exited(replica_id, None)

    def _handle(self, msg: dict, zygote: _Zygote) -> None:
        if msg["event"] == "template":
            return self._template_event(msg, zygote)
        if msg["event"] == "standby":
            return self._standby(str(msg["key"]), str(msg["endpoint"]))
        replica_id, event = msg["id"], msg["event"]
        if event == "spawned":
            self._pids[replica_id] = int(msg["pid"])
            if replica_id in self._stop_on_spawn:
                self._stop_on_spawn.discard(replica_id)
                self._signal(replica_id, self._pids[replica_id], signal.SIGTERM)
        elif event == "ready" and "claimed" in msg:
            self._claimed(replica_id, str(msg["claimed"]), str(msg["endpoint"]), msg.get("init_ms"), zygote)
        elif event == "ready":
            endpoint = str(msg["endpoint"])
            if not self._in_private_dir(self._tokens.get(replica_id, ("",))[0], endpoint):
                return self._misplaced(replica_id, endpoint)
            self._record(replica_id, endpoint)
            self._on_event(ReplicaEvent(replica_id, "ready", endpoint=endpoint, init_ms=msg.get("init_ms")))
        elif event == "init_error":
            self._on_event(init_error_event(replica_id, msg))
        elif event == "exit":
            self._exited(replica_id, msg.get("code"))

    def _standby(self, key: str, endpoint: str) -> None:
        """A template's spare is prepared: the gateway may send a cold start of its version straight to it. It
        named its socket itself (it ran the function's code): only one in its function's directory is told."""
        function, version = _version_of(key)
        if not self._in_private_dir(function, endpoint):
            log.warning("a spare of %s said it listens on %r, not in its function's directory", key, endpoint[:200])
            return
        self._on_event(ReplicaEvent("", "standby", endpoint=endpoint, function=function, version=version))

    def _claimed(self, replica_id: str, key: str, endpoint: str, init_ms: float | None, zygote: _Zygote) -> None:
        """A caller connected to a standby: that spare is a replica the fleet did not ask for, ready (the fleet
        adopts it, or stops it if its version is gone)."""
        function, version = _version_of(key)
        if not self._in_private_dir(function, endpoint):  # never told as a standby
            return self._misplaced(replica_id, endpoint)
        self._live[replica_id] = zygote.interpreter
        claimed = ReplicaEvent(replica_id, "claimed", endpoint, function=function, version=version, init_ms=init_ms)
        self._on_event(claimed)
        self._record(replica_id, endpoint)

    def _in_private_dir(self, function: str, endpoint: str) -> bool:
        """A replica names its own socket (a spare's is its own choice), and runs the function's code: the gateway
        is sent only to a socket in that function's private directory, never to another's nor to a port."""
        path = Path(endpoint.removeprefix("unix:"))
        return endpoint.startswith("unix:") and bool(function) and path.parent == self._run_dir / function

    def _misplaced(self, replica_id: str, endpoint: str) -> None:
        message = f"the replica said it listens on {endpoint[:200]!r}, not a socket in its function's directory"
        log.warning("replica %s: %s; stopped", replica_id, message)
        self._on_event(ReplicaEvent(replica_id, "init_error", error_type="Runtime.ListenError", error_message=message))
        if (pid := self._pids.get(replica_id)) is not None:
            self._signal(replica_id, pid, signal.SIGKILL)

    def _template_event(self, msg: dict, zygote: _Zygote) -> None:
        key, state = str(msg["key"]), msg["state"]
        if state == "ready":
            self._template_kb[key] = int(msg.get("pss_kb", 0))
            log.info(
                "template %s ready: pid %s, init %.1f ms, %d kB (PSS), %d of at most %d on this zygote",
                key, msg.get("pid"), msg.get("init_ms") or 0.0, msg.get("pss_kb", 0), len(zygote.templates),
                self._templates_max,
            )  # fmt: skip
            return
        zygote.templates.discard(key)  # gone: the next replica asks again
        self._template_kb.pop(key, None)
        self._no_standby(key)
        if state == "failed":  # its replicas start without one (and fail their init as the template did)
            self._failed_templates.add(key)
            log.warning("template %s failed: %s %s", key, msg.get("errorType", ""), msg.get("errorMessage", ""))

    def drop_templates(self, function: str, version: int | None = None) -> None:
        """A deleted function (every version) or version: its templates go now, not when the LRU reaches them."""
        for zygote in self._zygotes.values():
            for key in [k for k in zygote.templates if _template_of(k, function, version)]:
                zygote.templates.discard(key)
                self._template_kb.pop(key, None)
                self._no_standby(key)
                zygote.commands.write(json.dumps({"op": "drop", "key": key}).encode() + b"\n")
        self._failed_templates = {k for k in self._failed_templates if not _template_of(k, function, version)}

    def _no_standby(self, key: str) -> None:
        """The template is gone: its version has no standby now (one told stays harmless: its socket refuses)."""
        function, version = _version_of(key)
        self._on_event(ReplicaEvent("", "standby", function=function, version=version))

    def template_memory(self) -> dict[tuple[str, int], int]:
        """Bytes (PSS) of each version's ready templates and their spares, as measured when each became ready."""
        memory: dict[tuple[str, int], int] = {}
        for key, kb in self._template_kb.items():
            function, version = _version_of(key)
            memory[function, version] = memory.get((function, version), 0) + kb * 1024
        return memory

    def _record(self, replica_id: str, endpoint: str) -> None:
        """Note a ready replica for the controller that may follow this one."""
        pid, started = self._pids.get(replica_id), self._tokens.get(replica_id)
        if self._records is not None and pid is not None and started is not None:
            self._records.add(replica_id, pid, endpoint, *started)

    def _exited(self, replica_id: str, code: int | None) -> None:
        if self._records is not None:
            self._records.remove(replica_id)
        self._tokens.pop(replica_id, None)
        self._pids.pop(replica_id, None)
        self._nats.forget(replica_id)
        self._stop_on_spawn.discard(replica_id)
        if self._live.pop(replica_id, None) is not None:
            self._on_event(ReplicaEvent(replica_id, "exit", exit_code=code))

    async def close(self) -> None:
        self._closing = True
        await self._nats.close()
        for replica_id, pid in list(self._pids.items()):
            self._signal(replica_id, pid, signal.SIGKILL)
        for task in list(self._kills):
            task.cancel()
        zygotes = list(self._zygotes.values())
        for zygote in zygotes:
            if zygote.process is None or zygote.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(zygote.pid, signal.SIGKILL)
            if zygote.process is not None:
                await zygote.process.wait()
        await asyncio.gather(*(z.reader for z in zygotes if z.reader), return_exceptions=True)
        if self._sandbox:
            await self._clean_cgroups()
        if self._records is not None:
            self._records.close()
        shutil.rmtree(self._run_dir, ignore_errors=True)  # made again by the next open() and private_dir()

    async def _clean_cgroups(self) -> None:
        """The replicas' PID namespaces are dying with them; their cgroups can go once they are empty. Every
        interpreter's, started or not: an earlier controller may have left some."""
        pending = {self._cgroup_parent(interpreter) for interpreter in set(self.runtimes.values())}
        for _ in range(40):
            pending = {parent for parent in pending if not local_sandbox.clean_cgroups(parent)}
            if not pending:
                return
            await asyncio.sleep(0.05)
        log.warning("could not remove the cgroups %s", ", ".join(sorted(pending)))
