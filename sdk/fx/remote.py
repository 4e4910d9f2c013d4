"""`@fx.function`: a plain Python function deployed by value and run on fx.

    @fx.function(memory=256, timeout=30)
    def square(x):
        return x * x

    square.remote(3)                          # 9, computed on fx
    square.map(range(1000), concurrency=20)   # [0, 1, 4, ...], in order
    call = square.spawn(4); call.get()        # 16

The first remote call deploys the function (again only when its pickle changed: the same bytes are the same
version). A call's arguments and value travel pickled between this process and the function's own runtime.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError
from tqdm.auto import tqdm

from fx import build, by_value, deploy
from fx.client import Client, silent
from fx.errors import BadRequest, FunctionError, FxError, InputError
from fx.models import DeployResult, FunctionSpec

DEPLOY_WAIT_S = 120.0  # how long deploy() waits for the new version to initialise
RETRIES = 2  # a failed map item is tried again this many times
RETRY_BACKOFF_S = 0.2  # times the attempt number, before trying a failed item again
_NO_CODE_YET = "sha256:" + "0" * 64  # settings are checked before the code is built


class MapError(Exception):
    """Items of a map kept failing. `results` holds every value in input order (None where an item failed),
    `failures` each failed item's index and its last error."""

    def __init__(self, results: list[Any], failures: list[tuple[int, Exception]]) -> None:
        shown = ", ".join(f"#{i}: {e}" for i, e in failures[:3])
        more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
        super().__init__(f"{len(failures)} of {len(results)} items failed: {shown}{more}")
        self.results = results
        self.failures = failures


class FunctionCall:
    """A spawned call: its value with get(), once it is done."""

    def __init__(self, future: Future[Any]) -> None:
        self._future = future

    def get(self, timeout: float | None = None) -> Any:
        """The function's value, or its error (FunctionError, FxError) raised; TimeoutError after `timeout` s."""
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()


class Function:
    """A Python function to run on fx; calling it directly still runs it here."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None,
        requirements: list[str],
        by_value_modules: list[ModuleType],
        client: Client | None,
        settings: dict[str, Any],
    ) -> None:
        self.fn = fn
        self.name = name or _default_name(fn)
        self.requirements = list(requirements)
        self.by_value_modules = list(by_value_modules)
        self.client = client
        self.settings = {"runtime": f"python{by_value.python_version()}", **settings, "handler": by_value.HANDLER}
        self.spec(_NO_CODE_YET)  # bad settings are refused here, not at the first call
        self._deployed: DeployResult | None = None
        self._lock = threading.Lock()
        self._spawner: ThreadPoolExecutor | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def spec(self, artifact: str, dependencies: str | None = None) -> FunctionSpec:
        try:
            return FunctionSpec.model_validate(
                {**self.settings, "name": self.name, "artifact": artifact, "dependencies": dependencies}
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            message = first["msg"].removeprefix("Value error, ")
            raise InputError(f"@fx.function {self.name!r}: {where}: {message}") from None

    # --- deploying -------------------------------------------------------------

    def deploy(self, client: Client | None = None, progress: Callable[[str], None] | None = None) -> DeployResult:
        """Pickle, build and deploy the function, and wait until its version is ready (unchanged code: the
        version there is). FunctionError when the version failed to initialise, e.g. a VersionMismatch."""
        if client is not None:
            self.client = client
        fx = self._client()
        say = progress or silent
        with tempfile.TemporaryDirectory(prefix="fx-function-") as tmp:
            folder = Path(tmp)
            by_value.write_code(folder, self.fn, self.by_value_modules, self.requirements)
            built = build.build(folder, self.settings["runtime"], progress=say)
            code = deploy.upload(fx, self.name, "code", built.code, say)
            deps = deploy.upload(fx, self.name, "dependencies", built.dependencies, say) if built.dependencies else None
        result = deploy.wait(fx, [fx.deploy(self.spec(code, deps))], DEPLOY_WAIT_S, say)[0]
        if result.state == "Failed":
            error = result.init_error
            shape = {"errorType": "Runtime.InitError", "errorMessage": f"version {result.version} failed"}
            if error is not None:
                shape = {"errorType": error.error_type, "errorMessage": error.message, "stackTrace": error.stack_trace}
            raise FunctionError("InitError", shape)
        self._deployed = result
        return result

    # --- calling ---------------------------------------------------------------

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Run it on fx and return its value; FunctionError when it raised there."""
        self._ensure_deployed()
        event = by_value.event(args, kwargs)
        try:
            return by_value.result(self._client().invoke(self.name, event))
        except BadRequest as exc:
            if exc.code == "RequestTooLarge":
                size = len(event[by_value.PAYLOAD]) * 3 / 4 / 2**20
                exc.message += f" (the arguments are {size:.1f} MB pickled: pass large data by reference, e.g. a URL)"
            raise

    def spawn(self, *args: Any, **kwargs: Any) -> FunctionCall:
        """Start a remote call without waiting for it; call.get() waits for its value."""
        self._ensure_deployed()
        with self._lock:
            if self._spawner is None:
                self._spawner = ThreadPoolExecutor(self.default_concurrency(), thread_name_prefix=f"fx-{self.name}")
        return FunctionCall(self._spawner.submit(self.remote, *args, **kwargs))

    def map(
        self,
        items: Iterable[Any],
        concurrency: int | None = None,
        retries: int = RETRIES,
        return_exceptions: bool = False,
        progress: bool | None = None,
    ) -> list[Any]:
        """f(item) for each item, on fx, at most `concurrency` at once (default: as many as the function's
        replicas take at once), values in input order. A failed item is tried again `retries` times, but not one
        the platform refused as bad input (4xx). Items that keep failing: MapError with the values of the others
        and the failures; with return_exceptions, their errors stand in the list instead. `progress`: a progress
        bar (default: when stderr is a terminal or a notebook)."""
        self._ensure_deployed()
        concurrency = concurrency or self.default_concurrency()
        if concurrency < 1 or retries < 0:
            raise InputError(f"map: concurrency must be 1 or more, retries 0 or more (got {concurrency}, {retries})")
        total = len(items) if isinstance(items, Sized) else None
        show = sys.stderr.isatty() if progress is None else progress
        with tqdm(total=total, disable=not show, desc=self.name) as bar:
            results, failures = _fan_out(lambda item: self._with_retries(item, retries), items, concurrency, bar)
        count = len(results) + len(failures)
        if return_exceptions:
            return [failures[i] if i in failures else results[i] for i in range(count)]
        if failures:
            raise MapError([results.get(i) for i in range(count)], sorted(failures.items()))
        return [results[i] for i in range(count)]

    def default_concurrency(self) -> int:
        """How many calls the function's replicas take at once: scale.max times scale.concurrency (0: no limit, 1)."""
        scale = self.spec(_NO_CODE_YET).scale
        return scale.max * max(scale.concurrency, 1)

    def _with_retries(self, item: Any, retries: int) -> Any:
        for attempt in itertools.count():
            try:
                return self.remote(item)
            except FxError as exc:
                if attempt >= retries or (400 <= exc.status < 500 and exc.status not in (408, 429)):
                    raise
            except FunctionError:
                if attempt >= retries:
                    raise
            time.sleep(RETRY_BACKOFF_S * (attempt + 1))
        raise AssertionError("unreachable")

    def _ensure_deployed(self) -> None:
        with self._lock:
            if self._deployed is None:
                self.deploy()

    def _client(self) -> Client:
        if self.client is None:
            self.client = Client()
        return self.client


