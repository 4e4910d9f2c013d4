"""Lambda's error shape, and its text form in the log."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable

from . import logs

_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class Fault(Exception):
    """An error the runtime itself reports, with Lambda's errorType (e.g. Runtime.ImportModuleError)."""

    def __init__(self, error_type: str, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []


def error(message: str, error_type: str, stack_trace: list[str], request_id: str = "") -> dict:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": stack_trace}


def from_fault(fault: Fault, request_id: str = "") -> dict:
    return error(fault.message, fault.error_type, fault.stack_trace, request_id)


def from_exception(exc: BaseException, request_id: str = "") -> dict:
    """Shape an exception raised by user code: errorType is its class name, frames are the user's only."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_frame(f.filename)]
    return error(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def _is_user_frame(filename: str) -> bool:
    return not (
        filename.startswith(_RUNTIME_DIR)
        or filename.startswith("<frozen importlib")
        or filename.endswith(f"importlib{os.sep}__init__.py")
    )


def log_text(err: dict) -> str:
    """Lambda's text log form: `[ERROR] Type: message` then the traceback.

    Lambda joins these lines with '\\r' for CloudWatch; a log file read in a terminal needs '\\n'.
    """
    lines = [f"[ERROR] {err['errorType']}: {err['errorMessage']}", "Traceback (most recent call last):"]
    lines += [line for frame in err["stackTrace"] for line in frame.splitlines()]
    return "\n".join(lines) + "\n"


def init_failed(report: Callable[[dict], None], err: dict, started: float) -> int:
    """Log an init error as Lambda does, report it to whoever started the replica; the exit code."""
    init_ms = (time.perf_counter() - started) * 1000
    logs.write(log_text(err))
    logs.write(
        f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: init\tStatus: error\tError Type: {err['errorType']}\n"
    )
    logs.flush()
    report(
        {
            "event": "init_error",
            "errorType": err["errorType"],
            "errorMessage": err["errorMessage"],
            "stackTrace": err["stackTrace"],
        }
    )
    return 1
