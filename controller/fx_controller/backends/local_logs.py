"""Replica logs: <state>/logs/<function>.log, read from the end and optionally followed.

The runtime writes an invocation whole (START ... END, REPORT) and puts the time it began before its START line
(and INIT_START) in this file only. Reading, that stamp is taken off again, or put before every line of its
invocation (`timestamps`); `since` leaves out invocations begun earlier; a window cut by `tail` begins at an
invocation's start, never in the middle of one. A function's log goes with it (`remove`), so a new function
of the same name starts with an empty one.

The controller rotates these files by size (fx.log_files): reading and following go across the rotated files,
which are the log's earlier part.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from fx import log_files

POLL_S = 0.2
SETTLE_S, SETTLE_TRIES = 0.01, 200  # a read that met a rotation waits for it to pass: 2 s at most, then reads
DEFAULT_TAIL = 100  # lines, when neither tail nor since is given
MAX_LINES = 100_000  # at most this many lines in one answer

_STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?=START RequestId: |INIT_START )")
_BEGINS = (b"START RequestId: ", b"INIT_START ")
_ENDS = b"REPORT RequestId: "

Entry = tuple[bytes | None, bytes]  # (the stamp of the line's invocation, the line)


def path(state_dir: Path, function: str) -> Path:
    return state_dir / "logs" / f"{function}.log"


def remove(state_dir: Path, function: str) -> None:
    """A removed function's log: replicas still writing keep writing to the unlinked file, seen by nobody."""
    log_files.remove(path(state_dir, function))


@dataclass(frozen=True)
class Position:
    """Where a reader of a log is: an offset in NAME.log, and which file was NAME.log.1 then (its inode)."""

    offset: int = 0
    rotated: int | None = None


def stamp_of(when: datetime) -> bytes:
    """A time as the runtime stamps it (UTC, milliseconds): such stamps compare as bytes. Naive means UTC."""
    try:
        utc = when.astimezone(UTC) if when.tzinfo else when
    except OverflowError:  # within a day of datetime's range, in UTC before year 1 or after 9999
        utc = datetime.min if when.year == 1 else datetime.max
    # isoformat, not strftime: %Y gives "999" for the year 999, which sorts after "2026"
    return (utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z").encode()


@dataclass
class Reader:
    since: bytes | None = None  # a stamp: invocations begun before it are left out
    timestamps: bool = False  # each line after the stamp of its invocation ("-" when none is known)
    stamp: bytes | None = None  # of the invocation being read

    def entries(self, lines: Iterable[bytes]) -> Iterator[Entry]:
        for line in lines:
            if match := _STAMP.match(line):
                self.stamp, line = match[1], line[match.end() :]
            if self.since is None or (self.stamp is not None and self.stamp >= self.since):
                yield self.stamp, line

    def text(self, entries: Iterable[Entry]) -> bytes:
        if not self.timestamps:
            return b"".join(line for _, line in entries)
        return b"".join((stamp or b"-") + b" " + line for stamp, line in entries)


def tail(log: Path, lines: int, reader: Reader) -> tuple[bytes, Position, bool]:
    """The last `lines` lines across the rotated files, from an invocation's start; the position where they
    end; whether lines were cut. Read again once a rotation that went by has passed: midway, NAME.log's front is
    cut off while its copy is not yet NAME.log.1, and a read then would miss it (or, once shifted, see it twice)."""
    for _ in range(SETTLE_TRIES):
        rotated = log_files.inode(log_files.rotated(log, 1))
        if not log_files.in_rotation(log):
            read = _tail(log, lines, reader, rotated)
            if _unrotated(log, rotated):
                return read
        time.sleep(SETTLE_S)
    return _tail(log, lines, reader, log_files.inode(log_files.rotated(log, 1)))  # rotating all along: as it is


def _unrotated(log: Path, rotated: int | None) -> bool:
    """No rotation is under way, nor went by since NAME.log.1 was the file of inode `rotated`: what was read
    meanwhile is the log as it is."""
    return not log_files.in_rotation(log) and log_files.inode(log_files.rotated(log, 1)) == rotated


def _tail(log: Path, lines: int, reader: Reader, rotated: int | None) -> tuple[bytes, Position, bool]:
    with contextlib.ExitStack() as files:
        opened = []
        for segment in log_files.segments(log):
            with contextlib.suppress(FileNotFoundError):
                opened.append(files.enter_context(segment.open("rb")))
        if not opened or opened[-1].name != str(log):
            return b"", Position(0, rotated), False
        window = deque(reader.entries(chain.from_iterable(opened)), maxlen=lines + 1)
        offset = opened[-1].tell()
    cut = len(window) > lines
    if cut:
        window = _from_a_start(list(window))
    return reader.text(window), Position(offset, rotated), cut


def _from_a_start(window: list[Entry]) -> list[Entry]:
    """The window (its first entry being the line before it) from its first invocation's start. An invocation
    longer than the whole window is shown by its last lines, rather than nothing."""
    for i in range(1, len(window)):
        if window[i][1].startswith(_BEGINS) or window[i - 1][1].startswith(_ENDS):
            return window[i:]
    return window[1:]


async def stream(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


async def follow(
    log: Path, position: Position, reader: Reader, disconnected: Callable[[], Awaitable[bool]], poll: float = POLL_S
) -> AsyncIterator[bytes]:
    """The whole lines appended after `position`, until the client goes away; across rotations, none lost or
    repeated: a rotation moves the front of NAME.log into NAME.log.1, and what was not read yet is read there."""
    offset, known, partial = position.offset, position.rotated, b""
    while not await disconnected():
        await asyncio.sleep(poll)
        if log_files.in_rotation(log):
            continue
        newest = log_files.inode(log_files.rotated(log, 1))
        data, at = _rotated_since(log, known, offset) if newest != known else (b"", offset)
        try:
            size = os.stat(log).st_size
        except FileNotFoundError:
            size = 0
        if size < at and newest == known:
            at, partial = 0, b""  # truncated or recreated by other means (a new function of the name)
        if size > at:
            with log.open("rb") as f:
                f.seek(at)
                data += f.read(size - at)
        if not _unrotated(log, newest):
            continue  # a rotation went by while reading: read again from where we were
        offset, known = at + max(0, size - at), newest
        data = partial + data
        end = data.rfind(b"\n") + 1
        partial = data[end:]
        if text := reader.text(reader.entries(data[:end].splitlines(keepends=True))):
            yield text


def _rotated_since(log: Path, known: int | None, offset: int) -> tuple[bytes, int]:
    """What the rotations since NAME.log.1 was the file of inode `known` moved out of NAME.log from `offset` on,
    and where in NAME.log the rest now begins. The rotated files newer than `known` hold, in order, what was cut
    from NAME.log's front (when `known` went past the kept ones, so did some of what was not read)."""
    newer = []
    for path in log_files.rotated_files(log):
        if log_files.inode(path) == known:
            break
        newer.append(path)
    data = b""
    for path in reversed(newer):
        with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
            length = os.fstat(f.fileno()).st_size
            if offset < length:
                f.seek(offset)
                data += f.read()
            offset = max(0, offset - length)
    return data, offset
