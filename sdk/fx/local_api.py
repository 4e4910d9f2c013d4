"""`fx local api`: the fx.yaml's functions served on one port as the gateway serves them, with no platform.

`/function/NAME/any/path` is the HTTP trigger (the function's event kind, v2, v1 or alb, made by the runtime
itself) and `POST /2015-03-31/functions/NAME/invocations` the Invoke API. One local replica per function
(fx.local_runtime), started at once so an init error shows before the first request. A change under a
function's folder restarts its replica; a change to the manifest reloads every function (watchfiles).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import watchfiles

from fx import manifest, sam
from fx.errors import FunctionError, InputError
from fx.local_runtime import LocalReplica

INVOKE_PREFIX = "/2015-03-31/functions/"
# Describe the hop to the gateway only, as the gateway's router drops them (X-Forwarded-* are set again).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length", "expect", "te"}
    | {"trailer", "upgrade", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"}
)
Log = Callable[[str], None]


class Functions:
    """The manifest's functions and their replicas; reloaded whole or one function at a time."""

    def __init__(self, path: Path, names: list[str], env: dict[str, str], log: Log, init_timeout: float) -> None:
        self.path, self.names, self.env, self.log = path, names, env, log
        self.init_timeout = init_timeout
        self.lock = threading.Lock()
        self.replicas: dict[str, LocalReplica] = {}
        self.failed: dict[str, str] = {}  # function -> its init error, until a change fixes it
        self.code_dirs: dict[str, Path] = {}

    def load(self) -> None:
        """(Re)read the manifest and start every function; a bad manifest at a reload keeps what runs."""
        defs = manifest.select(sam.functions(self.path), self.names, str(self.path))
        with self.lock:
            self.stop()
            self.code_dirs = {fn.name: fn.code_dir for fn in defs}
            for fn in defs:
                self._start(fn)

    def reload(self, changed: set[Path]) -> None:
        """Restart what `changed` touches; a manifest that went bad keeps what runs until it is fixed."""
        try:
            if self.path.resolve() in changed:
                self.log(f"{self.path}: changed, reloading every function")
                self.load()
                return
            defs = {fn.name: fn for fn in manifest.select(sam.functions(self.path), self.names, str(self.path))}
        except InputError as exc:
            self.log(f"{exc}\n(keeping what runs until {self.path} is fixed)")
            return
        for name, code_dir in self.code_dirs.items():
            if any(p.is_relative_to(code_dir) for p in changed) and name in defs:
                self.log(f"{name}: code changed, restarting")
                with self.lock:
                    if old := self.replicas.pop(name, None):
                        old.stop()
                    self._start(defs[name])

    def _start(self, fn: manifest.FunctionDef) -> None:
        self.failed.pop(fn.name, None)
        replica = LocalReplica(fn, self.env, lambda line, name=fn.name: self.log(f"{name} | {line}"), self.init_timeout)
        try:
            replica.start()
        except (InputError, FunctionError) as exc:
            self.failed[fn.name] = f"{fn.name}: {exc}"
            self.log(self.failed[fn.name])
            return
        self.replicas[fn.name] = replica
        self.log(f"{fn.name}: ready")

    def get(self, name: str) -> LocalReplica | str | None:
        """The function's replica, its init error, or None when the manifest has no such function."""
        with self.lock:
            return self.replicas.get(name) or self.failed.get(name)

    def stop(self) -> None:
        for replica in self.replicas.values():
            replica.stop()
        self.replicas.clear()


def watch(functions: Functions, stop: threading.Event) -> None:
    """Restart what changed until `stop` is set (watchfiles groups a burst of writes into one change)."""
    roots = {functions.path.resolve().parent, *functions.code_dirs.values()}
    for changes in watchfiles.watch(
        *roots, stop_event=stop, watch_filter=watchfiles.PythonFilter(extra_extensions=(".yaml", ".txt", ".json"))
    ):
        functions.reload({Path(path).resolve() for _, path in changes})


def handler_class(functions: Functions, log: Log) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            log(f"{self.address_string()} {format % args}")

        def _route(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if path.startswith("/function/"):
                name, _, rest = path[len("/function/") :].partition("/")
                self._http(unquote(name), f"/{rest}" + (f"?{query}" if query else ""), body)
            elif path.startswith(INVOKE_PREFIX) and path.endswith("/invocations") and self.command == "POST":
                self._invoke(unquote(path[len(INVOKE_PREFIX) : -len("/invocations")]), body)
            else:
                self._answer(404, {"error": {"code": "NotFound", "message": "try /function/NAME/... (see fx.yaml)"}})

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _route

        def _replica(self, name: str) -> LocalReplica | None:
            found = functions.get(name)
            if found is None:
                message = f"no function {name!r} in {functions.path}"
                self._answer(404, {"error": {"code": "FunctionNotFound", "message": message, "function": name}})
            elif isinstance(found, str):
                self._answer(502, {"error": {"code": "InitError", "message": found, "function": name}})
            else:
                return found
            return None

        def _http(self, name: str, target: str, body: bytes) -> None:
            if (replica := self._replica(name)) is None:
                return
            headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
            host = self.headers.get("Host", "")
            headers += [("X-Forwarded-For", self.client_address[0]), ("X-Forwarded-Proto", "http")]
            headers.append(("X-Forwarded-Host", host))
            try:
                r = replica.http(self.command, target, headers, body)
            except FunctionError as exc:
                self._answer(502, exc.payload)
                return
            self.send_response(r.status_code)
            for key, value in r.headers.multi_items():
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(r.content)

        def _invoke(self, name: str, body: bytes) -> None:
            if (replica := self._replica(name)) is None:
                return
            try:
                event = json.loads(body) if body else {}
            except ValueError as exc:
                self._answer(400, {"errorType": "InvalidRequestContentException", "errorMessage": str(exc)})
                return
            try:
                self._answer(200, replica.invoke(event))
            except FunctionError as exc:
                self._answer(200, exc.payload, {"X-Amz-Function-Error": "Unhandled"})

        def _answer(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def serve(functions: Functions, host: str, port: int, log: Log, ready: Callable[[str], None]) -> None:
    """Bind, start the functions, serve until interrupted; `ready` gets the base URL once they run. The port is
    bound first, so a port in use starts nothing."""
    try:
        server = ThreadingHTTPServer((host, port), handler_class(functions, log))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port") from exc
    server.daemon_threads = True
    stop = threading.Event()
    try:
        functions.load()
        watcher = threading.Thread(target=watch, args=(functions, stop), daemon=True)
        watcher.start()
        ready(f"http://{host}:{server.server_address[1]}")
        server.serve_forever()
    finally:
        stop.set()
        server.server_close()
        functions.stop()
