"""Size-bounded log files: NAME.log rotated into NAME.log.1 (newest) ... NAME.log.<keep>.

The writers (replicas forked by a zygote, possibly in a sandbox that cannot see the log's path; the
platform's own processes) hold NAME.log open with O_APPEND and are never asked to reopen it. The rotator
copies the file's whole blocks, short of its end, to the rotated file, then takes them off the front of
NAME.log (fallocate's FALLOC_FL_COLLAPSE_RANGE, under the inode lock every write takes): nothing is lost, and
what follows stays in NAME.log. The cut falls on a block boundary, so a line may begin in NAME.log.1 and end in
NAME.log: read in order, `segments()` are the log. A file system without it (tmpfs) gets copy-truncate: the
copy repeats until the file stops growing and ends on a line's end, and a write that lands between the last
read and the truncation is lost whole (the runtime writes an invocation in one write).

A rotation is restart-safe: the copy grows NAME.log.rotating (a leftover one is dropped: NAME.log still holds
its bytes) and is renamed NAME.log.rotated before NAME.log is cut (a leftover one is moved into place: a
rotation that died between the two repeats what it copied, and loses nothing).
"""

from __future__ import annotations

import contextlib
import errno as _errno
import functools
import glob
import os
import re
from collections.abc import Callable, Iterable, Iterator
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
    with open(log, "r+b", buffering=0) as src, open(_rotating(log), "wb") as copy:
        # The copy's inode is taken before the file about to go is dropped (a reader knows NAME.log.1 by its
        # inode, which the copy must not reuse), and filled after (it does not stand beside it).
        _drop_oldest(log, keep)
        fd = src.fileno()
        st = os.fstat(fd)
        cut = max(0, (st.st_size - 1) // st.st_blksize * st.st_blksize)  # whole blocks, never the end
        if keep:
            _copy(src, copy, 0, cut)
            copy.flush()
        # From here the copy is the rotation's: one that dies before NAME.log is cut may repeat, never lose.
        os.replace(_rotating(log), _done(log))
        if not (cut and _collapse(fd, cut)):
            offset = cut
            while (size := os.fstat(fd).st_size) > offset or (offset and not _ends_a_line(src, offset)):
                if keep:
                    _copy(src, copy, offset, size)
                offset = size
            copy.flush()
            os.ftruncate(fd, 0)
    if keep:
        _shift(log, keep)
    else:
        _done(log).unlink()


def _copy(src, dst, start: int, end: int) -> None:
    src.seek(start)
    while start < end and (chunk := src.read(min(COPY_CHUNK, end - start))):
        dst.write(chunk)
        start += len(chunk)


def _ends_a_line(src, offset: int) -> bool:
    """A write crossing a page may show its first part only: copy-truncate waits for its line's end."""
    src.seek(offset - 1)
    return src.read(1) == b"\n"


FALLOC_FL_COLLAPSE_RANGE = 0x08


@functools.cache
def _fallocate() -> Callable[[int, int, int, int], int]:
    """libc's fallocate, loaded at the first rotation: ctypes costs `fx --help` 2 ms to import."""
    import ctypes

    fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    return fallocate


def _collapse(fd: int, length: int) -> bool:
    """Take the first `length` bytes (whole blocks) off the file; False where the file system cannot."""
    import ctypes

    if _fallocate()(fd, FALLOC_FL_COLLAPSE_RANGE, 0, length) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (_errno.EOPNOTSUPP, _errno.EINVAL, _errno.ENOSYS):
        return False
    raise OSError(errno, os.strerror(errno))


def _drop_oldest(log: Path, keep: int) -> None:
    """The rotated files a rotation pushes past `keep`."""
    older = rotated_files(log)
    for path in older[keep - 1 :] if keep else older:
        path.unlink(missing_ok=True)


def _shift(log: Path, keep: int) -> None:
    """NAME.log.rotated becomes NAME.log.1, each older one moves up a number, those past `keep` go."""
    _drop_oldest(log, keep)
    older = rotated_files(log)
    for n in range(len(older), 0, -1):
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
