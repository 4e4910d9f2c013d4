"""The functions' logs (<state>/logs/NAME.log) rotated by size, checked every --log-check-interval.

The replicas writing them are the zygotes' children and never reopen their log (a sandboxed one cannot see
its path), so rotation is copy-truncate (fx.log_files). A log grows by what is written in one interval past
its limit, at most, before it rotates.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fx import log_files


async def run(log_dir: Path, limit: log_files.Limit, interval: float) -> None:
    await asyncio.to_thread(_recover, log_dir, limit)
    while True:
        await asyncio.to_thread(log_files.rotate_all, log_files.logs_in(log_dir), limit)
        await asyncio.sleep(interval)


def _recover(log_dir: Path, limit: log_files.Limit) -> None:
    """Finish the rotations a controller that died left half done."""
    for log in log_files.logs_in(log_dir):
        with contextlib.suppress(OSError):
            log_files.recover(log, limit)
