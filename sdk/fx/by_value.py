"""A Python function as fx code, by value: its cloudpickle, a shim handler, and the wire form of calls.

The code folder holds the shim module (`fx_function.py`, whose handler fx_runtime.by_value makes), the pickled
function, the versions that pickled it, and a copy of this cloudpickle (a pure-Python package), so the replica
unpickles with the very cloudpickle that pickled, whatever its own environment has. Arguments and results travel
as base64 pickles inside JSON events, so the gateway and the controller carry them without unpickling anything.
The names are fx_runtime/by_value.py's (tests/unit/sdk/test_by_value.py holds them equal).
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle

from fx.errors import InputError

PAYLOAD = "fx.pickle"
META = "fx_function.json"
PICKLE = "fx_function.pkl"
SHIM = "fx_function"
HANDLER = f"{SHIM}.handler"
SHIM_SOURCE = '''"""A function deployed by value by fx's SDK: fx_runtime.by_value checks the versions, unpickles it."""

from pathlib import Path

from fx_runtime import by_value

handler = by_value.load(Path(__file__).parent)
'''


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def versions() -> dict[str, str]:
    """Who pickles: what the runtime checks before it unpickles."""
    return {"python": python_version(), "cloudpickle": cloudpickle.__version__}


def write_code(
    folder: Path, function: Callable[..., Any], modules: Iterable[ModuleType], requirements: list[str]
) -> None:
    """The code folder of `function`: its own module and `modules` pickled by value (their code travels inside
    the pickle instead of being imported by name on the replica, where they do not exist)."""
    (folder / f"{SHIM}.py").write_text(SHIM_SOURCE)
    (folder / PICKLE).write_bytes(dumps_by_value(function, modules))
    (folder / META).write_text(json.dumps(versions()))
    package = Path(cloudpickle.__file__).parent
    shutil.copytree(package, folder / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    if requirements:
        (folder / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))


def dumps_by_value(function: Callable[..., Any], modules: Iterable[ModuleType]) -> bytes:
    own = sys.modules.get(getattr(function, "__module__", "") or "")
    chosen = {m.__name__: m for m in [*([own] if own and own.__name__ != "__main__" else []), *modules]}
    registered = [m for m in chosen.values() if m.__name__ not in cloudpickle.list_registry_pickle_by_value()]
    for module in registered:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps(function)
    except Exception as exc:  # cloudpickle raises whatever the object's reducer raised
        raise InputError(f"cannot pickle {_name(function)}: {type(exc).__name__}: {exc}") from exc
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def event(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    """The event of one call: its arguments pickled, and who pickled them."""
    try:
        data = cloudpickle.dumps((args, kwargs))
    except Exception as exc:
        raise InputError(f"cannot pickle the arguments: {type(exc).__name__}: {exc}") from exc
    return {PAYLOAD: base64.b64encode(data).decode(), **versions()}


def result(answer: Any) -> Any:
    """The function's value from the runtime's answer."""
    if not isinstance(answer, dict) or not isinstance(answer.get(PAYLOAD), str):
        raise TypeError(f"not an answer of a function deployed by value: {str(answer)[:200]}")
    return cloudpickle.loads(base64.b64decode(answer[PAYLOAD]))


def _name(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)
