"""Replica logs: <state>/logs/<function>.log, read from the end and optionally followed."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

POLL_S = 0.2


def tail(path: Path, lines: int) -> tuple[bytes, int]:
    """The last `lines` lines of the file and the offset where they end."""
    try:
        with path.open("rb") as f:
            last = deque(f, maxlen=lines) if lines > 0 else deque()
            return b"".join(last), f.tell()
    except FileNotFoundError:
        return b"", 0


async def follow(
    path: Path, lines: int, disconnected: Callable[[], Awaitable[bool]], poll: float = POLL_S
) -> AsyncIterator[bytes]:
    """The tail, then whatever is appended, until the client goes away."""
    text, offset = await asyncio.to_thread(tail, path, lines)
    if text:
        yield text
    while not await disconnected():
        await asyncio.sleep(poll)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            continue
        if size < offset:  # truncated or recreated: start over
            offset = 0
        if size > offset:
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read(size - offset)
            offset += len(chunk)
            yield chunk
