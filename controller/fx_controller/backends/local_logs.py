"""Replica logs: <state>/logs/<function>.log, read from the end and optionally followed.

The runtime writes an invocation whole (START ... END, REPORT) and puts the time it began before its START line
(and INIT_START) in this file only. Reading, that stamp is taken off again, or put before every line of its
invocation (`timestamps`); `since` leaves out invocations begun earlier; a window cut by `tail` begins at an
invocation's start, never in the middle of one. A function's log goes with it (`remove`), so a new function
of the same name starts with an empty one.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

POLL_S = 0.2
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
    path(state_dir, function).unlink(missing_ok=True)


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


def tail(log: Path, lines: int, reader: Reader) -> tuple[bytes, int, bool]:
    """The last `lines` lines, from an invocation's start; the offset where they end; whether lines were cut."""
    try:
        with log.open("rb") as f:
            window = deque(reader.entries(f), maxlen=lines + 1)
            offset = f.tell()
    except FileNotFoundError:
        return b"", 0, False
    cut = len(window) > lines
    if cut:
        window = _from_a_start(list(window))
    return reader.text(window), offset, cut


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
    log: Path, offset: int, reader: Reader, disconnected: Callable[[], Awaitable[bool]], poll: float = POLL_S
) -> AsyncIterator[bytes]:
    """The whole lines appended after `offset`, until the client goes away."""
    partial = b""
    while not await disconnected():
        await asyncio.sleep(poll)
        try:
            size = os.stat(log).st_size
        except FileNotFoundError:
            continue
        if size < offset:  # truncated or recreated: start over
            offset, partial = 0, b""
        if size > offset:
            with log.open("rb") as f:
                f.seek(offset)
                chunk = f.read(size - offset)
            offset += len(chunk)
            data = partial + chunk
            end = data.rfind(b"\n") + 1
            partial = data[end:]
            if text := reader.text(reader.entries(data[:end].splitlines(keepends=True))):
                yield text
