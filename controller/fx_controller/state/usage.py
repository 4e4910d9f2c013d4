"""What the state dir holds on disk, by kind: shown by `fx status`, exported as fx_controller_state_bytes.

Walking the tree costs a stat per file, so it is measured on a slow timer (USAGE_INTERVAL_S), in a thread, and
read from memory between walks. Embedded mode only: on Kubernetes the state lives in volumes the kubelet
measures.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

USAGE_INTERVAL_S = 60.0
KINDS = ("code", "artifacts", "logs", "nats")  # top-level directories; the rest is "other"


def measure(state_dir: Path) -> dict[str, int]:
    """Bytes on disk (allocated blocks) under the state dir, by kind: code|artifacts|logs|nats|other."""
    usage = dict.fromkeys((*KINDS, "other"), 0)
    try:
        entries = list(os.scandir(state_dir))
    except FileNotFoundError:
        return usage
    for entry in entries:
        kind = entry.name if entry.name in KINDS and entry.is_dir(follow_symlinks=False) else "other"
        usage[kind] += _size(entry)
    return usage


def _size(entry: os.DirEntry) -> int:
    try:
        total = entry.stat(follow_symlinks=False).st_blocks * 512
        if entry.is_dir(follow_symlinks=False):
            total += sum(_size(child) for child in os.scandir(entry.path))
    except (FileNotFoundError, PermissionError):  # removed while walked; a sandboxed function's private dir
        return 0
    return total


async def run(state_dir: Path, report: Callable[[dict[str, int]], None], interval: float = USAGE_INTERVAL_S) -> None:
    while True:
        report(await asyncio.to_thread(measure, state_dir))
        await asyncio.sleep(interval)
