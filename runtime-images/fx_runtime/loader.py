"""Resolving a Lambda handler string to a callable, with Lambda's init errorTypes."""

from __future__ import annotations

import importlib
import os
import site
import sys
from collections.abc import Callable
from typing import Any

from . import faults
from .faults import Fault

Handler = Callable[[Any, Any], Any]


def add_task_root(task_root: str, layer_dir: str | None = None) -> None:
    """LAMBDA_TASK_ROOT goes first on sys.path and becomes the working directory, the dependency layer
    right after it (as Lambda's /opt/python): the function's own files win. Their .pth files count.

    The directory the runtime was started from (on sys.path by `python -m`) is dropped: user code must
    not import whatever lies there.
    """
    roots = [task_root, *([layer_dir] if layer_dir else [])]
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd(), *roots)]
    sys.path[:0] = roots
    for root in roots:
        site.addsitedir(root)
    os.chdir(task_root)


def load(handler: str) -> Handler:
    """Import the handler's module and return the function, as Lambda's runtime does.

    Raises Fault for the Runtime.* errors; an exception raised by the module's own init code is shaped
    like Lambda does: errorType is the exception's class name.
    """
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}") from None
    if modname.split(".")[0] in sys.builtin_module_names:
        raise Fault("Runtime.BuiltInModuleConflict", f"Cannot use built-in module {modname} as a handler module")
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise Fault("Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}") from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        raise Fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}", trace) from None
    except Exception as e:
        err = faults.from_exception(e)
        raise Fault(err["errorType"], err["errorMessage"], err["stackTrace"]) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'") from None
