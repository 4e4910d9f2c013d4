"""The replica's log (its stdout): Lambda's START / END / REPORT lines and the root logger Lambda installs."""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import math
import resource
import sys
import time
from collections.abc import Iterator

TAIL_BYTES = 4096  # what Lambda returns of an invocation's log in X-Amz-Log-Result

# The request being served, for the root logger's records (Lambda prints it in every log line).
current_request_id = ""
_root_handler: logging.StreamHandler | None = None  # writes the root logger's records to the log


def setup() -> None:
    """One buffered stream for stdout and stderr on fd 1, flushed after every invocation.

    Sharing one buffer keeps the handler's prints and logging output in order with our lines, and makes an
    invocation cost one write(2) to the log instead of one per line.
    """
    stream = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False), 1 << 16), encoding="utf-8", errors="backslashreplace"
    )
    sys.stdout = sys.stderr = stream
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    handler.addFilter(_add_request_id)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    global _root_handler
    _root_handler = handler


def _add_request_id(record: logging.LogRecord) -> bool:
    record.aws_request_id = current_request_id
    return True


def write(text: str) -> None:
    sys.stdout.write(text)


def flush() -> None:
    # A full disk or a closed log must not take the invocation down with it.
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def start(request_id: str, version: str) -> None:
    """Lambda's START line, after the time the invocation began in the log file only (`fx logs --since` and
    `--timestamps` read it there); a copy of the invocation's log (X-Amz-Log-Result) gets Lambda's line as is."""
    out = sys.stdout
    if isinstance(out, Tee):
        out.stream.write(stamp() + " ")
        out.write(start_line(request_id, version))
    else:  # one write: each costs an encode and a look at the buffer
        out.write(f"{stamp()} {start_line(request_id, version)}")


def init_start() -> None:
    """Lambda's INIT_START line, stamped as START is."""
    write(f"{stamp()} INIT_START Runtime Version: python:{sys.version_info.major}.{sys.version_info.minor}\n")


_second: tuple[int, str] = (-1, "")  # the last whole second stamped, formatted: strftime is most of a stamp's cost
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))  # a stamp's end, looked up: formatting it cost half a stamp


def stamp() -> str:
    """Now, as Lambda writes times in logs: 2024-05-01T12:00:00.123Z."""
    global _second
    now = time.time()
    second, text = _second
    if now - second >= 1 or now < second:
        second = int(now)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)
    return text + _MILLIS[int((now - second) * 1000)]


_getrusage, _RUSAGE_THREAD = resource.getrusage, resource.RUSAGE_THREAD  # bound once: read at every invocation


def end_lines(request_id: str, duration_ms: float, memory_mb: str, init_ms: float | None, status: str = "") -> str:
    """Lambda's END and REPORT lines. Max Memory Used is the process's peak RSS now (ru_maxrss, one getrusage(2)):
    the true figure at the invocation's end, as a figure sampled earlier could not be. RUSAGE_THREAD, not
    RUSAGE_SELF: its ru_maxrss is the same, the peak of the memory all threads share (Linux reads it from the mm
    either way), without summing every thread's CPU time under the scheduler's locks as RUSAGE_SELF does."""
    used_mb = _getrusage(_RUSAGE_THREAD).ru_maxrss // 1024
    report = (
        f"END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms) or 1} ms\tMemory Size: {memory_mb} MB\t"
        f"Max Memory Used: {used_mb} MB"
    )
    if init_ms is not None:
        report += f"\tInit Duration: {init_ms:.2f} ms"
    if status:
        report += f"\tStatus: {status}"
    return report + "\n"


def timestamped(request_id: str, message: str) -> str:
    return f"{stamp()} {request_id} {message}\n"


class Tee:
    """The log stream, keeping a copy of what is written through it: one invocation's log lines."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)

    def tail(self) -> str:
        """The last TAIL_BYTES of the copy, base64: Lambda's X-Amz-Log-Result."""
        data = "".join(self.parts).encode("utf-8", "backslashreplace")
        return base64.b64encode(data[-TAIL_BYTES:]).decode("ascii")


@contextlib.contextmanager
def capture() -> Iterator[Tee]:
    """Copy what prints, the root logger and our own lines write while inside; only when a caller asks for the
    tail, so the usual invocation pays nothing for it."""
    tee = begin_capture()
    try:
        yield tee
    finally:
        end_capture(tee)


def begin_capture() -> Tee:
    """capture() for an invocation that ends in a later callback (a bootstrap's): end it with end_capture."""
    tee = Tee(sys.stdout)
    sys.stdout = sys.stderr = tee
    if _root_handler is not None:
        _root_handler.stream = tee
    return tee


def end_capture(tee: Tee) -> None:
    sys.stdout = sys.stderr = tee.stream
    if _root_handler is not None:
        _root_handler.stream = tee.stream
