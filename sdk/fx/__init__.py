"""fx's Python SDK: `fx.Client`, `fx.AsyncClient`, `@fx.function`, and the errors they raise.

`fx` is one package over two distributions (fx-core's wire library and this SDK); this file is the SDK's, so an
image with fx-core alone still imports fx.protocol. Names load on first use: `import fx.protocol` in the
gateway or controller pulls in nothing of the SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Client": "fx.client",
    "AsyncClient": "fx.client",
    "FxError": "fx.errors",
    "FunctionError": "fx.errors",
    "InputError": "fx.errors",
    "BadRequest": "fx.errors",
    "Unauthorized": "fx.errors",
    "NotFound": "fx.errors",
    "Conflict": "fx.errors",
    "Unavailable": "fx.errors",
    "function": "fx.remote",
    "Function": "fx.remote",
    "FunctionCall": "fx.remote",
    "MapError": "fx.remote",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fx' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
