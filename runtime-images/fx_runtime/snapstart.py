"""SnapStart's runtime hooks for templates (ARCHITECTURE.md, "the zygote protocol"): the names of AWS's
`snapshot_restore_py`, which a handler imports as on Lambda (the runtime puts this module under that name too).

A template has imported the handler (run its init) once and is then forked for each replica, as Lambda
restores a snapshot. Before-snapshot hooks run once in the template, after init, in the reverse order of their
registration; after-restore hooks run in every forked replica before it serves, in the order of registration
(Lambda's rules). Each forked replica reseeds `random` before its hooks run: a fork copies the generator's state,
and replicas must not draw the same numbers (os.urandom, uuid4 and `secrets` read the kernel and differ anyway).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Any

ALIAS = "snapshot_restore_py"  # AWS's module name, which handlers import

Hook = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
_before_snapshot: list[Hook] = []
_after_restore: list[Hook] = []


def register_before_snapshot(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Run `func(*args, **kwargs)` in the template once init is done; usable as a decorator."""
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """Run `func(*args, **kwargs)` in each replica forked from the template, before it serves; a decorator too."""
    _after_restore.append((func, args, kwargs))
    return func


def get_before_snapshot() -> list[Hook]:
    return _before_snapshot


def get_after_restore() -> list[Hook]:
    return _after_restore


def install_alias() -> None:
    """`import snapshot_restore_py` finds these hooks (a copy of AWS's package in the code would register hooks
    that nothing runs)."""
    sys.modules[ALIAS] = sys.modules[__name__]


def before_snapshot() -> None:
    for func, args, kwargs in reversed(_before_snapshot):
        func(*args, **kwargs)


def after_restore() -> None:
    random.seed()
    for func, args, kwargs in _after_restore:
        func(*args, **kwargs)
