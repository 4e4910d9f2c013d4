"""Size-bounded log files: NAME.log rotated by copy-truncate into NAME.log.1 (newest) ... NAME.log.<keep>.

The writers (replicas forked by a zygote, possibly in a sandbox that cannot see the log's path; the
platform's own processes) hold NAME.log open with O_APPEND and are never asked to reopen it: the rotator
copies the file and truncates it, and their next write lands at the new end. What a writer writes between the
copy's last read and the truncation is lost; the copy is repeated until the file stops growing, so that
window is one fstat and one ftruncate long. A write is never split by it: the kernel orders each write(2)
wholly before or after a truncation, and the runtime writes an invocation's lines in one write.

A rotation is restart-safe: the copy grows NAME.log.rotating (a leftover one is dropped: NAME.log still holds
its bytes), renamed to NAME.log.rotated once NAME.log is truncated (a leftover one is moved into place).
Read in order, `segments()` are the log: the rotated files, oldest first, then NAME.log.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

COPY_CHUNK = 1 << 20
_ROTATED = re.compile(r"\.(\d+)$")


@dataclass(frozen=True)
class Limit:
    """A log rotates once over `max_bytes`, keeping `keep` rotated files: at most about (keep + 1) x max_bytes."""

    max_bytes: int
    keep: int

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.keep < 0:
            raise ValueError(f"a log limit needs max_bytes >= 1 and keep >= 0, not {self.max_bytes} and {self.keep}")


FUNCTION_LOGS = Limit(max_bytes=10 * 2**20, keep=3)  # the default of each function's log


def rotated(log: Path, n: int) -> Path:
    return log.with_name(f"{log.name}.{n}")


def _rotating(log: Path) -> Path:
    return log.with_name(f"{log.name}.rotating")


def _done(log: Path) -> Path:
    return log.with_name(f"{log.name}.rotated")


def rotated_files(log: Path) -> list[Path]:
    """NAME.log.1, NAME.log.2, ... as they are on disk (numbered on from 1), newest first."""
    found = []
    for n in range(1, 1 << 16):
        path = rotated(log, n)
        if not path.exists():
            return found
        found.append(path)
    return found


def segments(log: Path) -> list[Path]:
    """The log's files, oldest first: together, in this order, they are the log."""
    return [*reversed(rotated_files(log)), log]


def files_of(log: Path) -> Iterator[Path]:
    """Every file a log has on disk, a rotation's leftovers included."""
    yield log
    yield _rotating(log)
    yield _done(log)
    for path in log.parent.glob(f"{glob.escape(log.name)}.*"):
        if _ROTATED.search(path.name) and path.name[: path.name.rfind(".")] == log.name:
            yield path


def remove(log: Path) -> None:
    """The log and its rotated files. Writers still holding it write to an unlinked file, seen by nobody."""
    for path in list(files_of(log)):
        path.unlink(missing_ok=True)


def in_rotation(log: Path) -> bool:
    """Whether a rotation of `log` is under way: NAME.log may be truncated with NAME.log.1 not yet in place."""
    return _rotating(log).exists() or _done(log).exists()


def recover(log: Path, limit: Limit) -> None:
    """Finish what a rotator stopped in the middle of (it died): nothing is lost or repeated."""
    _rotating(log).unlink(missing_ok=True)
    if _done(log).exists():
        _shift(log, limit.keep)


def rotate_if_over(log: Path, limit: Limit) -> bool:
    """Rotate `log` when it is over the limit; whether it did. One rotator per log at a time."""
    try:
        if os.stat(log).st_size <= limit.max_bytes:
            return False
    except FileNotFoundError:
        return False
    rotate(log, limit.keep)
    return True


def rotate(log: Path, keep: int) -> None:
    with open(log, "r+b", buffering=0) as src:
        if keep:
            with open(_rotating(log), "wb") as copy:
                _copy_until_still(src, copy)
                os.ftruncate(src.fileno(), 0)
                copy.flush()
            os.replace(_rotating(log), _done(log))
        else:
            os.ftruncate(src.fileno(), 0)
    if keep:
        _shift(log, keep)


def _copy_until_still(src, dst) -> None:
    """Copy src to dst until src stops growing: between its last read and the truncation nothing is copied."""
    offset = 0
    while (size := os.fstat(src.fileno()).st_size) > offset:
        src.seek(offset)
        while offset < size and (chunk := src.read(min(COPY_CHUNK, size - offset))):
            dst.write(chunk)
            offset += len(chunk)


def _shift(log: Path, keep: int) -> None:
    """NAME.log.rotated becomes NAME.log.1, each older one moves up a number, those past `keep` go."""
    older = rotated_files(log)
    for path in older[keep - 1 :] if keep else older:
        path.unlink(missing_ok=True)
    for n in range(min(len(older), keep - 1), 0, -1):
        os.replace(rotated(log, n), rotated(log, n + 1))
    os.replace(_done(log), rotated(log, 1))


def rotate_all(paths: Iterable[Path], limit: Limit) -> int:
    """Rotate those of `paths` over the limit; how many it rotated. A log that cannot be rotated now (gone, a
    full disk) is tried again next time."""
    count = 0
    for path in paths:
        with contextlib.suppress(OSError):
            count += rotate_if_over(path, limit)
    return count


def logs_in(directory: Path) -> list[Path]:
    """The current logs (NAME.log) in `directory`."""
    try:
        return [Path(e.path) for e in os.scandir(directory) if e.name.endswith(".log") and e.is_file()]
    except FileNotFoundError:
        return []


def inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None
