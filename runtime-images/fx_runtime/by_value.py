"""Functions deployed by value (the SDK's `@fx.function`): the runtime's half of the handler shim.

The SDK ships a function as a cloudpickle in its code zip, beside a one-line shim module, the JSON of the
versions that pickled it, and the cloudpickle package it pickled with. A pickle of code is only safe to load
by the Python minor version and the cloudpickle version that made it (code objects and cloudpickle's reducers
change between them), so both are checked before anything is unpickled: at init (the deployed function) and on
every call (the caller's arguments). Stdlib only here: cloudpickle is imported from the code zip, after the check
has read the versions.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

PAYLOAD = "fx.pickle"  # the key of the base64 pickle in an event (args, kwargs) and in a result (the value)
META = "fx_function.json"  # {"python": "3.11", "cloudpickle": "3.1.1"}: who pickled the function
PICKLE = "fx_function.pkl"


class VersionMismatch(Exception):
    """A pickle made by another Python minor version or another cloudpickle than this runtime's."""


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def check(python: object, cloudpickle_version: object, what: str, fix: str) -> None:
    """VersionMismatch naming both sides unless `what` was pickled by this Python minor and this cloudpickle."""
    import cloudpickle

    ours = (python_version(), cloudpickle.__version__)
    if (python, cloudpickle_version) != ours:
        raise VersionMismatch(
            f"{what} pickled by Python {python} with cloudpickle {cloudpickle_version}; this runtime is"
            f" Python {ours[0]} with cloudpickle {ours[1]}: {fix}"
        )


def load(task_root: str | Path) -> Any:
    """The handler of the function pickled in `task_root`: it unpickles (args, kwargs), calls the function and
    answers its pickled value."""
    root = Path(task_root)
    meta = json.loads((root / META).read_text())
    check(
        meta.get("python"),
        meta.get("cloudpickle"),
        "the function was",
        f"deploy it from Python {python_version()}, or give it runtime=python{meta.get('python')}",
    )
    import cloudpickle

    function = cloudpickle.loads((root / PICKLE).read_bytes())

    def handler(event: Any, context: Any) -> dict[str, str]:
        if not isinstance(event, dict) or not isinstance(event.get(PAYLOAD), str):
            raise TypeError(f"this function is called with its arguments pickled under {PAYLOAD!r}: use f.remote()")
        check(
            event.get("python"),
            event.get("cloudpickle"),
            "the arguments were",
            "call it from the Python and cloudpickle it was deployed from, or deploy it again from there",
        )
        args, kwargs = cloudpickle.loads(base64.b64decode(event[PAYLOAD]))
        return {PAYLOAD: base64.b64encode(cloudpickle.dumps(function(*args, **kwargs))).decode()}

    return handler
