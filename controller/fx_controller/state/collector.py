"""Garbage collection: what no function uses any more goes, at its function's delete and by a sweep.

A digest (code zip or dependency layer) is in use while any version of any function names it: every version
in the store, kept for rollback and aliases, keeps its own. A function deleted loses its logs and the extracted
trees (<state>/code/<hex>) of the digests no other function uses at once; their zips (object store
fx_artifacts and <state>/artifacts) go at the first sweep --gc-grace after that, so a deploy of the same code
soon after (a Function resource applied again, `fx deploy` after `fx rm`) still finds them. The sweep runs at
start and every --gc-interval, so what a controller that died halfway left is collected by the next: it spares
zips stored or released less than --gc-grace ago (uploaded for a deploy under way), and it decides and deletes
under the deploy lock, so a deploy never names a zip being collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

from fx import log_files
from fx_runtime.artifact import discard

from ..backends import local_logs
from .artifacts import Artifacts
from .store import FunctionStore

log = logging.getLogger("fx_controller.gc")

LEFTOVERS = (".stale-", ".extract-")  # trees fx_runtime.artifact was moving or making when it was stopped


class Collector:
    def __init__(
        self, state_dir: Path, artifacts: Artifacts, store: FunctionStore, lock: asyncio.Lock, grace: float
    ) -> None:
        self.state_dir = state_dir
        self.artifacts = artifacts
        self.store = store
        self.lock = lock
        self.grace = grace
        self._released: dict[str, float] = {}  # digest -> when the last function using it was deleted

    def in_use(self) -> set[str]:
        return {
            digest
            for record in self.store.all()
            for version in record.versions
            for digest in (version.spec.artifact, version.spec.dependencies)
            if digest
        }

    async def release(self, digests: Iterable[str]) -> None:
        """At a delete (the caller holds the lock): of these digests, those no other function uses lose their
        code tree now and their zip at a sweep --gc-grace from now (the zip's time on disk says when, durably)."""
        now = time.time()
        code = self.state_dir / "code"
        for digest in set(digests) - self.in_use():
            self._released[digest] = now
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.artifacts.path(digest), (now, now))
            await asyncio.to_thread(_discard, code / digest.split(":", 1)[1], code)

    async def sweep(self) -> int:
        """Everything no function uses; how many zips went."""
        async with self.lock:
            stored = await self.artifacts.stored()
            in_use = self.in_use()
            old = time.time() - self.grace
            unused = [
                digest
                for digest, when in stored.items()
                if digest not in in_use and max(when, self._released.get(digest, 0)) <= old
            ]
            for digest in unused:
                await self._remove(digest)
                self._released.pop(digest, None)
            known = {record.name for record in self.store.all()}
            in_use_hex = {digest.split(":", 1)[1] for digest in in_use}
            await asyncio.to_thread(self._sweep_disk, known, in_use_hex, old)
        if unused:
            log.info("collected %d code zips no function uses", len(unused))
        return len(unused)

    async def run(self, interval: float) -> None:
        """A sweep every `interval` s, after the one at start."""
        while True:
            await asyncio.sleep(interval)
            await self.sweep_or_log()

    async def sweep_or_log(self) -> None:
        try:
            await self.sweep()
        except Exception:  # NATS away, a full disk: the next sweep tries again
            log.exception("garbage collection failed")

    async def _remove(self, digest: str) -> None:
        await self.artifacts.remove(digest)
        code = self.state_dir / "code"
        await asyncio.to_thread(_discard, code / digest.split(":", 1)[1], code)

    def _sweep_disk(self, known: set[str], in_use: set[str], old: float) -> None:
        """Code trees no version uses, leftovers of extractions, logs of functions that are gone."""
        code = self.state_dir / "code"
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(code):
                if entry.name.startswith(LEFTOVERS):  # one may be under way: only old ones
                    if entry.stat(follow_symlinks=False).st_mtime <= old:
                        _discard(Path(entry.path), code)
                elif entry.name not in in_use:
                    _discard(Path(entry.path), code)
        for log in log_files.logs_in(self.state_dir / "logs"):
            if log.name.removesuffix(".log") not in known:
                local_logs.remove(self.state_dir, log.name.removesuffix(".log"))


def _discard(tree: Path, parent: Path) -> None:
    if os.path.lexists(tree):
        discard(str(tree), str(parent))
