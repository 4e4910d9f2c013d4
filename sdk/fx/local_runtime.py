"""One replica of an fx.yaml function on this machine, with no platform: `fx local invoke` and `fx local api`.

It is the platform's own runtime (`python -m fx_runtime`, what every replica runs), started with the settings
the local backend gives a replica (handler, name, memory, timeout, HTTP event kind, env), on the code folder
itself instead of an extracted zip, so events, context, environment, results, errors and log lines are the
platform's. Differences, by design: no sandbox, no secrets (give their keys with --env), no NATS grant, and
requirements.txt is installed into fx's build cache and put on PYTHONPATH rather than shipped as a layer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fx import interpreters
from fx.errors import FunctionError, InputError

if TYPE_CHECKING:  # imported where used: `fx --help` shows READY_TIMEOUT_S and needs neither httpx nor pydantic
    import httpx

    from fx.manifest import FunctionDef
    from fx.models import FunctionSpec

NO_ARTIFACT = "sha256:" + "0" * 64  # the code is the folder itself; the spec wants a digest
READY_TIMEOUT_S = 60.0  # an import-heavy handler (pandas, torch) takes seconds; the platform's gate allows 30
_READY = re.compile(r"^fx-runtime ready on (\S+) \(init")
_ERROR_LINE = re.compile(r"\[ERROR\] ([\w.]+): (.*)")
FUNCTION_ERROR_HEADER = "X-Amz-Function-Error"
Log = Callable[[str], None]


class LocalInitError(FunctionError):
    """The handler could not be loaded: its init error in Lambda's shape, as the platform reports it (exit 1)."""

    def __init__(self, payload: dict) -> None:
        super().__init__("Unhandled", payload)


class LocalReplica:
    """The runtime running one function; use as a context manager. `log` receives every log line."""

    def __init__(
        self,
        fn: FunctionDef,
        extra_env: dict[str, str] | None = None,
        log: Log = print,
        init_timeout: float = READY_TIMEOUT_S,
    ) -> None:
        self.fn = fn
        self.spec: FunctionSpec = fn.spec(None if fn.image else NO_ARTIFACT)
        if self.spec.image:
            raise InputError(f"{fn.name}: its code is the image {fn.image}; fx local runs code folders only")
        if self.spec.runtime not in (interpreters.own_runtime(), "provided"):
            raise InputError(
                f"{fn.name}: runtime {self.spec.runtime}; fx local runs {interpreters.own_runtime()} (the Python fx"
                f" runs on). Run fx from a {self.spec.runtime} environment, or deploy it to try it"
            )
        self.extra_env = extra_env or {}
        self.log = log
        self.init_timeout = init_timeout
        self.endpoint = ""
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._lines: list[str] = []
        self._http: httpx.Client | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> LocalReplica:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def environment(self) -> dict[str, str]:
        """What the local backend sets for a replica, the function's env, then --env (which wins)."""
        from fx import build

        spec = self.spec
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "_HANDLER": spec.handler,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            "LAMBDA_TASK_ROOT": str(self.fn.code_dir),
            "FX_LISTEN": "127.0.0.1:0",
            "FX_TIMEOUT_MS": str(int(spec.timeout * 1000)),
            "FX_HTTP_EVENT": spec.http.event,
            **spec.env,
            **self.extra_env,
        }
        if spec.runtime == "provided":
            env["FX_BOOTSTRAP"] = str(self.fn.code_dir / "bootstrap")
        requirements = self.fn.code_dir / "requirements.txt"
        if requirements.is_file() and requirements.read_text().strip():
            layer = build.dependencies(requirements, spec.runtime, self.log)
            env["PYTHONPATH"] = str(layer)  # after the code, as the layer is: the runtime puts the code first
        return env

    def start(self) -> None:
        import httpx

        from fx.orphans import die_with_parent

        env = self.environment()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "fx_runtime"],
            env=env,
            cwd=self.fn.code_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=die_with_parent(),  # fx killed outright leaves no runtime behind
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(self.init_timeout):
            self.stop()
            message = f"{self.fn.name}: the handler did not load within {self.init_timeout:g} s (--init-timeout)"
            raise LocalInitError({"errorType": "Runtime.InitTimeout", "errorMessage": message})
        if not self.endpoint:
            self._process.wait()
            raise LocalInitError(_init_error(self._lines))
        self._http = httpx.Client(base_url=f"http://{self.endpoint}", timeout=self.spec.timeout + 30)

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()  # the runtime finishes the invocation in progress, then exits
            try:
                self._process.wait(self.spec.timeout + 5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._reader is not None:
            self._reader.join(5)  # every line the runtime wrote is passed on before fx goes on (or exits)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def invoke(self, event: Any) -> Any:
        """The handler's result for a raw event (as the Invoke API gives it), or FunctionError."""
        r = self._request("POST", "/_fx/invoke", content=json.dumps(event).encode())
        payload = _json_or_text(r)
        if kind := r.headers.get(FUNCTION_ERROR_HEADER):
            raise FunctionError(kind, payload)
        return payload

    def http(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> httpx.Response:
        """An HTTP-trigger request: the runtime makes the function's event (v2, v1 or alb) and answers by its rules."""
        return self._request(method, f"/_fx/http{path}", headers=headers, content=body)

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        import httpx

        if self._http is None:
            raise RuntimeError("the replica is not started")
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:  # it ended mid-call (os._exit, a crash): the platform answers 502
            raise FunctionError(
                "Unhandled", {"errorType": "Runtime.ExitError", "errorMessage": f"the runtime went away: {exc}"}
            ) from exc

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if not self._ready.is_set() and (match := _READY.match(line)):
                self.endpoint = match[1]
                self._ready.set()
                continue
            self._lines.append(line)
            del self._lines[:-50]  # the last lines, for an init error
            self.log(line.rstrip("\n"))
        self._ready.set()  # ended before it was ready


def _init_error(lines: list[str]) -> dict:
    """The init error the runtime logged ("[ERROR] Type: message" and its traceback), in Lambda's shape."""
    for i in range(len(lines) - 1, -1, -1):
        if match := _ERROR_LINE.search(lines[i]):
            trace = [line for line in lines[i + 1 :] if not line.startswith(("INIT_REPORT", "Traceback"))]
            return {"errorType": match[1], "errorMessage": match[2], "stackTrace": trace}
    last = (lines[-1] if lines else "no output").strip()
    return {"errorType": "Runtime.ExitError", "errorMessage": f"the runtime exited before it was ready: {last}"}


def _json_or_text(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text