def _fan_out(
    call: Callable[[Any], Any], items: Iterable[Any], concurrency: int, bar: tqdm
) -> tuple[dict[int, Any], dict[int, Exception]]:
    """call(item) for every item, from `concurrency` threads that each take the next item when done: the values
    and the failures by index. Anything else raised (a bad argument, Ctrl-C) stops them after their current call."""
    results: dict[int, Any] = {}
    failures: dict[int, Exception] = {}
    source: Iterator[tuple[int, Any]] = enumerate(items)
    taken = threading.Lock()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            with taken:
                pair = next(source, None)
            if pair is None:
                return
            index, item = pair
            try:
                results[index] = call(item)
            except (FunctionError, FxError, TypeError) as exc:
                failures[index] = exc
            bar.update()

    with ThreadPoolExecutor(concurrency, thread_name_prefix="fx-map") as pool:
        running = [pool.submit(work) for _ in range(concurrency)]
        try:
            for worker in running:
                worker.result()
        except BaseException:
            stop.set()
            raise
    return results, failures


def function(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    requirements: Iterable[str] = (),
    by_value: Iterable[ModuleType] = (),
    client: Client | None = None,
    **settings: Any,
) -> Any:
    """Make `fn` a Function, as `@fx.function` or `@fx.function(memory=256, timeout=30, ...)`.

    `settings` are fx.yaml's (memory, timeout, env, secrets, scale, nats, runtime: the caller's Python by
    default); `requirements` are pip requirements installed as its dependency layer; `by_value` names more of
    your modules to ship inside the pickle (the function's own module always is); `name` defaults to the
    function's, with '_' as '-'. `client`: the gateway to use, else the CLI's (fx.Client())."""

    def wrap(f: Callable[..., Any]) -> Function:
        return Function(f, name, list(requirements), list(by_value), client, settings)

    return wrap(fn) if fn is not None else wrap


def _default_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", "")
    if not name.isidentifier():
        raise InputError(f"{fn!r} has no name fx can use: give one, @fx.function(name='my-function')")
    return name.replace("_", "-").lower()
